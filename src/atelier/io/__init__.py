"""Image and mask input/output."""

from .images import DEFAULT_MAX_PIXELS, load_image, resize_longest, save_image, tensor_to_pil
from .masks import load_masks

__all__ = ["DEFAULT_MAX_PIXELS", "load_image", "load_masks", "resize_longest", "save_image", "tensor_to_pil"]
