"""SANet: arbitrary style transfer with style-attentional networks.

Paper: Park & Lee 2019, "Arbitrary Style Transfer with Style-Attentional Networks" (CVPR).
VGG-19 encoder, SANet modules at relu4_1 and relu5_1 (:mod:`atelier.nets.sanet`, eq. 1–4),
a decoder mirroring VGG from relu4_1. Trained with a content loss on mean–variance
normalised relu4_1 and relu5_1 features (eq. 5), the mean/std style loss on relu1_1–relu5_1
(eq. 6) and two identity losses: the content and style images, each transferred with itself
as style, must come back in pixels (lambda_id1) and in features (lambda_id2) (eq. 7), with
the paper's weights 1, 3, 50, 1 (sec. 4.1).

Runtime controls as in the paper's sec. 4.3: ``alpha`` interpolates the content attending to
the style with the content attending to itself (``F_ccc``, not the raw content features);
several styles are interpolated after the merge; masks place styles in regions. The network,
the runtime and the losses are shared with IEContraAST (:mod:`atelier.pipelines.attention`).

Deviations: caffe VGG-19 with per-block feature scales (:mod:`atelier.losses.moments`);
training starts the transform as a soft style swap (``f, g, h`` at the identity,
:meth:`~atelier.nets.sanet.SANetTransform.start_as_soft_swap`) and the decoder from AdaIN's;
far fewer steps on the CPU (the model card).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..nets.spec import WeightsSpec
from ..pipelines.attention import (
    StyleAttentionConfig,
    StyleAttentionMethod,
    StyleAttentionTraining,
    StyleAttentionTrainingOptions,
)
from ..pipelines.base import register
from ..train.task import register_task

__all__ = ["SANetConfig", "SANetMethod", "SANetTraining", "SANetTrainingOptions"]

#: The trained attention transform (relu4_1 and relu5_1) and its relu4_1 decoder.
TRANSFORM = WeightsSpec("sanet_transform", config="configs/sanet.yaml", what="SANet transform")
DECODER = WeightsSpec("sanet_decoder", config="configs/sanet.yaml", what="relu4_1 decoder", layer="relu4_1")


@dataclass(frozen=True)
class SANetConfig(StyleAttentionConfig):
    """Options of SANet inference."""


@register
class SANetMethod(StyleAttentionMethod):
    """Encoder -> style attention at relu4_1 and relu5_1 -> merge -> trained decoder."""

    name = "sanet"
    summary = "arbitrary style, feed-forward: style-attentional modules at relu4_1 and relu5_1 + trained decoder"
    paper = "Park & Lee 2019"
    Config = SANetConfig
    config: SANetConfig
    transform_weights = TRANSFORM
    decoder_weights = DECODER


@dataclass(frozen=True)
class SANetTrainingOptions(StyleAttentionTrainingOptions):
    """Loss options of SANet training (Park & Lee 2019, sec. 3.3 and 4.1)."""


@register_task
class SANetTraining(StyleAttentionTraining):
    """Trains the SANet transform and decoder together; the encoder stays frozen."""

    name = "sanet"
    Options = SANetTrainingOptions
    options: SANetTrainingOptions
    transform_weights = TRANSFORM
    decoder_weights = DECODER

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """SANet's training losses of one batch: stylize ``content`` with ``style`` and score the result."""
        assert style is not None
        layers = self.layers()
        content_features = self.encoder(content, layers)
        style_features = self.encoder(style, layers)
        output_features = self.encoder(self.stylize(model, content_features, style_features), layers)
        return self.internal_losses(model, content, style, content_features, style_features, output_features)
