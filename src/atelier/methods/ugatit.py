"""U-GAT-IT: unpaired translation with attention (CAM) and adaptive layer-instance norm.

Paper: Kim, Kim, Kang & Lee 2020, "U-GAT-IT: Unsupervised Generative Attentional Networks with
Adaptive Layer-Instance Normalization for Image-to-Image Translation" (ICLR). Generators with a
CAM attention module and AdaLIN residual blocks (:class:`atelier.nets.ugatit.UGATITGenerator`),
a global (7-layer) and a local (5-layer) discriminator with CAM per domain, and the loss of
sec. 2.2 (eq. 6): ``lambda1 L_lsgan + lambda2 L_cycle + lambda3 L_identity + lambda4 L_cam`` with
lambda1 = 1, lambda2 = 10, lambda3 = 10, lambda4 = 1000 (sec. 2.2). The adversarial terms apply
to the discriminators' patch scores and to their CAM logits (eq. 2); the generators' CAM
classifiers learn to tell their source domain (1) from their target domain (0) (eq. 5). Adam,
lr 1e-4, betas (0.5, 0.999), weight decay 1e-4, linear decay over the second half (sec. 3.1 and
the authors' code). ``light: true`` is the authors' small-memory variant.

Training shares CycleGAN's two-phase task (:class:`atelier.pipelines.translation.TranslationTask`):
content folder = domain A, style folder = domain B; the export is one file with both
generators, used by ``atelier translate --model NAME``.

Deviations from the paper and the authors' code:
    * Each step updates the generators first and then the discriminators on those fakes
      (CycleGAN's order, one generator pass per step); the authors' code updates the
      discriminators first on a separate generator pass.
    * L1 losses on the [-1, 1] scale (as the authors' code), see :func:`atelier.pipelines.translation.l1`.
    * The network deviations listed in :mod:`atelier.nets.ugatit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..nets.gan import STRIDE, lsgan_loss
from ..nets.ugatit import UGATITDiscriminator, UGATITGenerator, clip_rho
from ..options import option
from ..pipelines.translation import TranslationOptions, TranslationTask, l1
from ..train.task import register_task

__all__ = ["UGATITOptions", "UGATITTraining"]


@dataclass(frozen=True)
class UGATITOptions(TranslationOptions):
    """Options of U-GAT-IT training (Kim et al. 2020, sec. 2-3 and appendix A)."""

    width: int = option(64, "channels of the generators' first layer (appendix A: 64)")
    blocks: int = option(4, "residual blocks in the generators' encoder and decoder each (appendix A: 4)")
    light: bool = option(False, "the authors' small-memory variant: the gamma/beta MLP reads pooled features")
    size: int = option(256, "training image size (set it to crop_size); sizes the full generator's MLP")
    disc_width: int = option(64, "channels of the discriminators' first layer (appendix A: 64)")
    global_layers: int = option(7, "layers of the global discriminators (appendix A: 7)")
    local_layers: int = option(5, "layers of the local discriminators (appendix A: 5)")
    adv_weight: float = option(1.0, "lambda1, weight of the adversarial losses (sec. 2.2: 1)")
    cycle_weight: float = option(10.0, "lambda2, weight of the cycle loss (sec. 2.2: 10)")
    identity_weight: float = option(10.0, "lambda3, weight of the identity loss (sec. 2.2: 10)")
    cam_weight: float = option(1000.0, "lambda4, weight of the generators' CAM loss (sec. 2.2: 1000)")
    pool_size: int = option(0, "generated images the discriminators draw from (the authors' code: none)")

    def validate(self) -> None:
        """The base checks, plus widths >= 1, blocks >= 0, discriminators of >= 3 layers, size a multiple of 4.

        Loss weights must be >= 0.
        """
        super().validate()
        if self.width < 1 or self.blocks < 0 or self.disc_width < 1:
            raise OptionError("width and disc_width must be >= 1 and blocks >= 0")
        if self.global_layers < 3 or self.local_layers < 3:
            raise OptionError("global_layers and local_layers must be >= 3")
        if self.size < STRIDE or self.size % STRIDE:
            raise OptionError(f"size must be a multiple of {STRIDE}, got {self.size}")
        self.non_negative("adv_weight", "cycle_weight", "identity_weight", "cam_weight")


def _bce(logits: Tensor, target: float) -> Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@register_task
class UGATITTraining(TranslationTask):
    """U-GAT-IT: CAM + AdaLIN generators, global and local CAM discriminators per domain."""

    name = "ugatit"
    Options = UGATITOptions
    options: UGATITOptions
    header_keys = ("width", "blocks", "light", "size")

    def build_generator(self) -> nn.Module:
        """A U-GAT-IT generator of the configured width, blocks, light variant and size."""
        opts = self.options
        return UGATITGenerator(width=opts.width, blocks=opts.blocks, light=opts.light, size=opts.size)

    def build_discriminators(self) -> dict[str, nn.Module]:
        """A global and a local discriminator for each domain (``d_global_a``, ``d_local_a``, ...)."""
        opts = self.options
        return {f"d_{scale}{domain}": UGATITDiscriminator(width=opts.disc_width, layers=layers)
                for domain in ("a", "b")
                for scale, layers in (("global_", opts.global_layers), ("local_", opts.local_layers))}

    def after_generator_step(self, model: nn.ModuleDict) -> None:
        """Clip both generators' ``rho`` to [0, 1] after each update (sec. 2.1.1)."""
        # rho lives in [0, 1] (sec. 2.1.1; the authors' RhoClipper after every update).
        for direction in ("a2b", "b2a"):
            clip_rho(model[direction])

    def _adversarial(self, model: nn.ModuleDict, domain: str, image: Tensor, real: bool) -> Tensor:
        """LSGAN terms of both discriminators of ``domain`` on their scores and CAM logits (eq. 2)."""
        total = image.new_zeros((), dtype=torch.float32)
        for scale in ("global_", "local_"):
            scores, cam_logit = model[f"d_{scale}{domain}"](image)
            total = total + lsgan_loss(scores, real) + lsgan_loss(cam_logit, real)
        return total

    def generator_losses(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor | None,
                         context: dict[str, Any]) -> dict[str, Tensor]:
        """Adversarial, cycle, identity and CAM losses of both generators (Kim et al. 2020, eq. 6).

        The detached fakes go to ``context`` for the discriminators' step.
        """
        assert real_b is not None
        opts = self.options
        # Typed, not checked: anything with the generator's translate() will do (tests use stand-ins).
        g_ab, g_ba = cast(UGATITGenerator, model["a2b"]), cast(UGATITGenerator, model["b2a"])
        fake_b, cam_ab, _ = g_ab.translate(real_a)
        fake_a, cam_ba, _ = g_ba.translate(real_b)
        context["fake_a"], context["fake_b"] = fake_a.detach(), fake_b.detach()
        same_a, cam_aa, _ = g_ba.translate(real_a)
        same_b, cam_bb, _ = g_ab.translate(real_b)
        adversarial = self._adversarial(model, "a", fake_a, True) + self._adversarial(model, "b", fake_b, True)
        cycle = l1(g_ba(fake_b), real_a) + l1(g_ab(fake_a), real_b)
        identity = l1(same_a, real_a) + l1(same_b, real_b)
        # Each generator's classifier: 1 for images of its source domain, 0 for its target's (eq. 5).
        cam = _bce(cam_ab, 1.0) + _bce(cam_bb, 0.0) + _bce(cam_ba, 1.0) + _bce(cam_aa, 0.0)
        return {"g_adv": opts.adv_weight * adversarial, "cycle": opts.cycle_weight * cycle,
                "identity": opts.identity_weight * identity, "cam": opts.cam_weight * cam}

    def discriminator_terms(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor, fake_a: Tensor,
                            fake_b: Tensor) -> dict[str, Tensor]:
        """The adversarial loss of each domain's discriminators on real and fake images, times ``adv_weight``."""
        weight = self.options.adv_weight
        return {f"d_{d}": weight * (self._adversarial(model, d, real, True) + self._adversarial(model, d, fake, False))
                for d, real, fake in (("a", real_a, fake_a), ("b", real_b, fake_b))}
