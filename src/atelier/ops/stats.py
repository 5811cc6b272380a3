"""Per-channel feature statistics and adaptive instance normalisation."""

from __future__ import annotations

from torch import Tensor

from ._checks import check_bchw

__all__ = ["adain", "mean_std"]


def mean_std(features: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over space.

    Args:
        features: ``(B, C, H, W)``.
        eps: added to the variance before the square root, for a finite gradient.

    Returns:
        ``(mean, std)``, each ``(B, C, 1, 1)``.
    """
    check_bchw(features, "features")
    flat = features.flatten(2)
    mean = flat.mean(-1)[..., None, None]
    std = (flat.var(-1, unbiased=False) + eps).sqrt()[..., None, None]
    return mean, std


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation (Huang & Belongie 2017, eq. 8).

    ``AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)`` per channel.

    Args:
        content: ``(B, C, H, W)``.
        style: ``(B, C, H', W')``.
        eps: variance stabiliser.

    Returns:
        ``(B, C, H, W)`` with the style's per-channel mean and std.
    """
    c_mean, c_std = mean_std(content, eps)
    s_mean, s_std = mean_std(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean
