"""The hourglass decoder of Avatar-Net (Sheng, Lin, Shao, Wang 2018, sec. 3.3).

A relu4_1 decoder mirroring VGG-19 (:class:`~atelier.nets.decoder.VGGDecoder`) whose skip
connections at the relu3_1, relu2_1 and relu1_1 resolutions adapt the decoder's features to the
mean and standard deviation of encoder features (AdaIN, Huang & Belongie 2017, eq. 8): in
training those of the image being reconstructed, at test time those of the style ("multi-scale
style adaptation", fig. 3). Several sources can be mixed with scalar weights or per-pixel masks.

Skip statistics are given in encoder units and divided by per-block scales on entry (the caffe
VGG-19's relu1_1 ... relu3_1 activations differ sixfold in magnitude).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..ops.layout import spatial_size
from ..ops.masks import resize_mask
from ..ops.stats import instance_normalize, mean_std
from .decoder import VGGDecoder

__all__ = ["SKIP_LAYERS", "HourglassDecoder", "SkipSource", "skip_statistics"]

#: Encoder layers whose statistics the skip connections impose, deepest first.
SKIP_LAYERS = ("relu3_1", "relu2_1", "relu1_1")

#: One source of skip statistics: (weight: a number or a ``(1, 1, H, W)`` mask, ``{layer: (mean, std)}``).
SkipSource = tuple[float | Tensor, Mapping[str, tuple[Tensor, Tensor]]]


def _scalar_weights(sources: Sequence[SkipSource]) -> bool:
    """Whether every source's weight is a number (no per-pixel mask)."""
    return not any(isinstance(weight, Tensor) for weight, _ in sources)


def skip_statistics(features: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """``{layer: (mean, std)}`` of encoder features at :data:`SKIP_LAYERS` (each ``(B, C, 1, 1)``)."""
    return {layer: mean_std(features[layer], dtype=torch.float32) for layer in SKIP_LAYERS}


class HourglassDecoder(VGGDecoder):
    """relu4_1 decoder with style adaptation in its skip connections.

    Args:
        widths: channel widths of the encoder's blocks.
        input_scale: divisor of the relu4_1 input features.
        skip_scales: divisors of the relu3_1, relu2_1, relu1_1 statistics.
    """

    skip_scales: Tensor  # a buffer: the divisors of the skip statistics

    def __init__(self, widths: tuple[int, ...], input_scale: float = 1.0,
                 skip_scales: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__("relu4_1", widths=widths, input_scale=input_scale)
        self.register_buffer("skip_scales", torch.tensor([float(s) for s in skip_scales]))

    def _fuse(self, x: Tensor, level: int, sources: Sequence[SkipSource]) -> Tensor:
        layer, scale = SKIP_LAYERS[level], self.skip_scales[level].to(x.dtype)
        if _scalar_weights(sources):
            # Scalar weights: sum_k w_k (norm(x) std_k + mean_k) is one per-channel affine map of x,
            # applied in one pass over the map (before the fused upsampling) instead of one per source.
            mean_x, std_x = mean_std(x)
            target_std = sum(weight * statistics[layer][1].to(x) for weight, statistics in sources) / scale
            target_mean = sum(weight * statistics[layer][0].to(x) for weight, statistics in sources) / scale
            gain = target_std / std_x
            return torch.addcmul(target_mean - mean_x * gain, x, gain)
        normalized = instance_normalize(x)
        out = torch.zeros_like(x)
        for weight, statistics in sources:
            mean, std = statistics[layer]
            if isinstance(weight, Tensor):
                weight = resize_mask(weight.to(x), spatial_size(x))
            out = out + weight * (normalized * (std.to(x) / scale) + mean.to(x) / scale)
        return out

    def forward(self, features: Tensor, sources: Sequence[SkipSource] | None = None) -> Tensor:
        """Decode relu4_1 ``features``, with skips adapted to the statistics of ``sources`` when given.

        The sources' weights should sum to 1 at every pixel; without sources this is a plain decoder.
        """
        if not sources:
            return super().forward(features)
        x = features / self.input_scale.to(features.dtype)
        levels = iter(range(len(SKIP_LAYERS)))
        # With scalar weights the skip is a per-channel affine map set by the map's own mean and
        # variance, which nearest upsampling leaves unchanged: it can run before the upsampling,
        # which then fuses with the next convolution. Masks are per pixel at the upsampled size.
        return self.decode(x, at_upsample=lambda y: self._fuse(y, next(levels), sources),
                           fuse=_scalar_weights(sources))
