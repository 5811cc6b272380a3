"""Reading spatial-control masks (one grayscale PNG per style; 8- or 16-bit)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import ImageError, MaskError
from .images import ImageInput, load_image

__all__ = ["load_masks"]

MaskInput = ImageInput


def _to_gray(source: MaskInput, name: str) -> Tensor:
    if isinstance(source, Tensor):
        mask = source.detach().float()
        while mask.ndim < 4:
            mask = mask[None]
        if mask.numel() and not bool(torch.isfinite(mask).all()):
            raise MaskError(f"{name}: the mask tensor holds NaN or infinite values; give values in [0, 1]")
        if mask.ndim != 4 or mask.shape[:2] != (1, 1) or mask.min() < 0 or mask.max() > 1:
            raise MaskError(f"{name}: mask tensors must be (H, W) or (1, 1, H, W) with values in [0, 1]")
        return mask
    if isinstance(source, np.ndarray) and source.ndim == 2:
        if source.dtype == np.bool_:
            return torch.from_numpy(source.astype(np.float32))[None, None]
        if source.dtype == np.uint16:  # a 16-bit mask keeps its 65536 levels
            return torch.from_numpy(source.astype(np.float32) / 65535.0)[None, None]
        if source.dtype != np.uint8:
            raise MaskError(f"{name}: mask arrays must be uint8 (0-255), uint16 (0-65535) or bool, got {source.dtype}")
        return torch.from_numpy(source.astype(np.float32) / 255.0)[None, None]
    if isinstance(source, Image.Image) and source.mode in ("L", "1"):
        return torch.from_numpy(np.asarray(source.convert("L"), dtype=np.float32) / 255.0)[None, None]
    try:
        rgb = load_image(source, name=name)
    except ImageError as error:
        raise MaskError(f"mask {error}") from None
    # Gray value = the mask weight; colour masks use their luminance.
    return (rgb * rgb.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def load_masks(
    sources: Sequence[MaskInput], *, count: int, size: tuple[int, int]
) -> Tensor:
    """Load one mask per style and resize them to the content's ``size`` = (h, w).

    White (1) marks where a style applies; gray levels blend. A mask must have the
    content's aspect ratio (it may be at another resolution, e.g. before ``--size``).

    Returns:
        ``(1, K, h, w)`` in [0, 1], ``K = count``.

    Raises:
        MaskError: wrong count, unreadable file, or aspect ratio that does not match.
    """
    if len(sources) != count:
        raise MaskError(f"got {len(sources)} mask(s) for {count} style(s); give exactly one mask per style")
    masks = []
    height, width = size
    for index, source in enumerate(sources):
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"mask {index + 1}"
        mask = _to_gray(source, name)
        mh, mw = mask.shape[-2:]
        # Same aspect ratio up to the rounding of one pixel on either side.
        if abs(mh * width - mw * height) > max(mh, mw, height, width):
            raise MaskError(
                f"{name}: mask is {mw}x{mh} px but the content is {width}x{height} px; "
                "masks must have the content's size (or at least its aspect ratio)"
            )
        masks.append(torch.nn.functional.interpolate(mask, size=size, mode="bilinear", align_corners=False))
    return torch.cat(masks, dim=1).clamp(0, 1)
