"""Gram matrices, optionally restricted to a soft spatial mask."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_bchw

__all__ = ["gram_matrix"]


def gram_matrix(features: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Normalised Gram matrix :math:`G = F F^\top / (C \cdot N)` (Gatys et al. 2016, eq. 3).

    Args:
        features: ``(B, C, H, W)``.
        mask: optional ``(B or 1, 1, H, W)`` weights in [0, 1]; features are weighted by
            the mask and ``N`` is the mask's total weight instead of ``H * W``. This is the
            guided Gram matrix of Gatys et al. 2017 ("Controlling perceptual factors",
            sec. 4) and the per-label Gram of Luan et al. 2017 (eq. 3), normalised by area
            so that a region's statistics do not depend on its size.

    Returns:
        ``(B, C, C)``, in float32 (or float64 for float64 input).
    """
    check_bchw(features, "features")
    b, c, h, w = features.shape
    # Half-precision features (bf16 autocast) are promoted: Gram sums overflow/round in bf16.
    dtype = torch.promote_types(features.dtype, torch.float32)
    flat = features.to(dtype).reshape(b, c, h * w)
    if mask is None:
        count = torch.full((b, 1, 1), float(h * w), device=features.device, dtype=dtype)
    else:
        check_bchw(mask, "mask", channels=1)
        weights = mask.to(dtype).reshape(mask.shape[0], 1, h * w)
        flat = flat * weights
        # Dividing by the (weighted) area; weights enter squared in F F^T, so use sum(m^2).
        count = (weights * weights).sum(-1, keepdim=True).clamp_min(1e-8)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * count)
