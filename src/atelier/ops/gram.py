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

    The product is formed in ``dtype`` (float32 for half-precision ``X``: Gram sums need
    its range and precision), while the backward runs in ``X``'s own dtype: the gradient
    flows into a network running in that precision anyway, and a bf16 product there is
    ~3x cheaper than promoting ``X`` again.
    """

    @staticmethod
    def forward(ctx, x: Tensor, dtype: torch.dtype) -> Tensor:
        ctx.save_for_backward(x)
        wide = x.to(dtype)
        return torch.bmm(wide.transpose(1, 2), wide)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return torch.bmm(x, (grad + grad.transpose(1, 2)).to(x.dtype)), None


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
    flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
    if mask is None:
        count = torch.full((b, 1, 1), float(h * w), device=features.device, dtype=dtype)
    else:
        check_bchw(mask, "mask", channels=1)
        weights = mask.to(dtype).reshape(mask.shape[0], h * w, 1)
        flat = flat.to(dtype) * weights
        # Weights enter squared in F F^T, so the area is sum(m^2) (= sum(m) for binary masks).
        count = (weights * weights).sum(1, keepdim=True).clamp_min(1e-8)
    return _SymmetricProduct.apply(flat, dtype) / (c * count)
