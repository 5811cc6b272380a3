"""Coarse-to-fine schedules for multi-scale optimisation."""

from __future__ import annotations

import math

from ..errors import OptionError

__all__ = ["auto_scales", "pyramid_sizes"]

#: The coarsest level of the automatic schedule has its longest side near this (px).
COARSEST_SIDE = 256


def auto_scales(size: int) -> int:
    """Levels for ``size`` so that each level doubles and the coarsest is ~256 px.

    256 -> 1, 512 -> 2, 1024 -> 3, 2048 -> 4.
    """
    return 1 + max(0, round(math.log2(max(size, 1) / COARSEST_SIDE)))


def pyramid_sizes(height: int, width: int, scales: int, min_side: int = 16) -> list[tuple[int, int]]:
    """``(h, w)`` of each level, coarsest first, halving per level; the last is the input size.

    Levels whose shorter side would fall below ``min_side`` are dropped.
    """
    if scales < 1:
        raise OptionError(f"scales must be >= 1, got {scales}")
    sizes = []
    for level in range(scales - 1, -1, -1):
        factor = 2 ** level
        size = (max(1, round(height / factor)), max(1, round(width / factor)))
        if min(size) >= min_side or level == 0:
            sizes.append(size)
    return sizes
