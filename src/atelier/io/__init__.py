"""Image, mask and segmentation-map input/output."""

from .images import (
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    load_image,
    load_image_info,
    resize_longest,
    save_image,
    tensor_to_pil,
)
from .masks import load_masks
from .segmentation import PALETTE, label_masks, load_segmentation, snap_to_palette

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PALETTE",
    "ImageInfo",
    "label_masks",
    "load_image",
    "load_image_info",
    "load_masks",
    "load_segmentation",
    "resize_longest",
    "save_image",
    "snap_to_palette",
    "tensor_to_pil",
]
