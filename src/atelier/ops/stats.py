"""Per-channel feature statistics and adaptive instance normalisation."""

from __future__ import annotations

from torch import Tensor

from ._checks import check_bchw

__all__ = ["adain", "instance_normalize", "mean_std"]


def mean_std(features: Tensor, eps: float = 1e-5, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over space.

    Args:
        features: ``(B, C, H, W)``.
        eps: added to the variance before the square root, for a finite gradient.
        mask: optional ``(B or 1, 1, H, W)`` weights; the statistics are then those of the
            weighted region (spatial control, Huang & Belongie 2017, sec. 7.2).

    Returns:
        ``(mean, std)``, each ``(B, C, 1, 1)``.
    """
    check_bchw(features, "features")
    flat = features.flatten(2)
    if mask is None:
        mean = flat.mean(-1)[..., None, None]
        std = (flat.var(-1, unbiased=False) + eps).sqrt()[..., None, None]
        return mean, std
    check_bchw(mask, "mask", channels=1)
    w = mask.to(features.dtype).flatten(2)
    total = w.sum(-1, keepdim=True).clamp_min(1e-8)
    mean = (flat * w).sum(-1, keepdim=True) / total
    var = ((flat - mean) ** 2 * w).sum(-1, keepdim=True) / total
    return mean[..., None], (var + eps).sqrt()[..., None]


def adain(content: Tensor, style: Tensor, eps: float = 1e-5, *, content_mask: Tensor | None = None,
          style_mask: Tensor | None = None) -> Tensor:
    """Adaptive instance normalisation (Huang & Belongie 2017, eq. 8).

    ``AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)`` per channel.

    Args:
        content: ``(B, C, H, W)``.
        style: ``(B, C, H', W')``.
        eps: variance stabiliser.
        content_mask: optional ``(1, 1, H, W)`` region whose statistics are normalised
            (the transform applies everywhere; callers blend regions by mask).
        style_mask: optional ``(1, 1, H', W')`` region of the style providing its statistics.

    Returns:
        ``(B, C, H, W)`` with the style's per-channel mean and std.
    """
    c_mean, c_std = mean_std(content, eps, content_mask)
    s_mean, s_std = mean_std(style, eps, style_mask)
    return (content - c_mean) / c_std * s_std + s_mean


def instance_normalize(features: Tensor, eps: float = 1e-5, mask: Tensor | None = None) -> Tensor:
    """``(x - mu(x)) / sigma(x)`` per channel: instance normalisation without affine parameters
    (the "mean-variance norm" of SANet, Park & Lee 2019, sec. 3.2); ``mask`` as in :func:`mean_std`."""
    mean, std = mean_std(features, eps, mask)
    return (features - mean) / std
