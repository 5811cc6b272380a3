"""Per-channel feature statistics, adaptive instance normalisation and exact feature distribution matching."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_bchw

__all__ = ["adain", "exact_feature_distribution_matching", "instance_normalize", "mean_std"]


#: Elements per chunk of :func:`mean_std`'s inference path: 2 MB of float32, one buffer reused by
#: every chunk (measured fastest of 32K-512K elements on relu1_1-relu4_1 maps at 512 px, one and two
#: threads; a fresh buffer per chunk costs its page faults every time).
_STATS_CHUNK_ELEMENTS = 1 << 19


def mean_std(features: Tensor, eps: float = 1e-5, mask: Tensor | None = None, *,
             dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over space.

    Args:
        features: ``(B, C, H, W)``.
        eps: added to the variance before the square root, for a finite gradient.
        mask: optional ``(B or 1, 1, H, W)`` weights; the statistics are then those of the
            weighted region (spatial control, Huang & Belongie 2017, sec. 7.2).
        dtype: dtype of the statistics (default: the features'). With a mask or a gradient the
            features are converted to it first; without both the statistics are computed in
            float32 (or float64 for float64 features) from the features as they are.

    Returns:
        ``(mean, std)``, each ``(B, C, 1, 1)``.
    """
    check_bchw(features, "features")
    if mask is None and not (features.requires_grad and torch.is_grad_enabled()):
        return _chunked_mean_std(features, eps, dtype or features.dtype)
    if dtype is not None:
        features = features.to(dtype)
    if mask is None:
        # Two passes (mean, then the mean square of the centred values) over a (B, HW, C) view of
        # channels-last maps (no copy), for autograd: as exact as the chunked path (no
        # cancellation, the values are centred first).
        batch, channels = features.shape[:2]
        positions = features.permute(0, 2, 3, 1).reshape(batch, -1, channels)
        mean = positions.mean(1, keepdim=True)
        var = torch.square(positions - mean).mean(1)
        return mean.reshape(batch, channels, 1, 1), (var + eps).sqrt().reshape(batch, channels, 1, 1)
    flat = features.flatten(2)
    check_bchw(mask, "mask", channels=1)
    w = mask.to(features.dtype).flatten(2)
    total = w.sum(-1, keepdim=True).clamp_min(1e-8)
    mean = (flat * w).sum(-1, keepdim=True) / total
    var = ((flat - mean) ** 2 * w).sum(-1, keepdim=True) / total
    return mean[..., None], (var + eps).sqrt()[..., None]


def _chunked_mean_std(features: Tensor, eps: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """:func:`mean_std` without a gradient: one pass over cache-sized chunks of positions.

    Each chunk is converted to float32 (float64 stays float64) in one reused buffer, shifted by
    the first chunk's mean and summed with its squares: ``var = E[d^2] - E[d]^2`` of the shifted
    values ``d`` loses nothing to cancellation, since the shift is near the mean. On a channels-last
    map this reads the features once: 8.6 against 44 ms for the two passes over a float32 copy on a
    bf16 relu1_1 map at 512 px, one thread (10 against 35 ms on two; docs/BENCHMARKS.md), and
    closer to float64's statistics.
    """
    batch, channels = features.shape[:2]
    positions = features.permute(0, 2, 3, 1).reshape(batch, -1, channels)
    compute = torch.float64 if features.dtype == torch.float64 else torch.float32
    count = positions.shape[1]
    chunk = max(1, _STATS_CHUNK_ELEMENTS // (batch * channels))
    total = positions.new_zeros((batch, 1, channels), dtype=compute)
    squares = positions.new_zeros((batch, 1, channels), dtype=compute)
    buffer = positions.new_empty((batch, min(chunk, count), channels), dtype=compute)
    shift: Tensor | None = None
    for start in range(0, count, chunk):
        part = positions[:, start:start + chunk]
        shifted = buffer[:, :part.shape[1]].copy_(part)
        if shift is None:  # the first chunk's mean, from the converted chunk itself
            shift = shifted.mean(1, keepdim=True)
        shifted.sub_(shift)
        total += shifted.sum(1, keepdim=True)
        squares += shifted.mul_(shifted).sum(1, keepdim=True)
    assert shift is not None  # count >= 1: one chunk at least
    offset = total / count
    var = (squares / count - offset * offset).clamp_min_(0)
    return ((shift + offset).reshape(batch, channels, 1, 1).to(dtype),
            (var + eps).sqrt().reshape(batch, channels, 1, 1).to(dtype))


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
    """``(x - mu(x)) / sigma(x)`` per channel: instance normalisation without affine parameters.

    The "mean-variance norm" of SANet (Park & Lee 2019, sec. 3.2); ``mask`` as in :func:`mean_std`.
    """
    mean, std = mean_std(features, eps, mask)
    return (features - mean) / std


def _sorted_values(features: Tensor, mask: Tensor | None) -> list[Tensor]:
    """Per item ``(C, n)``: each channel's values in ascending order.

    Over the region of ``mask`` (weights above 0.5, or above 0 where none is) or over all positions.
    """
    flat = features.flatten(2)
    if mask is None:
        return list(flat.sort(-1).values)
    region = mask.flatten(2)[0, 0]
    keep = region > 0.5 if bool((region > 0.5).any()) else region > 0
    return list(flat[..., keep].sort(-1).values)


def _resample(values: Tensor, count: int) -> Tensor:
    """Sorted ``values`` ``(C, m)`` resampled to ``(C, count)`` by linear interpolation.

    The same values when ``m == count``.
    """
    size = values.shape[-1]
    if size == count:
        return values
    if size == 1:
        return values.expand(*values.shape[:-1], count)
    if count == 1:
        return values[..., (size - 1) // 2 :][..., :1]
    position = torch.arange(count, dtype=torch.float64, device=values.device) * ((size - 1) / (count - 1))
    low = position.floor().long().clamp(max=size - 2)
    fraction = (position - low).to(values.dtype)
    return torch.lerp(values[..., low], values[..., low + 1], fraction)


def exact_feature_distribution_matching(content: Tensor, style: Tensor, *, content_mask: Tensor | None = None,
                                        style_mask: Tensor | None = None) -> Tensor:
    """Exact feature distribution matching (EFDM, Zhang et al. 2022).

    Zhang et al. 2022, "Exact Feature Distribution Matching for Arbitrary Style Transfer and Domain
    Generalization", CVPR.

    Per channel, the content values are sorted and each takes the style value of the same rank
    (the sort-matching solution of exact histogram matching): the output keeps the content's
    ordering and has the style's values, so every moment matches, not only AdaIN's mean and std.
    When the content and the style have different numbers of positions, the style's sorted values
    are resampled to the content's count by linear interpolation.

    Args:
        content: ``(B, C, H, W)``.
        style: ``(B or 1, C, H', W')``.
        content_mask: optional ``(1, 1, H, W)`` region whose values are ranked: every position
            takes the style value at its quantile among the region's values (callers blend
            regions by mask, as with :func:`adain`).
        style_mask: optional ``(1, 1, H', W')`` region of the style providing the values.

    Returns:
        ``(B, C, H, W)``; without masks, each channel holds exactly the style's sorted values
        (resampled when the sizes differ) in the content's order.
    """
    check_bchw(content, "content")
    check_bchw(style, "style")
    if style.shape[1] != content.shape[1]:
        raise ValueError(f"content has {content.shape[1]} channels, style {style.shape[1]}")
    if content_mask is not None:
        check_bchw(content_mask, "content_mask", channels=1)
    if style_mask is not None:
        check_bchw(style_mask, "style_mask", channels=1)
    styles = _sorted_values(style, style_mask)
    flat = content.flatten(2)
    count = flat.shape[-1]
    out = torch.empty_like(flat)
    for item in range(flat.shape[0]):
        target = styles[item if len(styles) > 1 else 0].to(flat.dtype)
        if content_mask is None:
            order = flat[item].argsort(-1)
            out[item].scatter_(-1, order, _resample(target, count))
            continue
        region = _sorted_values(content[item : item + 1], content_mask)[0]
        size = region.shape[-1]
        # The quantile of every position among the region's values, then the style value there.
        rank = torch.searchsorted(region.contiguous(), flat[item].contiguous()).clamp(max=size - 1)
        resampled = _resample(target, size)
        out[item] = resampled.gather(-1, rank)
    return out.view_as(content)
