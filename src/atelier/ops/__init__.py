"""Pure tensor functions on ``(B, C, H, W)`` batches: statistics, transforms, colour."""

from .color import luminance, match_color, rgb_to_yiq, transfer_luminance, yiq_to_rgb
from .gram import gram_matrix
from .histogram import match_histograms
from .masks import resize_mask
from .stats import adain, mean_std
from .tv import total_variation

__all__ = [
    "adain",
    "gram_matrix",
    "luminance",
    "match_color",
    "match_histograms",
    "mean_std",
    "resize_mask",
    "rgb_to_yiq",
    "total_variation",
    "transfer_luminance",
    "yiq_to_rgb",
]
