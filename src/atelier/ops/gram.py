"""Gram matrices, optionally restricted to a soft spatial mask."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_bchw

__all__ = ["gram_matrix"]


class _SymmetricProduct(torch.autograd.Function):
    """``X^T X`` for ``X`` of shape ``(B, N, C)``, with a one-product backward.

    Autograd's generic rule for ``bmm(X^T, X)`` runs two ``(N, C) x (C, C)`` products and a
    sum; since the output is symmetric, ``dX = X (dG + dG^T)`` needs one. On Gram losses of
    full-resolution VGG layers this halves the backward cost.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.bmm(x.transpose(1, 2), x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.bmm(x, grad + grad.transpose(1, 2))


def gram_matrix(features: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Normalised Gram matrix :math:`G = F F^\top / (C \cdot N)` (Gatys et al. 2016, eq. 3).

    Args:
        features: ``(B, C, H, W)``, any memory format (channels-last is used without a copy).
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
    # (B, N, C): a free view of channels-last features.
    flat = features.to(dtype).permute(0, 2, 3, 1).reshape(b, h * w, c)
    if mask is None:
        count = torch.full((b, 1, 1), float(h * w), device=features.device, dtype=dtype)
    else:
        check_bchw(mask, "mask", channels=1)
        weights = mask.to(dtype).reshape(mask.shape[0], h * w, 1)
        flat = flat * weights
        # Weights enter squared in F F^T, so the area is sum(m^2) (= sum(m) for binary masks).
        count = (weights * weights).sum(1, keepdim=True).clamp_min(1e-8)
    return _SymmetricProduct.apply(flat) / (c * count)
