"""Exact per-channel histogram matching by sorting (Risser et al. 2017, sec. 4.2)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["match_histograms"]


def match_histograms(source: Tensor, reference: Tensor) -> Tensor:
    """Remap each channel of ``source`` so its histogram equals that of ``reference``.

    Each value is replaced by the reference quantile at the same rank (linear interpolation
    between reference order statistics), the remapping ``R(O)`` of Risser et al. 2017, eq. 6.

    Args:
        source: ``(B, C, N)`` values to remap.
        reference: ``(B or 1, C, M)`` values whose distribution is wanted.

    Returns:
        ``(B, C, N)``, detached (the remapped target is treated as a constant).
    """
    if source.ndim != 3 or reference.ndim != 3 or reference.shape[1] != source.shape[1]:
        raise ValueError(
            f"expected (B, C, N) and (B, C, M) with equal C, got {tuple(source.shape)} "
            f"and {tuple(reference.shape)}"
        )
    source = source.detach().float()
    reference = reference.detach().float().expand(source.shape[0], -1, -1)
    n, m = source.shape[-1], reference.shape[-1]
    sorted_reference = reference.sort(-1).values
    order = source.argsort(-1)
    # Position of each rank (0..n-1) in the reference's order statistics (0..m-1).
    position = torch.arange(n, device=source.device, dtype=torch.float32) * ((m - 1) / max(n - 1, 1))
    low = position.floor().long().clamp(max=m - 1)
    high = (low + 1).clamp(max=m - 1)
    frac = position - low
    quantiles = sorted_reference[..., low] * (1 - frac) + sorted_reference[..., high] * frac
    return torch.empty_like(source).scatter_(-1, order, quantiles)
