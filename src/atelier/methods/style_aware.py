"""Style-aware content loss: one fast network per artist or genre, trained on a collection.

Paper: Sanakoyeu, Kotovenko, Lang & Ommer 2018, "A Style-Aware Content Loss for Real-time HD
Style Transfer" (ECCV). An encoder-decoder generator ``G = D o E``
(:class:`atelier.nets.style_aware.StyleAwareGenerator`) is trained against a discriminator
that tells the paintings of one collection (an artist or a genre) from stylized photos and
from the photos themselves (sec. 3.1). The generator minimises (eq. 6)

    L = lambda_adv * L_adv + lambda_c * L_c + lambda_t * L_T,

* ``L_adv``: the generator's adversarial loss, log-loss on the discriminator's patch scores;
* ``L_c`` (eq. 4), the style-aware content loss: ``1/d * ||E(x) - E(G(x))||^2`` in the
  generator's own encoder space, so the content kept is what matters for the style, not what a
  fixed ImageNet network finds important (:func:`style_aware_content_loss`);
* ``L_T`` (eq. 5), the transformed-image loss: ``1/(CHW) * ||T(x) - T(G(x))||^2`` with ``T`` a
  fixed 10x10 average pooling of stride 1 (:func:`transformed_image_loss`), which keeps the
  layout without asking for the photo's textures.

Weights: the authors' code (``adaptive-style-transfer``, main.py defaults) uses
``lambda_adv = 1`` (``--dlw``), ``lambda_t = 100`` (``--tlw``), ``lambda_c = 100`` (``--flw``);
Adam lr 2e-4, batch 1, 768 px crops, 300k iterations. The discriminator minimises the log-loss
of paintings as real and of stylized and real photos as fake (sec. 3.1).

Runtime: ``atelier stylize photo.jpg --model chinese_landscape`` (the method ``style_aware`` is
chosen from the file's header); folders and video work as for every method. The generator is
fully convolutional: any size, limited by memory (stated and refused above it).

Deviations from the paper:
    * The discriminator is the 70x70 PatchGAN of :mod:`atelier.nets.gan` (one scale), not the
      paper's seven-layer discriminator with five prediction heads.
    * Both networks are updated every step; the authors' code updates only the discriminator
      while its accuracy is below 0.8 and only the generator otherwise.
    * The shipped networks are far narrower and shorter-trained than the paper's (CPU budget;
      see their model cards and configs/style_aware_*.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..nets.gan import PatchDiscriminator, log_loss
from ..nets.style_aware import StyleAwareGenerator
from ..options import MethodConfig, option
from ..pipelines.base import StylizeResult, register
from ..pipelines.memory import check_fits, generator_bytes
from ..pipelines.trained import TrainedNetworkMethod, collection_info, load_trained
from ..train.data import MIN_COLLECTION_IMAGES
from ..train.task import Phase, TrainingTask, register_task

__all__ = ["NETWORKS", "StyleAware", "StyleAwareConfig", "StyleAwareOptions", "StyleAwareTraining",
           "load_generator", "style_aware_content_loss", "transformed_image", "transformed_image_loss"]

TASK = "style_aware"
#: The trained networks of this method, in one place: file stem -> the config that trains it
#: (the header of each file carries the generator's architecture, see :meth:`StyleAwareTraining.metadata`).
NETWORKS = {"chinese_landscape": "configs/style_aware_chinese_landscape.yaml",
            "kaokore": "configs/style_aware_kaokore.yaml"}
#: Side of the average pooling ``T`` of the transformed-image loss (the authors' code: 10, stride 1).
TRANSFORM_KERNEL = 10


# -- losses --------------------------------------------------------------------------------------
def style_aware_content_loss(features: Tensor, stylized_features: Tensor) -> Tensor:
    """``L_c = 1/d * ||E(x) - E(G(x))||_2^2`` (Sanakoyeu et al. 2018, eq. 4), averaged over the batch.

    Args:
        features: ``E(x)`` ``(B, C, h, w)``, the generator's encoding of the photo.
        stylized_features: ``E(G(x))``, the same encoder on the stylized photo.
    """
    return F.mse_loss(stylized_features.float(), features.float())


def transformed_image(image: Tensor, kernel: int = TRANSFORM_KERNEL) -> Tensor:
    """``T(x)``: the fixed ``kernel x kernel`` average pooling of stride 1 of eq. 5 (valid positions)."""
    kernel = max(1, min(kernel, *image.shape[-2:]))
    return F.avg_pool2d(image, kernel, stride=1)


def transformed_image_loss(image: Tensor, stylized: Tensor, kernel: int = TRANSFORM_KERNEL) -> Tensor:
    """``L_T = 1/(CHW) * ||T(x) - T(G(x))||_2^2`` (eq. 5) on images in [0, 1]."""
    return F.mse_loss(transformed_image(stylized.float(), kernel), transformed_image(image.float(), kernel))


# -- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StyleAwareOptions(MethodConfig):
    """Options of style-aware training (Sanakoyeu et al. 2018, sec. 3-4 and the authors' code)."""

    name: str = option("style_aware", "file stem of the exported generator (e.g. chinese_landscape)")
    collection: str = option("", "name of the collection (artist or genre), for the model card")
    width: int = option(32, "channels of the generator's first layer (the paper: 32)")
    blocks: int = option(9, "residual blocks of the decoder (the paper: 9)")
    disc_width: int = option(64, "channels of the discriminator's first layer (PatchGAN: 64)")
    disc_layers: int = option(3, "stride-2 layers of the PatchGAN discriminator (3 = 70x70 patches)")
    adversarial_weight: float = option(1.0, "lambda_adv, the adversarial loss weight (authors' code --dlw: 1)")
    content_weight: float = option(100.0, "lambda_c, the style-aware content loss weight (authors' code --flw: 100)")
    transform_weight: float = option(100.0, "lambda_t, the transformed-image loss weight (authors' code --tlw: 100)")
    photos_as_fake: bool = option(True, "the discriminator also learns real photos as fake (sec. 3.1)")

    def validate(self) -> None:
        """Refuse a stem that is not a plain file name and impossible sizes."""
        if not self.name or "/" in self.name:
            raise OptionError(f"name must be a plain file stem, got {self.name!r}")
        if self.width < 1 or self.blocks < 0 or self.disc_width < 1 or self.disc_layers < 1:
            raise OptionError("width, disc_width and disc_layers must be >= 1 and blocks >= 0")
        self.non_negative("adversarial_weight", "content_weight", "transform_weight")


def _generator(model: nn.ModuleDict) -> StyleAwareGenerator:
    """The generator of the training model (typed; the model is a ModuleDict of parts)."""
    return cast(StyleAwareGenerator, model["generator"])


@register_task
class StyleAwareTraining(TrainingTask[nn.ModuleDict]):
    """Generator (encoder-decoder) and PatchGAN discriminator, trained in two phases per step."""

    name = TASK
    Options = StyleAwareOptions
    options: StyleAwareOptions
    needs_style = True
    needs_encoder = False  # the content loss lives in the generator's own encoder space
    min_style_images = MIN_COLLECTION_IMAGES

    def build_generator(self) -> StyleAwareGenerator:
        """The generator of the options' architecture."""
        return StyleAwareGenerator(width=self.options.width, blocks=self.options.blocks)

    def build_model(self) -> nn.ModuleDict:
        """``ModuleDict`` of the generator and the discriminator ``d``."""
        opts = self.options
        return nn.ModuleDict({"generator": self.build_generator(),
                              "d": PatchDiscriminator(width=opts.disc_width, layers=opts.disc_layers)})

    def phases(self, model: nn.ModuleDict) -> list[Phase]:
        """The generator phase, then the discriminator phase (on the step's detached output)."""
        return [Phase("generator", list(_generator(model).parameters()), self.generator_losses),
                Phase("discriminator", list(model["d"].parameters()), self.discriminator_losses)]

    def generator_losses(self, model: nn.ModuleDict, photo: Tensor, painting: Tensor | None,
                         context: dict[str, Any]) -> dict[str, Tensor]:
        """``lambda_adv L_adv + lambda_c L_c + lambda_t L_T`` (eq. 6); leaves ``G(x)`` in ``context``."""
        opts = self.options
        generator = _generator(model)
        features = generator.encode(photo)
        stylized = generator(photo)
        context["stylized"] = stylized.detach()
        return {"g_adv": opts.adversarial_weight * log_loss(model["d"](stylized), True),
                "style_aware_content": opts.content_weight * style_aware_content_loss(features,
                                                                                      generator.encode(stylized)),
                "transformed": opts.transform_weight * transformed_image_loss(photo, stylized)}

    def discriminator_losses(self, model: nn.ModuleDict, photo: Tensor, painting: Tensor | None,
                             context: dict[str, Any]) -> dict[str, Tensor]:
        """Paintings real; stylized photos (and, sec. 3.1, the photos themselves) fake."""
        assert painting is not None
        if "stylized" not in context:  # no generator phase ran before (evaluation)
            with torch.no_grad():
                context["stylized"] = _generator(model)(photo)
        d = model["d"]
        terms = {"d_real": self.options.adversarial_weight * log_loss(d(painting), True),
                 "d_fake": self.options.adversarial_weight * log_loss(d(context["stylized"].float()), False)}
        if self.options.photos_as_fake:
            terms["d_photo"] = self.options.adversarial_weight * log_loss(d(photo), False)
        return terms

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Every generator and discriminator term on one batch."""
        context: dict[str, Any] = {}
        return self.generator_losses(model, content, style, context) | self.discriminator_losses(
            model, content, style, context)

    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        """The stylized photos."""
        return _generator(model)(content)

    def evaluate(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """The loss terms and the discriminator's share of stylized photos taken for paintings."""
        with torch.no_grad():
            metrics = {f"eval_{k}": float(v) for k, v in self.losses(model, content, style).items()}
            scores = model["d"](_generator(model)(content)).float()
            metrics["eval_d_fooled"] = float((scores.mean(dim=(1, 2, 3)) > 0).float().mean())
        return metrics

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The generator alone (the discriminator is only for training)."""
        return {self.options.name: _generator(model).state_dict()}

    def metadata(self, stem: str) -> dict[str, str]:
        """Task, collection and the generator's architecture (it is rebuilt from them)."""
        return {"task": TASK, "name": stem, "collection": self.options.collection or stem,
                "width": str(self.options.width), "blocks": str(self.options.blocks),
                "inference": "reflection-pad to a multiple of 16, stylize, crop back"}


# -- inference -----------------------------------------------------------------------------------
def load_generator(model: str) -> tuple[StyleAwareGenerator, dict[str, Any]]:
    """A trained style-aware generator by name (``atelier models``) or ``.safetensors`` path.

    Returns the generator and its header facts (``path``, ``name``, ``collection``, ``steps``).

    Raises:
        OptionError: no model given.
        WeightsError: missing file, another kind of network, or damaged header or weights.
    """
    net, header, path = load_trained(
        model, task=TASK, train_hint=f"atelier train {NETWORKS['chinese_landscape']}",
        what="style-aware collection model",
        build=lambda h: StyleAwareGenerator(width=int(h["width"]), blocks=int(h["blocks"])))
    return net, collection_info(header, path)


@dataclass(frozen=True)
class StyleAwareConfig(MethodConfig):
    """Options of a collection-trained network at inference."""

    model: str = option("", "trained collection model: a name from `atelier models` (e.g. chinese_landscape) "
                            "or a .safetensors file")


@register
class StyleAware(TrainedNetworkMethod[StyleAwareGenerator]):
    """A generator trained on one collection (artist or genre): one forward pass, any size."""

    name = TASK
    summary = ("style-aware content loss: a fast network per artist or genre, trained on a collection of "
               "paintings (--model chinese_landscape, kaokore)")
    paper = "Sanakoyeu et al. 2018"
    Config = StyleAwareConfig
    config: StyleAwareConfig
    uses_style_images = False
    supports_masks = True
    unloaded_info: ClassVar[dict[str, Any]] = {"collection": "?"}
    load = staticmethod(load_generator)

    def style_count(self) -> int:
        """One style: the collection's."""
        return 1

    def _check_memory(self, height: int, width: int) -> None:
        need = generator_bytes(height, width, self.network.width)
        check_fits(need, width=width, height=height, what="this generator")

    def stylize(self, content: Tensor, styles: Sequence[Tensor], *, style_weights: Sequence[float],
                masks: Tensor | None = None, device: str = "cpu", progress: bool = True,
                seed: int | None = None) -> StylizeResult:
        """Run the generator on ``content`` ``(1, 3, H, W)``; a mask keeps the photo outside it."""
        net = self.network
        self._check_memory(*content.shape[-2:])
        image = content.to(device).float()
        with torch.no_grad():
            output = net.to(device)(image).float()
        if masks is not None:
            region = masks.to(device).float()[:, :1]
            output = region * output + (1 - region) * image
        return StylizeResult(image=output.clamp(0, 1).cpu(),
                             info={"model": self._info.get("name"), "collection": self._info.get("collection")})
