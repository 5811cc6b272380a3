"""Pure tensor functions on ``(B, C, H, W)`` batches: statistics, transforms, colour, matting."""

from .attention import attend
from .clustering import auto_masks
from .color import luminance, match_color, rgb_to_yiq, transfer_luminance, yiq_to_rgb
from .flow import consistency_mask, estimate_flow, histogram_distance, motion_boundaries, occlusion_mask, warp
from .gram import gram_matrix
from .histogram import match_histograms
from .layout import channels_last
from .masks import resize_mask
from .matting import laplacian_to_torch, matting_energy, matting_laplacian
from .padding import pad_to_multiple
from .patch_swap import nearest_patches, patch_swap, style_decorator, style_patches
from .smoothing import box_filter, guided_filter, photo_smooth
from .stats import adain, instance_normalize, mean_std
from .tv import total_variation
from .wct import colour, covariance, style_colouring, whiten, whiten_color, whiten_color_with

__all__ = [
    "adain",
    "attend",
    "auto_masks",
    "box_filter",
    "channels_last",
    "colour",
    "consistency_mask",
    "covariance",
    "estimate_flow",
    "gram_matrix",
    "guided_filter",
    "histogram_distance",
    "instance_normalize",
    "laplacian_to_torch",
    "luminance",
    "match_color",
    "match_histograms",
    "matting_energy",
    "matting_laplacian",
    "mean_std",
    "motion_boundaries",
    "nearest_patches",
    "occlusion_mask",
    "pad_to_multiple",
    "patch_swap",
    "photo_smooth",
    "resize_mask",
    "rgb_to_yiq",
    "style_colouring",
    "style_decorator",
    "style_patches",
    "total_variation",
    "transfer_luminance",
    "warp",
    "whiten",
    "whiten_color",
    "whiten_color_with",
    "yiq_to_rgb",
]
