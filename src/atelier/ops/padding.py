"""Padding images to a multiple of a network's stride."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_bchw

__all__ = ["pad_to_multiple"]


def pad_to_multiple(image: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad ``image`` ``(B, C, H, W)`` on the right and bottom so both sides are multiples of ``multiple``.

    Returns the padded image and the ``F.pad`` tuple (to pad masks alike).

    Reflection padding continues the picture without a seam; when the pad is not smaller than
    the image (reflection needs that), the edge pixels are replicated instead.
    """
    check_bchw(image, "image")
    height, width = image.shape[-2:]
    pad = (0, -width % multiple, 0, -height % multiple)
    if not any(pad):
        return image, pad
    return F.pad(image, pad, mode="reflect" if max(pad) < min(height, width) else "replicate"), pad
