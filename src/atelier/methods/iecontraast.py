"""IEContraAST: arbitrary style transfer with internal-external and contrastive learning.

Paper: Chen, Wang, Xie, Lu & Luo 2021, "Artistic Style Transfer with Internal-external
Learning and Contrastive Learning" (NeurIPS). The network is SANet's (Park & Lee 2019; the
attention transform and decoder of :mod:`atelier.pipelines.attention`); what the paper adds is
in the training:

* internal learning (sec. 3.1): SANet's content, style and identity losses (eq. 1–4 of the paper);
* external learning (sec. 3.2, eq. 5): a discriminator over the whole painting collection
  judges the stylizations against every style image, not only against the one style image of
  the pair (LSGAN, three scales: :class:`~atelier.nets.gan.MultiScaleDiscriminator`);
* contrastive learning (sec. 3.3, eq. 6–9): stylizations that share a style are pulled
  together in a style projection of their relu3_1 features, those that share a content in a
  content projection of their relu4_1 features, and each is pushed away from the stylizations
  that share neither (:func:`~atelier.losses.grouped_info_nce`, tau = 0.2).

Batch construction (sec. 3.3 and the authors' ``train.py``): a step draws N/2 contents
``c_i`` and N/2 styles ``s_i`` and stylizes ``(c_i, s_i)`` and ``(c_{i+1}, s_i)``, so each of
the N outputs shares its style with exactly one other output and its content with exactly one
other. Here ``batch_size`` is N/2 (the authors' 12 outputs = ``batch_size: 6``).

Loss weights (sec. 4, the authors' ``train.py``): content 1, style 1, identity 50 and 1,
adversarial 5, style and content contrast 0.3 each; Adam 1e-4 with inverse decay 5e-5,
160k steps at batch 12 on 256 px crops; the discriminator's Adam uses betas (0.5, 0.999).

At inference it is SANet's network with its runtime controls (``alpha``, several styles with
weights, masks, colour preservation, video).

Deviations:
    * caffe VGG-19 with per-block feature scales (:mod:`atelier.losses.moments`), as SANet here;
    * the projection heads read the spatial *mean* of the features (the authors' code sums them),
      divided by the layer's feature scale, so their input does not grow with the crop size;
    * each discriminator scale is the 70x70 PatchGAN of :mod:`atelier.nets.gan` (the authors':
      four stride-2 blocks and a 3x3 head); both optimizers share the trainer's betas;
    * identity losses are computed on the N/2 distinct contents and styles (the authors' batch
      repeats each twice: the same mean);
    * the shipped weights start where SANet's do (the transform as a soft style swap,
      :meth:`~atelier.nets.sanet.SANetTransform.start_as_soft_swap`; AdaIN's decoder) and train
      for a few hundred CPU steps at 128 px, not 160k at 256 px (the model card); without
      ``init`` a run starts from the weights named by ``start_from``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..losses import grouped_info_nce, layer_scale
from ..nets.gan import MultiScaleDiscriminator, lsgan_loss
from ..nets.pretrained import read_weights
from ..nets.spec import WeightsSpec
from ..pipelines.attention import (
    StyleAttentionConfig,
    StyleAttentionMethod,
    StyleAttentionTraining,
    StyleAttentionTrainingOptions,
)
from ..pipelines.base import option, register
from ..train.task import Phase, register_task

__all__ = ["IEContraASTConfig", "IEContraASTMethod", "IEContraASTTraining", "IEContraASTTrainingOptions",
           "ProjectionHead"]

#: The trained attention transform and its relu4_1 decoder (what the method loads and the task exports).
TRANSFORM = WeightsSpec("iecontraast_transform", config="configs/iecontraast.yaml", what="IEContraAST transform")
DECODER = WeightsSpec("iecontraast_decoder", config="configs/iecontraast.yaml", what="relu4_1 decoder",
                      layer="relu4_1")
#: Layers of the style and content projections (Chen et al. 2021, sec. 3.3: relu3_1 and relu4_1).
STYLE_PROJECTION_LAYER = "relu3_1"
CONTENT_PROJECTION_LAYER = "relu4_1"


@dataclass(frozen=True)
class IEContraASTConfig(StyleAttentionConfig):
    """Options of IEContraAST inference (SANet's network: Chen et al. 2021, sec. 3)."""


@register
class IEContraASTMethod(StyleAttentionMethod):
    """SANet's attention network trained with a collection discriminator and contrastive losses."""

    name = "iecontraast"
    summary = ("arbitrary style, feed-forward: SANet's network trained with a painting-collection discriminator "
               "and style/content contrastive losses")
    paper = "Chen et al. 2021"
    Config = IEContraASTConfig
    config: IEContraASTConfig
    transform_weights = TRANSFORM
    decoder_weights = DECODER


class ProjectionHead(nn.Module):
    """Features ``(B, C, H, W)`` -> L2-normalised embedding ``(B, out)`` (Chen et al. 2021, sec. 3.3).

    Spatial mean (divided by ``scale``, the layer's feature scale), then Linear(C, C/2), ReLU,
    Linear(C/2, out), as the authors' heads (256 -> 128 -> 128 on relu3_1, 512 -> 256 -> 128 on relu4_1).
    """

    def __init__(self, channels: int, out: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)
        self.mlp = nn.Sequential(nn.Linear(channels, max(channels // 2, 1)), nn.ReLU(),
                                 nn.Linear(max(channels // 2, 1), out))

    def forward(self, features: Tensor) -> Tensor:
        """The unit-length embedding of each item's spatially pooled features."""
        pooled = features.float().mean(dim=(2, 3)) / self.scale
        return F.normalize(self.mlp(pooled), dim=1)


@dataclass(frozen=True)
class IEContraASTTrainingOptions(StyleAttentionTrainingOptions):
    """Loss options of IEContraAST training (Chen et al. 2021, sec. 4; the authors' train.py)."""

    style_weight: float = option(1.0, "lambda_s, mean/std style loss (Chen et al. 2021: 1; SANet: 3)")
    adversarial_weight: float = option(5.0, "lambda_adv, LSGAN loss of the collection discriminator (sec. 3.2)")
    style_contrastive_weight: float = option(0.3, "lambda_s-contra, style contrastive loss (sec. 3.3, eq. 8)")
    content_contrastive_weight: float = option(0.3, "lambda_c-contra, content contrastive loss (sec. 3.3, eq. 9)")
    contrastive_temperature: float = option(0.2, "tau of both contrastive losses (sec. 3.3)")
    projection_dim: int = option(128, "size of the style and content embeddings (sec. 3.3: 128)")
    discriminator_scales: int = option(3, "discriminators at 1x, 1/2x, 1/4x (sec. 3.2: 3)")
    disc_width: int = option(64, "channels of each PatchGAN's first layer")
    start_from: tuple[str, ...] = option(("sanet_transform", "sanet_decoder"),
                                         "shipped weights stems a fresh run without `init` starts from (the paper "
                                         "trains from scratch; SANet's weights let CPU steps go further); () = none")

    def validate(self) -> None:
        """Non-negative loss weights and a positive temperature, on top of SANet's checks."""
        super().validate()
        self.non_negative("adversarial_weight", "style_contrastive_weight", "content_contrastive_weight")
        if not self.contrastive_temperature > 0:
            raise OptionError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        if self.projection_dim < 1 or self.discriminator_scales < 1 or self.disc_width < 1:
            raise OptionError("projection_dim, discriminator_scales and disc_width must be >= 1")


def paired_batch(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Content and style indices of the ``2 * size`` outputs of a step (Chen et al. 2021, sec. 3.3).

    Output ``i < size`` is ``(c_i, s_i)``, output ``size + i`` is ``(c_{i+1 mod size}, s_i)``.
    """
    first = torch.arange(size, device=device)
    return torch.cat([first, (first + 1) % size]), torch.cat([first, first])


@register_task
class IEContraASTTraining(StyleAttentionTraining):
    """Generator phase (transform, decoder, projection heads), then the discriminator phase."""

    name = "iecontraast"
    Options = IEContraASTTrainingOptions
    options: IEContraASTTrainingOptions
    transform_weights = TRANSFORM
    decoder_weights = DECODER

    def extra_modules(self) -> dict[str, nn.Module]:
        """The style and content projection heads and the collection discriminator."""
        opts = self.options
        return {
            "style_projection": ProjectionHead(self.encoder.channels(STYLE_PROJECTION_LAYER), opts.projection_dim,
                                               layer_scale(STYLE_PROJECTION_LAYER, opts.feature_scales)),
            "content_projection": ProjectionHead(self.encoder.channels(CONTENT_PROJECTION_LAYER), opts.projection_dim,
                                                 layer_scale(CONTENT_PROJECTION_LAYER, opts.feature_scales)),
            "discriminator": MultiScaleDiscriminator(scales=opts.discriminator_scales,
                                                     width=opts.disc_width),
        }

    def layers(self) -> tuple[str, ...]:
        """SANet's loss layers plus the two projection layers."""
        return tuple(dict.fromkeys((*super().layers(), STYLE_PROJECTION_LAYER, CONTENT_PROJECTION_LAYER)))

    def phases(self, model: nn.ModuleDict) -> list[Phase]:
        """Generator and heads, then the discriminator.

        The authors update D first on the same fakes; the order within a step changes nothing else.
        """
        generator = [p for key in ("transform", "decoder", "style_projection", "content_projection")
                     for p in model[key].parameters()]
        return [Phase("generator", generator, self.generator_losses),
                Phase("discriminator", list(model["discriminator"].parameters()), self.discriminator_losses)]

    def generator_losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None,
                         context: dict[str, Any]) -> dict[str, Tensor]:
        """Internal, external and contrastive terms of one step; leaves the outputs in ``context``."""
        assert style is not None
        opts = self.options
        size = content.shape[0]
        if size < 2 or style.shape[0] != size:
            raise OptionError(f"iecontraast pairs every content with two styles: it needs batch_size >= 2 "
                              f"(got {size} contents, {style.shape[0]} styles)")
        layers = self.layers()
        content_features = self.encoder(content, layers)
        style_features = self.encoder(style, layers)
        content_index, style_index = paired_batch(size, content.device)
        pair_content = {k: v[content_index] for k, v in content_features.items()}
        pair_style = {k: v[style_index] for k, v in style_features.items()}
        output = self.stylize(model, pair_content, pair_style)
        context["fake"] = output.detach()
        output_features = self.encoder(output, layers)
        terms = self.internal_losses(model, content, style, content_features, style_features, output_features,
                                     content_targets=pair_content, style_targets=pair_style)
        tau = opts.contrastive_temperature
        style_embedding = model["style_projection"](output_features[STYLE_PROJECTION_LAYER])
        content_embedding = model["content_projection"](output_features[CONTENT_PROJECTION_LAYER])
        terms["style_contrastive"] = opts.style_contrastive_weight * grouped_info_nce(
            style_embedding, style_index, content_index, tau)
        terms["content_contrastive"] = opts.content_contrastive_weight * grouped_info_nce(
            content_embedding, content_index, style_index, tau)
        adversarial = sum(lsgan_loss(scores, True) for scores in model["discriminator"](output))
        assert isinstance(adversarial, Tensor)
        terms["adversarial"] = opts.adversarial_weight * adversarial
        return terms

    def discriminator_losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None,
                             context: dict[str, Any]) -> dict[str, Tensor]:
        """LSGAN discriminator loss: the step's style images are real, its stylizations fake (eq. 5)."""
        assert style is not None
        fake = context.get("fake")
        if fake is None:  # no generator phase ran before (evaluation)
            with torch.no_grad():
                fake = self.sample(model, content, style)
        discriminator = model["discriminator"]
        real_loss = sum(lsgan_loss(scores, True) for scores in discriminator(style))
        fake_loss = sum(lsgan_loss(scores, False) for scores in discriminator(fake.detach()))
        total = real_loss + fake_loss
        assert isinstance(total, Tensor)
        return {"discriminator": total}

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Every term of both phases on one batch (held-out evaluation)."""
        context: dict[str, Any] = {}
        return self.generator_losses(model, content, style, context) | self.discriminator_losses(
            model, content, style, context)

    def initialize(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> str:
        """A fresh run without ``init`` starts from the shipped weights of ``start_from``."""
        lines = []
        for stem in self.options.start_from:
            path = WeightsSpec.locate_file(stem)
            lines.append(f"{stem}: {self.load_init(model, read_weights(path)[0])}")
        return ("start from " + "; ".join(lines)) if lines else ""
