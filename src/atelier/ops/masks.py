"""Resizing spatial masks to feature maps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_bchw
from .layout import spatial_size

__all__ = ["resize_mask"]


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a soft mask ``(B, K, H, W)`` in [0, 1] to ``size`` = (h, w).

    Area averaging when shrinking (a region's weight equals the share of its pixels, as in
    the guided Gram matrices of Gatys et al. 2017, sec. 4), bilinear when enlarging.
    """
    check_bchw(mask, "mask")
    if spatial_size(mask) == tuple(size):
        return mask
    if size[0] <= mask.shape[-2] and size[1] <= mask.shape[-1]:
        return F.interpolate(mask, size=size, mode="area")
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
