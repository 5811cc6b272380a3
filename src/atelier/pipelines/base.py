"""The common interface of all methods: a frozen config dataclass, a ``Method`` class and the registry.

Part of the framework layer (:mod:`atelier.pipelines`): method modules import it, it imports none of them.

Methods are registered by name (``@register``); the CLI, ``atelier methods``, the docs table
and a parametrised test all read the registry. A config field's ``metadata`` carries its
help text, which the CLI turns into an option (``content_weight`` -> ``--content-weight``).
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from ..encoders.vgg import VGGEncoder
from ..encoders.weights import load_vgg19
from ..errors import OptionError
from ..options import MethodConfig, option
from ..registry import Registry

__all__ = [
    "Method",
    "MethodConfig",
    "StylizeResult",
    "VGGMethod",
    "available_methods",
    "get_method",
    "option",
    "register",
]

@dataclass
class StylizeResult:
    """What a method returns: the image ``(1, 3, H, W)`` in [0, 1] and facts about the run."""

    image: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False

class Method(ABC):
    """A style transfer method. Subclasses set ``name``, ``summary``, ``paper`` and ``Config``.

    ``stylize`` receives the content already resized to the output size, the styles at
    their original size, normalised blend weights and optional ``(1, K, H, W)`` masks.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    Config: ClassVar[type[MethodConfig]]
    #: Whether several styles can be blended / placed with masks.
    supports_masks: ClassVar[bool] = True
    #: Whether styles come as images (False: the method's trained model holds its styles,
    #: and the blend weights / masks refer to those; see :meth:`style_count`).
    uses_style_images: ClassVar[bool] = True
    #: Whether ``stylize`` takes ``temporal=`` (a :class:`~atelier.pipelines.temporal.TemporalGuide`)
    #: and keeps video frames consistent itself (optimisation: Ruder et al.'s temporal loss); the
    #: others' outputs are blended with the warped previous output by the video loop.
    uses_temporal_guide: ClassVar[bool] = False
    #: Whether a method that takes style images may also run without any: on the style its
    #: trained model holds (content-style disentanglement: the collection's average style).
    styles_optional: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise OptionError("pass either a config or keyword options, not both")
        self.config = config if config is not None else self.Config.from_dict(options, method=self.name)

    def style_count(self) -> int:
        """How many styles a method with ``uses_style_images = False`` holds."""
        raise NotImplementedError

    def frame_bytes(self, height: int, width: int) -> float | None:
        """Peak bytes of stylizing one ``height`` x ``width`` frame, when ``stylize`` takes a batch of frames.

        A method whose ``stylize`` maps ``(B, 3, H, W)`` contents to their ``B`` outputs exactly
        as one at a time (no masks, no tiling) returns its estimate, and the video loop then
        stylizes several frames per call (:func:`~atelier.pipelines.memory.frames_per_batch`);
        None (the default): frames go one at a time.
        """
        return None

    @abstractmethod
    def stylize(
        self,
        content: Tensor,
        styles: Sequence[Tensor],
        *,
        style_weights: Sequence[float],
        masks: Tensor | None = None,
        device: str = "cpu",
        progress: bool = True,
        seed: int | None = None,
    ) -> StylizeResult:
        """Stylize ``content`` ``(1, 3, H, W)`` with ``styles`` (each ``(1, 3, h, w)``).

        Args:
            content: the content, already resized to the output size, in [0, 1].
            styles: the style images at their original size (empty when ``uses_style_images``
                is False: the method's model holds its styles).
            style_weights: normalised blend weights, one per style (or per held style).
            masks: optional ``(1, K, H, W)``: where each style applies.
            device: where to run (``cpu``, ``cuda``, ``cuda:N``).
            progress: show a progress line for runs that take long.
            seed: random seed of methods that draw random numbers (noise initialisation);
                the others accept and ignore it.

        Returns:
            The image in [0, 1] and facts about the run; ``interrupted`` is True when a long
            loop was stopped early (Ctrl-C) and the image is the best one so far.
        """


class VGGMethod(Method):
    """A method built on the VGG-19 encoder its config names (``weights``, ``pooling``).

    The encoder is loaded on first use, so building a method, listing options or validating
    a config never touches the weights; tests pass a small ``encoder`` instead.
    """

    def __init__(self, config: MethodConfig | None = None, *, encoder: VGGEncoder | None = None, **options: Any):
        super().__init__(config, **options)
        self._encoder = encoder

    @property
    def encoder(self) -> VGGEncoder:
        """The VGG-19 encoder, loaded on first use."""
        if self._encoder is None:
            cfg = typing.cast(Any, self.config)
            self._encoder = load_vgg19(cfg.weights, pooling=cfg.pooling)
        return self._encoder


_METHODS: Registry[Method] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    return _METHODS.register(cls)


def available_methods() -> dict[str, type[Method]]:
    """``{name: Method class}`` of every registered method, sorted by name."""
    return _METHODS.available()


def get_method(name: str) -> type[Method]:
    """The method class called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
    return _METHODS.get(name)
