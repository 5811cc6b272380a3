"""CycleGAN: unpaired image-to-image translation between two domains (both directions).

Paper: Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks" (ICCV). Two generators ``G: A -> B`` and ``F: B -> A``
(:class:`atelier.nets.gan.ResnetGenerator`), two 70x70 PatchGAN discriminators, the
least-squares adversarial loss (sec. 4), the cycle-consistency loss (eq. 2) with lambda = 10
(sec. 4) and the identity loss (sec. 5.2) with weight 0.5 lambda; the discriminators see an
image pool of 50 (sec. 4) and their loss is halved (sec. 4). Adam, lr 2e-4, betas (0.5, 0.999),
constant for the first half of training then linearly to 0 (``schedule: linear``).

Here the "style" is a whole domain: the trainer's content folder is domain A, its style folder
domain B (both random crops with flips). Training: ``atelier train
configs/cyclegan_summer2winter.yaml``; inference: ``atelier translate photo.jpg --model
summer2winter [--direction b2a]``.

What CycleGAN and U-GAT-IT (:mod:`atelier.methods.ugatit`) share lives in
:mod:`atelier.pipelines.translation`: the two-phase training task
(:class:`~atelier.pipelines.translation.TranslationTask`: generators, then discriminators, on the
one trainer) and the loading and running of an exported generator pair
(:class:`~atelier.pipelines.translation.Translator`).

Exported file: one ``<name>.safetensors`` with both generators, keys prefixed ``a2b.`` and
``b2a.``, and a header (task, architecture, domain names) from which
:class:`~atelier.pipelines.translation.Translator` rebuilds them without any config.

Deviations from the paper:
    * The L1 losses are computed on images scaled to [-1, 1] (as the authors' code does), so
      lambda keeps its meaning although atelier's images are in [0, 1].
    * Inference resizes the input to the nearest multiple of 4 (the authors' ``preprocess
      none``) and the output back to the input's size, so outputs keep their input's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..errors import OptionError
from ..nets.gan import PatchDiscriminator, ResnetGenerator, lsgan_loss
from ..options import option
from ..pipelines.translation import TranslationOptions, TranslationTask, l1
from ..train.task import register_task

__all__ = ["CycleGANOptions", "CycleGANTraining"]


@dataclass(frozen=True)
class CycleGANOptions(TranslationOptions):
    """Options of CycleGAN training (Zhu et al. 2017, sec. 4 and appendix 7)."""

    width: int = option(64, "channels of the generators' first layer (appendix 7.2: 64)")
    blocks: int = option(9, "residual blocks of the generators (appendix 7.2: 9 at 256 px, 6 at 128 px)")
    disc_width: int = option(64, "channels of the discriminators' first layer (appendix 7.2: 64)")
    disc_layers: int = option(3, "stride-2 layers of the PatchGAN (3 = the 70x70 PatchGAN of appendix 7.2)")
    lambda_cycle: float = option(10.0, "lambda, the weight of the cycle-consistency loss (eq. 3; sec. 4: 10)")
    lambda_identity: float = option(0.5, "identity loss weight as a fraction of lambda (sec. 5.2: 0.5)")

    def validate(self) -> None:
        """The base checks, plus widths and layer counts >= 1 and blocks and loss weights >= 0."""
        super().validate()
        if self.width < 1 or self.blocks < 0 or self.disc_width < 1 or self.disc_layers < 1:
            raise OptionError("width, disc_width and disc_layers must be >= 1 and blocks >= 0")
        self.non_negative("lambda_cycle", "lambda_identity")


@register_task
class CycleGANTraining(TranslationTask):
    """CycleGAN: ResNet generators, PatchGAN discriminators, LSGAN + cycle + identity losses."""

    name = "cyclegan"
    Options = CycleGANOptions
    options: CycleGANOptions
    header_keys = ("width", "blocks")

    def build_generator(self) -> nn.Module:
        """A ResNet generator with ``width`` channels and ``blocks`` residual blocks."""
        return ResnetGenerator(width=self.options.width, blocks=self.options.blocks)

    def build_discriminators(self) -> dict[str, nn.Module]:
        """The PatchGAN discriminators ``d_a`` and ``d_b``, ``disc_width`` wide and ``disc_layers`` deep."""
        opts = self.options
        return {f"d_{d}": PatchDiscriminator(width=opts.disc_width, layers=opts.disc_layers) for d in ("a", "b")}

    def generator_losses(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor | None,
                         context: dict[str, Any]) -> dict[str, Tensor]:
        """LSGAN, cycle and optional identity losses of both generators (Zhu et al. 2017, eq. 3).

        The detached fakes go to ``context`` for the discriminators' step.
        """
        assert real_b is not None
        opts = self.options
        fake_b, fake_a = model["a2b"](real_a), model["b2a"](real_b)
        context["fake_a"], context["fake_b"] = fake_a.detach(), fake_b.detach()
        adversarial = lsgan_loss(model["d_b"](fake_b), True) + lsgan_loss(model["d_a"](fake_a), True)
        cycle = l1(model["b2a"](fake_b), real_a) + l1(model["a2b"](fake_a), real_b)
        terms = {"g_adv": adversarial, "cycle": opts.lambda_cycle * cycle}
        weight = opts.lambda_identity * opts.lambda_cycle
        if weight > 0:  # G(b) should be b, F(a) should be a (sec. 5.2)
            terms["identity"] = weight * (l1(model["a2b"](real_b), real_b) + l1(model["b2a"](real_a), real_a))
        return terms

    def discriminator_terms(self, model: nn.ModuleDict, real_a: Tensor, real_b: Tensor, fake_a: Tensor,
                            fake_b: Tensor) -> dict[str, Tensor]:
        """Half the LSGAN loss of ``d_a`` and of ``d_b`` on real and fake images."""
        # Halved so D learns more slowly than G (sec. 4).
        return {f"d_{d}": 0.5 * (lsgan_loss(model[f"d_{d}"](real), True) + lsgan_loss(model[f"d_{d}"](fake), False))
                for d, real, fake in (("a", real_a, fake_a), ("b", real_b, fake_b))}
