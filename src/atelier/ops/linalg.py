"""Small linear-algebra helpers shared by the colour and feature transforms."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["symmetric_power"]


def symmetric_power(matrix: Tensor, power: float, eps: float, *, drop_small: bool = False) -> Tensor:
    """``matrix ** power`` of symmetric positive semi-definite ``(..., C, C)`` matrices via ``eigh``.

    Eigenvalues below ``eps`` are raised to ``eps`` (``drop_small=False``, a floor that keeps flat
    images finite) or treated as zero (``drop_small=True``, as in Li et al. 2017's WCT code).
    """
    values, vectors = torch.linalg.eigh(matrix)
    scaled = values.clamp_min(eps).pow(power)
    if drop_small:
        scaled = torch.where(values > eps, scaled, torch.zeros_like(scaled))
    return vectors @ torch.diag_embed(scaled) @ vectors.transpose(-1, -2)
