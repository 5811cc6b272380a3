"""Total variation."""

from __future__ import annotations

from torch import Tensor

from ._checks import check_bchw

__all__ = ["total_variation"]


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels (Mahendran & Vedaldi 2015, eq. 5, beta=2).

    Args:
        image: ``(B, C, H, W)``.

    Returns:
        A scalar.
    """
    check_bchw(image, "image")
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()
