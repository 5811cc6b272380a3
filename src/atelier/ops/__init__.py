"""Pure tensor functions on ``(B, C, H, W)`` batches: statistics, transforms, colour, matting."""

from .clustering import auto_masks
from .color import luminance, match_color, rgb_to_yiq, transfer_luminance, yiq_to_rgb
from .gram import gram_matrix
from .histogram import match_histograms
from .masks import resize_mask
from .matting import laplacian_to_torch, matting_energy, matting_laplacian
from .padding import pad_to_multiple
from .smoothing import box_filter, guided_filter, photo_smooth
from .stats import adain, mean_std
from .tv import total_variation
from .wct import covariance, whiten_color

__all__ = [
    "adain",
    "auto_masks",
    "box_filter",
    "covariance",
    "gram_matrix",
    "guided_filter",
    "laplacian_to_torch",
    "luminance",
    "match_color",
    "match_histograms",
    "matting_energy",
    "matting_laplacian",
    "mean_std",
    "pad_to_multiple",
    "photo_smooth",
    "resize_mask",
    "rgb_to_yiq",
    "total_variation",
    "transfer_luminance",
    "whiten_color",
    "yiq_to_rgb",
]
