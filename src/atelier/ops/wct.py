"""Whitening and colouring transform (Li, Fang, Yang, Wang, Lu, Yang 2017, sec. 3.1).

``f_cs = E_s D_s^{1/2} E_s^T  E_c D_c^{-1/2} E_c^T (f_c - m_c) + m_s`` (eq. 2–3), with the
eigendecompositions of the content and style feature covariances.

The decompositions run in float64 (the statistics are summed in float64 from short float32
products, :func:`centred_covariance`); the resulting ``C x C`` map is applied in
the features' own dtype, in chunks of positions, so a full-resolution relu1_1 map never has a
float64 copy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import check_bchw
from .linalg import eigen_powers, symmetric_power

__all__ = [
    "Colouring",
    "Whitened",
    "centred_covariance",
    "colour",
    "covariance",
    "style_colouring",
    "whiten",
    "whiten_color",
    "whiten_color_with",
    "whiten_for_colour",
]

#: Positions per chunk when accumulating statistics and applying the transform.
CHUNK = 1 << 18


def covariance(
    features: Tensor, mask: Tensor | None = None, dtype: torch.dtype = torch.float64, correction: int = 1
) -> tuple[Tensor, Tensor]:
    """Mean ``(B, C, 1)`` and covariance ``(B, C, C)`` of ``(B, C, H, W)`` features over space.

    ``mask`` ``(B or 1, 1, H, W)`` weights the positions (region statistics for spatial
    control). The covariance divides by ``weight sum - correction`` (as :func:`torch.cov`:
    1 is unbiased for a 0/1 mask, 0 the population covariance). Differentiable.
    """
    check_bchw(features, "features")
    x = features.flatten(2)
    batch, channels, count = x.shape
    if mask is not None:
        check_bchw(mask, "mask", channels=1)
        w_all = mask.flatten(2).expand(batch, 1, count)
    total = torch.zeros(batch, 1, 1, dtype=dtype, device=x.device)
    first = torch.zeros(batch, channels, 1, dtype=dtype, device=x.device)
    second = torch.zeros(batch, channels, channels, dtype=dtype, device=x.device)
    # Shift by the first position's value so that the one-pass sums do not cancel catastrophically.
    shift = x[..., :1].to(dtype)
    for start in range(0, count, CHUNK):
        chunk = x[..., start : start + CHUNK].to(dtype) - shift
        if mask is None:
            total += chunk.shape[-1]
            first += chunk.sum(-1, keepdim=True)
            second += chunk @ chunk.transpose(1, 2)
        else:
            w = w_all[..., start : start + CHUNK].to(dtype)
            total += w.sum(-1, keepdim=True)
            first += (chunk * w).sum(-1, keepdim=True)
            second += (chunk * w) @ chunk.transpose(1, 2)
    total = total.clamp_min(1e-8)
    mean = first / total
    divisor = (total - correction).clamp_min(1.0) if correction else total
    cov = (second - total * mean @ mean.transpose(1, 2)) / divisor
    return mean + shift, cov


#: Positions per float32 product in :func:`centred_covariance`: short enough that the float32 sums
#: stay accurate, long enough for an efficient matrix product.
PRODUCT_CHUNK = 8192


def centred_covariance(features: Tensor, mask: Tensor | None = None,
                       dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """:func:`covariance` (unbiased) with the products in the features' precision, for float32 features.

    The mean comes first; the centred features are then multiplied in float32 over
    :data:`PRODUCT_CHUNK` positions at a time and the partial sums added in ``dtype``. Centring
    first removes the cancellation that one-pass sums suffer, and the short float32 sums keep a
    relative error near 1e-6 (measured on VGG relu1_1-relu4_1 covariances of 512 px images: at
    most 1e-6 of the largest entry, 0.2% of the smallest eigenvalue, whose floor ``eps`` is far
    below it), while the products run about twice as fast as float64 ones and need no float64
    copy of the map. Float64 features take :func:`covariance`.
    """
    check_bchw(features, "features")
    if features.dtype == torch.float64:
        return covariance(features, mask, dtype)
    x = _positions(features.float())  # (B, HW, C), a view of channels-last maps
    batch, count, channels = x.shape
    if mask is None:
        total = torch.full((batch, 1, 1), float(count), dtype=dtype, device=x.device)
        mean = x.mean(1, keepdim=True).to(dtype)  # float32 cascade sums (a float64 sum is 3x slower)
        weights = None
    else:
        check_bchw(mask, "mask", channels=1)
        weights = _positions(mask.float()).expand(batch, count, 1)
        total = weights.sum(1, keepdim=True).to(dtype).clamp_min(1e-8)
        mean = (x * weights).sum(1, keepdim=True).to(dtype) / total
    centred = x - mean.float()  # (B, HW, C), contiguous
    second = torch.zeros(batch, channels, channels, dtype=dtype, device=x.device)
    for start in range(0, count, PRODUCT_CHUNK):
        chunk = centred[:, start : start + PRODUCT_CHUNK]
        weighted = chunk if weights is None else chunk * weights[:, start : start + PRODUCT_CHUNK]
        second += (weighted.transpose(1, 2) @ chunk).to(dtype)
    mean = mean.transpose(1, 2)  # (B, C, 1)
    return mean, second / (total - 1).clamp_min(1.0)


def whiten_color(
    content: Tensor,
    style: Tensor,
    *,
    eps: float = 1e-5,
    content_mask: Tensor | None = None,
    style_mask: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Give ``content`` features the mean and covariance of ``style`` features.

    Args:
        content: ``(B, C, H, W)``.
        style: ``(B, C, H', W')``.
        eps: eigenvalues below this are treated as zero.
        content_mask: optional ``(1, 1, H, W)`` weights: the content statistics are taken
            over this region (the transform is applied everywhere; callers blend by mask).
        style_mask: the same for the style, ``(1, 1, H', W')``.
        dtype: precision of the statistics and decompositions: float64 (default, stable for
            the ill-conditioned 512x512 covariances of deep layers) or float32 (the fast path).

    Returns:
        ``(B, C, H, W)`` in the dtype of ``content``, whose covariance equals the style's.
    """
    # style_colouring checks the style's shape, whiten_color_with the content's and the channel counts.
    return whiten_color_with(content, style_colouring(style, eps=eps, mask=style_mask, dtype=dtype), eps=eps,
                             content_mask=content_mask, dtype=dtype)


class Colouring(NamedTuple):
    """The colouring half of WCT for one style (Li et al. 2017, eq. 3): whitened ``f`` -> ``matrix @ f + mean``."""

    #: ``(B, C, 1)``: the style features' mean.
    mean: Tensor
    #: ``(B, C, C)``: ``E_s D_s^{1/2} E_s^T``, the square root of the style features' covariance.
    matrix: Tensor


def style_colouring(style: Tensor, *, eps: float = 1e-5, mask: Tensor | None = None,
                    dtype: torch.dtype = torch.float64) -> Colouring:
    """The :class:`Colouring` of ``style`` features ``(B, C, H, W)`` (over ``mask``'s region when given).

    The style's half of :func:`whiten_color`: a style reused over many contents (a folder, the
    frames of a video) computes it once and passes it to :func:`whiten_color_with`.
    """
    check_bchw(style, "style")
    mean, cov = centred_covariance(style, mask, dtype)
    return Colouring(mean, symmetric_power(cov, 0.5, eps, drop_small=True))


def whiten_color_with(content: Tensor, colouring: Colouring, *, eps: float = 1e-5,
                      content_mask: Tensor | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """:func:`whiten_color` given the style's :func:`style_colouring` instead of its features.

    ``colouring`` should come from the same ``eps`` and ``dtype``; the result is then identical.
    """
    check_bchw(content, "content")
    if content.shape[1] != colouring.mean.shape[1]:
        raise ValueError(f"channel counts differ: {content.shape[1]} vs {colouring.mean.shape[1]}")
    mean_c, cov_c = centred_covariance(content, content_mask, dtype)
    matrix = colouring.matrix.to(dtype) @ symmetric_power(cov_c, -0.5, eps, drop_small=True)
    offset = colouring.mean.to(dtype) - matrix @ mean_c
    return _affine(content, matrix, offset)


def _positions(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` as ``(B, HW, C)``: a view (no copy) of channels-last and of contiguous maps."""
    batch, channels = x.shape[:2]
    if x.is_contiguous():
        return x.flatten(2).transpose(1, 2)
    return x.permute(0, 2, 3, 1).reshape(batch, -1, channels)  # a view when channels-last, else a copy


def _affine(features: Tensor, matrix: Tensor, offset: Tensor) -> Tensor:
    """``matrix @ f + offset`` at every position of ``(B, C, H, W)`` features, in chunks, in their dtype.

    Computed on the ``(B, HW, C)`` positions, so the result is channels-last (what the decoders
    take) and a channels-last input is read without a copy.
    """
    matrix, offset = matrix.to(features.dtype), offset.to(features.dtype)
    batch, channels, height, width = features.shape
    x, bias, weight = _positions(features), offset.transpose(1, 2), matrix.transpose(1, 2)
    if x.shape[1] <= CHUNK:
        out = torch.baddbmm(bias, x, weight)
    else:
        out = torch.empty(batch, height * width, channels, dtype=features.dtype, device=features.device)
        for start in range(0, x.shape[1], CHUNK):
            out[:, start : start + CHUNK] = torch.baddbmm(bias, x[:, start : start + CHUNK], weight)
    return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def whiten(features: Tensor, *, eps: float = 1e-5, mask: Tensor | None = None,
           dtype: torch.dtype = torch.float64) -> Tensor:
    """Whitening half of WCT (Li et al. 2017, eq. 2): ``D^{-1/2} E^T (f - m)`` rotated back by ``E`` (ZCA).

    The result has zero mean and identity covariance (over ``mask``'s region).
    """
    check_bchw(features, "features")
    mean, cov = centred_covariance(features, mask, dtype)
    matrix = symmetric_power(cov, -0.5, eps, drop_small=True)
    return _affine(features, matrix, -matrix @ mean)


class Whitened(NamedTuple):
    """Whitened features with what colours whitened features like them again (:func:`whiten_for_colour`)."""

    whitened: Tensor
    mean: Tensor
    matrix: Tensor
    invertible: bool


def whiten_for_colour(features: Tensor, *, eps: float = 1e-5, dtype: torch.dtype = torch.float64) -> Whitened:
    """:func:`whiten` ``features``, and return what colours whitened features like them.

    Returns ``(whitened, mean, matrix, invertible)``: the mean ``(B, C, 1)`` and the colouring
    matrix ``E D^{1/2} E^T`` (Li et al. 2017, eq. 3) for :func:`colour`, from the same covariance
    and eigendecomposition as the whitening (Avatar-Net whitens the style and colours with it).
    ``invertible`` says that no eigenvalue was at or below ``eps``: the colouring then undoes the
    whitening exactly, and colouring whitened pixels of ``features`` gives ``features`` back.
    """
    check_bchw(features, "features")
    mean, cov = centred_covariance(features, None, dtype)
    values, vectors = torch.linalg.eigh(cov)
    whitening, colouring = eigen_powers(values, vectors, (-0.5, 0.5), eps, drop_small=True)
    return Whitened(_affine(features, whitening, -whitening @ mean), mean, colouring, bool((values > eps).all()))


def colour(features: Tensor, mean: Tensor, matrix: Tensor) -> Tensor:
    """Colouring half of WCT (Li et al. 2017, eq. 3): ``matrix @ f + mean`` for whitened ``features``.

    ``mean`` ``(B, C, 1)`` and the colouring ``matrix`` ``(B, C, C)`` come from :func:`whiten_for_colour`.
    """
    check_bchw(features, "features")
    return _affine(features, matrix, mean)
