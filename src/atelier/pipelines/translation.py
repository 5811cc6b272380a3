"""Image-to-image translation between two domains: the framework CycleGAN and U-GAT-IT share.

Two pieces, used by :mod:`atelier.methods.cyclegan` and :mod:`atelier.methods.ugatit`:

* inference: :class:`Translator` loads an exported generator pair (one ``<name>.safetensors``
  with both generators, keys prefixed ``a2b.`` and ``b2a.``, and a header — task, architecture,
  domain names — from which the generators are rebuilt without any config) and applies it to
  images of any size;
* training: :class:`TranslationTask`, two generators and their discriminators trained in two
  phases (generators, then discriminators) on the one trainer, with an image pool
  (Zhu et al. 2017, sec. 4), and :func:`l1` on the papers' [-1, 1] scale.

A method module subclasses :class:`TranslationTask` with its networks and losses.

Conventions (Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV):
    * The L1 losses are computed on images scaled to [-1, 1] (as the authors' code does), so
      the papers' weights keep their meaning although atelier's images are in [0, 1].
    * Inference resizes the input to the nearest multiple of 4 (the authors' ``preprocess
      none``) and the output back to the input's size, so outputs keep their input's size.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError, WeightsError
from ..io.images import resize_to
from ..nets.gan import STRIDE, ImagePool, ResnetGenerator
from ..nets.pretrained import describe_load_error, locate_model, read_weights
from ..nets.ugatit import UGATITGenerator
from ..options import MethodConfig, option
from ..train.task import Phase, TrainingTask
from .memory import check_fits

__all__ = ["DIRECTIONS", "TASKS", "TranslationOptions", "TranslationTask", "Translator", "l1", "load_translator",
           "multiple_of_four"]

DIRECTIONS = ("a2b", "b2a")
TASKS = ("cyclegan", "ugatit")


# -- inference -----------------------------------------------------------------------------------
def _generator_from_header(header: dict[str, str]) -> nn.Module:
    """An untrained generator of the architecture a file's header describes."""
    task = header.get("task")
    if task == "cyclegan":
        return ResnetGenerator(width=int(header["width"]), blocks=int(header["blocks"]))
    return UGATITGenerator(width=int(header["width"]), blocks=int(header["blocks"]),
                           light=header["light"] == "true", size=int(header["size"]))


def load_translator(model: str) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Both generators of a trained translation model, by name or path, with its header.

    ``model`` is a stem found by :func:`atelier.nets.pretrained.locate` (``$ATELIER_HOME/weights``
    first, then the shipped weights) or a ``.safetensors`` file written by ``atelier train`` for a
    ``cyclegan`` or ``ugatit`` config.

    Returns:
        ``({"a2b": generator, "b2a": generator}, info)``, the generators in eval mode without
        gradients; ``info`` has ``path``, ``name``, ``task``, ``domain_a``, ``domain_b`` and
        ``steps`` (training steps, 0 when the header does not say).

    Raises:
        OptionError: no model given.
        WeightsError: missing file, another kind of network, or a damaged header or weights.
    """
    if not model:
        raise OptionError("give a trained translation model: --model NAME or --model FILE.safetensors")
    path = locate_model(model, train_hint="atelier train configs/cyclegan_summer2winter.yaml")
    state, header = read_weights(path)
    if header.get("task") not in TASKS:
        raise WeightsError(f"{path}: not an image-to-image translation model (task {header.get('task')!r}); "
                           "train one with `atelier train configs/cyclegan_summer2winter.yaml`")
    nets: dict[str, nn.Module] = {}
    try:
        for direction in DIRECTIONS:
            net = _generator_from_header(header)
            prefix = f"{direction}."
            net.load_state_dict({k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)})
            nets[direction] = net.eval().requires_grad_(False)
    except (KeyError, ValueError, RuntimeError, OptionError) as error:
        raise WeightsError(f"{path}: damaged translation model header or weights ({describe_load_error(error)}); "
                           "re-export it with `atelier train` or use another model") from None
    info = {"path": str(path), "name": header.get("name", path.stem), "task": header["task"],
            "domain_a": header.get("domain_a", "A"), "domain_b": header.get("domain_b", "B"),
            "steps": int(header.get("steps", 0))}
    return nets, info


#: The smallest side the generators run at (images below it are upscaled for the network).
MIN_NETWORK_SIDE = 2 * STRIDE


def multiple_of_four(height: int, width: int) -> tuple[int, int]:
    """The nearest size whose sides are multiples of 4 (at least 4).

    As CycleGAN's test-time ``preprocess none`` rounds (``__make_power_2`` with base 4).
    """
    return max(STRIDE, round(height / STRIDE) * STRIDE), max(STRIDE, round(width / STRIDE) * STRIDE)


class Translator:
    """A trained generator pair, loaded on first use, applied to images of any size.

    >>> translator = Translator("summer2winter")  # doctest: +SKIP
    >>> winter = translator(photo, "a2b")  # (1, 3, H, W) in [0, 1] -> same size  # doctest: +SKIP
    """

    def __init__(self, model: str, *, nets: dict[str, nn.Module] | None = None) -> None:
        self.model = model
        self._nets = nets
        self._info: dict[str, Any] = {"name": Path(model).stem, "task": "?", "domain_a": "A", "domain_b": "B"}

    @property
    def nets(self) -> dict[str, nn.Module]:
        """``{"a2b": generator, "b2a": generator}``, loaded on first use."""
        if self._nets is None:
            self._nets, self._info = load_translator(self.model)
        return self._nets

    @property
    def info(self) -> dict[str, Any]:
        """Name, task and domain names of the loaded model."""
        self.nets  # noqa: B018  (loads the header with the networks)
        return self._info

    def frame_bytes(self, height: int, width: int) -> float:
        """Peak bytes of translating one ``height`` x ``width`` frame (a batch of frames runs as one)."""
        # Live float32 maps at full resolution: the input, two of `width` channels (a convolution's
        # input and output), the output; the 1/2 and 1/4 resolution stages need less.
        return height * width * 4 * (2 * getattr(self.nets["a2b"], "width", 64) + 6)

    def _check_memory(self, height: int, width: int, batch: int = 1) -> None:
        check_fits(batch * self.frame_bytes(height, width), width=width, height=height,
                   what="this generator" if batch == 1 else f"this generator on {batch} frames at once")

    def __call__(self, image: Tensor, direction: str = "a2b", *, device: str = "cpu") -> Tensor:
        """Translate ``image`` ``(B, 3, H, W)`` in [0, 1]; returns the same size in [0, 1].

        The image is resized to the nearest multiple of 4 for the network and the result back
        to ``(H, W)`` (CycleGAN's test-time convention; see :func:`multiple_of_four`).
        """
        if direction not in DIRECTIONS:
            raise OptionError(f"direction must be a2b or b2a, not {direction!r}")
        net = self.nets[direction]
        height, width = image.shape[-2:]
        # Two stride-2 stages must leave at least 2x2 for instance norm: 8 px a side at least
        # (so 1x1 to 5x5 inputs are upscaled for the network, and the result resized back).
        rounded = multiple_of_four(height, width)
        inner = (max(MIN_NETWORK_SIDE, rounded[0]), max(MIN_NETWORK_SIDE, rounded[1]))
        self._check_memory(*inner, image.shape[0])
        net.to(device)
        with torch.no_grad():
            output = net(resize_to(image.to(device).float(), inner)).float()
        return resize_to(output.clamp(0, 1), (height, width)).cpu()


# -- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TranslationOptions(MethodConfig):
    """Options every translation task has: names and the image pool."""

    name: str = option("translation", "file stem of the exported generator pair (e.g. summer2winter)")
    domain_a: str = option("A", "name of domain A, the trainer's content folder (model card, CLI messages)")
    domain_b: str = option("B", "name of domain B, the trainer's style folder")
    pool_size: int = option(50, "generated images the discriminators draw from (sec. 4: 50; 0 = none)")

    def validate(self) -> None:
        """Refuse a stem that is not a plain file name and a negative pool size."""
        if not self.name or "/" in self.name:
            raise OptionError(f"name must be a plain file stem, got {self.name!r}")
        if self.pool_size < 0:
            raise OptionError(f"pool_size must be >= 0, got {self.pool_size}")


def l1(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference of images in [0, 1], measured on the papers' [-1, 1] scale.

    Twice the [0, 1] value, so the papers' loss weights apply unchanged.
    """
    return 2 * F.l1_loss(output.float(), target.float())


class TranslationTask(TrainingTask[nn.ModuleDict]):
    """Two generators (``a2b``, ``b2a``) and their discriminators, trained in two phases.

    The model is an ``nn.ModuleDict``: ``a2b`` and ``b2a`` generators and discriminators whose
    keys start with ``d_``. Each step runs the generator phase (which leaves its detached fakes
    in the step's context), then the discriminator phase on real images and (pooled) fakes.
    Subclasses build the networks and define the two losses.
    """

    needs_style = True
    needs_encoder = False
    options: Any
    #: Architecture keys of the generator written into the exported file's header.
    header_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: MethodConfig, *, encoder: Any = None) -> None:
        super().__init__(options, encoder=encoder)
        size = int(getattr(options, "pool_size", 0))
        self.pools = {"a": ImagePool(size), "b": ImagePool(size)}

    # -- model -------------------------------------------------------------------------------
    @abstractmethod
    def build_generator(self) -> nn.Module:
        """One generator (the two directions share the architecture)."""

    @abstractmethod
    def build_discriminators(self) -> dict[str, nn.Module]:
        """``{name starting with d_: discriminator}`` of both domains."""

    def build_model(self) -> nn.ModuleDict:
        """``ModuleDict`` of both generators (``a2b``, ``b2a``) and the discriminators (``d_*``)."""
        return nn.ModuleDict({"a2b": self.build_generator(), "b2a": self.build_generator(),
                              **self.build_discriminators()})

    @staticmethod
    def generator_parameters(model: nn.ModuleDict) -> list[nn.Parameter]:
        """Parameters of both generators."""
        return [p for key in DIRECTIONS for p in model[key].parameters()]

    @staticmethod
    def discriminator_parameters(model: nn.ModuleDict) -> list[nn.Parameter]:
        """Parameters of every discriminator (keys starting with ``d_``)."""
        assert isinstance(model, nn.ModuleDict)
        return [p for key, net in model.items() if key.startswith("d_") for p in net.parameters()]

    def after_generator_step(self, model: nn.ModuleDict) -> None:
        """Called after each generator update (U-GAT-IT clips rho)."""

    def phases(self, model: nn.ModuleDict) -> list[Phase]:
        """The generator phase, then the discriminator phase (Zhu et al. 2017, sec. 4)."""
        return [
            Phase("generators", self.generator_parameters(model), self.generator_losses,
                  after_step=lambda: self.after_generator_step(model)),
            Phase("discriminators", self.discriminator_parameters(model), self.discriminator_losses),
        ]

    # -- losses ------------------------------------------------------------------------------
    @abstractmethod
    def generator_losses(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor | None,
                         context: dict[str, Any]) -> dict[str, Tensor]:
        """Weighted generator terms; stores ``context["fake_a"]``/``["fake_b"]`` (detached)."""

    @abstractmethod
    def discriminator_terms(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor, fake_a: Tensor,
                            fake_b: Tensor) -> dict[str, Tensor]:
        """Weighted discriminator terms on real images and (pooled) fakes."""

    def discriminator_losses(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor | None,
                             context: dict[str, Any]) -> dict[str, Tensor]:
        """Discriminator terms on real images and the pooled fakes of the step's generator phase."""
        assert real_b is not None
        fake_a, fake_b = self._fakes(model, real_a, real_b, context)
        # Pools keep float32 copies so their contents do not depend on the autocast precision.
        return self.discriminator_terms(model, real_a, real_b, self.pools["a"].query(fake_a.float()),
                                        self.pools["b"].query(fake_b.float()))

    def _fakes(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor,
               context: dict[str, Any]) -> tuple[Tensor, Tensor]:
        if "fake_a" not in context:  # no generator phase ran before (evaluation)
            with torch.no_grad():
                context["fake_b"], context["fake_a"] = model["a2b"](real_a), model["b2a"](real_b)
        return context["fake_a"].detach(), context["fake_b"].detach()

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Every generator and discriminator term on one batch (no image pool)."""
        assert style is not None
        context: dict[str, Any] = {}
        terms = self.generator_losses(model, content, style, context)
        fake_a, fake_b = self._fakes(model, content, style, context)
        return terms | self.discriminator_terms(model, content, style, fake_a, fake_b)

    # -- samples, evaluation, export ---------------------------------------------------------
    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        """``a2b(A)`` next to ``b2a(B)``: grid rows read A | B | A->B | B->A."""
        assert style is not None
        return torch.cat([model["a2b"](content), model["b2a"](style)], dim=3)

    def evaluate(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """Held-out cycle and identity L1 (on [0, 1]) per direction and the loss terms."""
        assert style is not None
        metrics: dict[str, float] = {}
        with torch.no_grad():
            for direction, real, forward, back in (("a", content, "a2b", "b2a"), ("b", style, "b2a", "a2b")):
                fake = model[forward](real)
                metrics[f"eval_cycle_l1_{direction}"] = float(F.l1_loss(model[back](fake).float(), real.float()))
                metrics[f"eval_identity_l1_{direction}"] = float(F.l1_loss(model[back](real).float(), real.float()))
            metrics |= {f"eval_{k}": float(v) for k, v in self.losses(model, content, style).items()}
        return metrics

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        """One file, both directions: ``a2b.<key>`` and ``b2a.<key>``."""
        state = {f"{d}.{k}": v for d in DIRECTIONS for k, v in model[d].state_dict().items()}
        return {self.options.name: state}

    def metadata(self, stem: str) -> dict[str, str]:
        """Header of the exported pair: task, domains, inference rule and generator architecture."""
        architecture = self.build_generator_architecture()
        return {"task": self.name, "name": stem, "directions": ",".join(DIRECTIONS),
                "domain_a": self.options.domain_a, "domain_b": self.options.domain_b,
                "inference": f"resize to a multiple of {STRIDE}, translate, resize back"} | {
                    k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in architecture.items()}

    def build_generator_architecture(self) -> dict[str, Any]:
        """The generator's constructor arguments (the header rebuilds it from them)."""
        return {key: getattr(self.options, key) for key in self.header_keys}

    # -- run state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """The image pools, so a resumed run continues exactly."""
        return {f"pool_{d}.{k}": v for d, pool in self.pools.items() for k, v in pool.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the image pools of :meth:`state_dict`."""
        for domain, pool in self.pools.items():
            prefix = f"pool_{domain}."
            pool.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
