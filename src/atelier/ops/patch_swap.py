"""Patch swap (Chen & Schmidt 2016) and the style decorator of Avatar-Net (Sheng et al. 2018).

Style swap replaces every ``k x k`` patch of the content features by the style patch with the
highest normalised cross-correlation, then averages overlapping patches (Chen & Schmidt 2016,
"Fast Patch-based Style Transfer of Arbitrary Style", sec. 2, eq. 1–3). The search is one
convolution of the content with the style patches divided by their norms (the content
patch's own norm does not change the argmax); the reconstruction is the transposed
convolution of the one-hot argmax map with the unnormalised patches, divided by the number
of patches covering each position.

The exact search costs ``positions x patches x C k²`` multiply-adds, quadratic in pixels. The
approximate search (``search="approximate"``) projects the features on the ``rank`` leading
principal directions of the (normalised) style channels and takes the argmax of the projected
correlation: the same quadratic comparison, ``C / rank`` times cheaper (4x at relu3_1 with rank 64).
PatchMatch (Barnes et al. 2009) was tried and measured slower here (its per-position gathers are
memory-bound on a CPU, the projected search is one matrix product); see docs/BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw
from .layout import channels_last, spatial_size
from .wct import colour, covariance, whiten

__all__ = ["SEARCHES", "approximate_nearest_patches", "matched_patch_cost", "nearest_patches", "patch_swap",
           "style_decorator", "style_patches", "swap_batch"]

#: Bytes of correlation scores computed at once (the search runs over chunks of style patches).
SCORE_BYTES = 1 << 27
#: The patch searches: ``exact`` (every patch, eq. 1) or ``approximate`` (projected, see the module doc).
SEARCHES = ("exact", "approximate")
#: Channels kept by the approximate search (of relu3_1's 256: matched-patch cost within 1.4% of exact,
#: measured in docs/BENCHMARKS.md).
SEARCH_RANK = 64


def style_patches(style: Tensor, patch_size: int = 3, stride: int = 1) -> Tensor:
    """All ``patch_size`` x ``patch_size`` patches of ``style`` ``(1, C, H, W)`` as ``(N, C, k, k)``."""
    check_bchw(style, "style")
    if style.shape[0] != 1:
        raise OptionError(f"style must be one feature map (1, C, H, W), got batch {style.shape[0]}")
    if patch_size < 1 or stride < 1:
        raise OptionError(f"patch_size and stride must be >= 1, got {patch_size} and {stride}")
    if min(style.shape[-2:]) < patch_size:
        raise OptionError(f"style features of {spatial_size(style)} are smaller than a {patch_size}px patch")
    columns = F.unfold(style, patch_size, stride=stride)  # (1, C*k*k, N)
    return columns[0].T.reshape(-1, style.shape[1], patch_size, patch_size)


def _checked_rank(search: str, rank: int | None) -> int:
    """``rank``, or :data:`SEARCH_RANK` when None (read at call time), after checking both options."""
    if search not in SEARCHES:
        raise OptionError(f"unknown patch search {search!r}: choose one of {', '.join(SEARCHES)}")
    rank = SEARCH_RANK if rank is None else rank
    if rank < 1:
        raise OptionError(f"the approximate search's rank must be >= 1, got {rank}")
    return rank


def nearest_patches(content: Tensor, patches: Tensor, eps: float = 1e-8, *, search: str = "exact",
                    rank: int | None = None, score_dtype: torch.dtype | None = None) -> Tensor:
    """Index ``(B, H-k+1, W-k+1)`` of the patch most correlated with each content patch (Chen & Schmidt 2016, eq. 1).

    The highest normalised cross-correlation, computed as a convolution with the normalised
    patches, in chunks so the score maps stay within :data:`SCORE_BYTES`. ``search="approximate"``
    compares ``rank``-channel projections instead (:func:`approximate_nearest_patches`).
    ``score_dtype`` (default: the content's) is the precision of the products: ``torch.bfloat16``
    runs them about 1.7x faster on a CPU with native bf16 (callers pass it where
    :func:`atelier.devices.resolve_precision` says so) and picks patches of the same cost
    within 0.1% (docs/BENCHMARKS.md); the maxima are compared in float32 either way.
    """
    check_bchw(content, "content")
    rank = _checked_rank(search, rank)
    k = patches.shape[-1]
    score_dtype = score_dtype or content.dtype
    filters = patches.float() / patches.flatten(1).float().norm(dim=1).clamp_min(eps)[:, None, None, None]
    if search == "approximate" and rank < content.shape[1]:
        return approximate_nearest_patches(content, filters, rank, score_dtype=score_dtype)
    filters = filters.to(score_dtype)
    queries = content.to(score_dtype)
    if score_dtype == torch.bfloat16:  # oneDNN's bf16 convolutions want channels-last
        queries = channels_last(queries)
        filters = filters.contiguous(memory_format=torch.channels_last)
    positions = (content.shape[-2] - k + 1) * (content.shape[-1] - k + 1) * content.shape[0]
    chunk = max(1, SCORE_BYTES // (4 * positions))
    return _chunked_argmax(lambda start, stop: F.conv2d(queries, filters[start:stop]), len(filters), chunk)


def _chunked_argmax(scores: Callable[[int, int], Tensor], count: int, chunk: int) -> Tensor:
    """Index of the best of ``count`` candidates, scored ``chunk`` at a time by ``scores(start, stop)``.

    ``scores`` returns the candidates ``start:stop`` along dim 1; only one chunk's scores live at a
    time. The maximum is taken in the scores' own dtype (bf16 scores are already rounded; a
    float32 copy of the score map would cost a third of the product) and compared across chunks
    in float32.
    """
    best_score: Tensor | None = None
    best_index = torch.zeros(0)
    for start in range(0, count, chunk):
        score, index = scores(start, start + chunk).max(dim=1)
        score = score.float()
        if best_score is None:
            best_score, best_index = score, index
        else:
            better = score > best_score
            best_score = torch.where(better, score, best_score)
            best_index = torch.where(better, index + start, best_index)
    return best_index


def approximate_nearest_patches(content: Tensor, filters: Tensor, rank: int = SEARCH_RANK, *,
                                score_dtype: torch.dtype = torch.float32) -> Tensor:
    """Argmax of eq. 1 (Chen & Schmidt 2016) with both sides projected on ``rank`` channels.

    The projection is onto the leading eigenvectors of the second moment of the pixels of the
    normalised style patches ``filters`` ``(N, C, k, k)``, so the correlation keeps the
    directions the style's patches actually use; what is dropped changes
    the scores by the style's residual energy, small for CNN features whose spectrum decays fast.
    The comparison is then one matrix product of ``positions x rank k²`` by ``rank k² x patches``
    per chunk of patches (scores within :data:`SCORE_BYTES`), in ``score_dtype`` (bf16: see
    :func:`nearest_patches`). Deterministic: no random state.
    """
    k = filters.shape[-1]
    filters = filters.float()
    # Every pixel of every normalised patch, as the correlation sees them: the centre pixels
    # alone (9x cheaper) gave 3x the cost gap (1.8% against 0.6% on chicago x mondrian at 512 px).
    pixels = filters.permute(0, 2, 3, 1).reshape(-1, filters.shape[1])  # (N k², C)
    _, eigenvectors = torch.linalg.eigh(pixels.T @ pixels)
    basis = eigenvectors[:, -rank:]  # (C, rank), the leading directions (eigh sorts ascending)
    projected_filters = torch.einsum("ncij,cr->nrij", filters, basis).flatten(1)  # unfold's channel-major order
    projected_filters = projected_filters.to(score_dtype)
    indices = []
    for item in content.float():
        projected = torch.einsum("chw,cr->rhw", item, basis)
        h, w = projected.shape[-2] - k + 1, projected.shape[-1] - k + 1
        queries = F.unfold(projected[None], k)[0].T.to(score_dtype)  # (positions, rank k²)
        chunk = max(1, SCORE_BYTES // (4 * len(queries)))

        def scores(start: int, stop: int, queries: Tensor = queries) -> Tensor:
            return queries @ projected_filters[start:stop].T

        best_index = _chunked_argmax(scores, len(projected_filters), chunk)
        indices.append(best_index.reshape(h, w))
    return torch.stack(indices)


def matched_patch_cost(content: Tensor, patches: Tensor, index: Tensor, eps: float = 1e-8) -> float:
    """Sum over positions of ``1 - NCC`` of each content patch with its chosen patch.

    ``index`` comes from :func:`nearest_patches`; this is what eq. 1 minimises, to compare searches.
    """
    k = patches.shape[-1]
    table = patches.flatten(1).float()
    table = table / table.norm(dim=1, keepdim=True).clamp_min(eps)
    total = 0.0
    for item, chosen in zip(content.float(), index):
        queries = F.unfold(item[None], k)[0].T
        queries = queries / queries.norm(dim=1, keepdim=True).clamp_min(eps)
        flat = chosen.flatten()
        rows = max(1, SCORE_BYTES // (4 * queries.shape[1]))
        for start in range(0, len(flat), rows):
            part = torch.linalg.vecdot(queries[start : start + rows], table[flat[start : start + rows]])
            total += float((1 - part).sum())
    return total


def patch_swap(content: Tensor, style: Tensor, patch_size: int = 3, stride: int = 1, *, search: str = "exact",
               rank: int | None = None, score_dtype: torch.dtype | None = None) -> Tensor:
    """Style swap: each content patch replaced by its best-matching style patch (Chen & Schmidt 2016).

    Args:
        content: ``(B, C, H, W)`` features.
        style: ``(1, C, H', W')`` features of the style.
        patch_size: side of the patches (3 in the paper).
        stride: stride of the style patch extraction (1 in the paper; 2 searches 4x fewer patches).
        search: ``exact`` (eq. 1 over every patch) or ``approximate`` (``rank``-channel projection,
            :func:`approximate_nearest_patches`).
        rank: channels kept by the approximate search (default :data:`SEARCH_RANK`).
        score_dtype: precision of the search's products (:func:`nearest_patches`); the swapped
            patches keep the content's dtype.

    Returns:
        ``(B, C, H, W)``: at each position the mean of the selected style patches covering it.
        This equals the transposed convolution of the one-hot argmax map with the patches
        divided by that of an all-ones patch (eq. 3), computed by gathering the chosen patch of
        each position (``fold``) instead of multiplying by zeros.
    """
    check_bchw(style, "style")
    if content.shape[1] != style.shape[1]:
        raise OptionError(f"channel counts differ: content {content.shape[1]}, style {style.shape[1]}")
    k = patch_size
    if min(content.shape[-2:]) < k:
        raise OptionError(f"content features of {spatial_size(content)} are smaller than a {k}px patch")
    patches = style_patches(style, k, stride).to(content.dtype)
    index = nearest_patches(content, patches, search=search, rank=rank, score_dtype=score_dtype)  # (B, H', W')
    b, h, w = index.shape
    chosen = patches[index.flatten()].reshape(b, h * w, -1).transpose(1, 2)  # (B, C*k*k, H'W')
    size = spatial_size(content)
    summed = F.fold(chosen, size, k)
    counts = F.fold(torch.ones(1, k * k, h * w, dtype=content.dtype, device=content.device), size, k)
    return summed / counts


def style_decorator(
    content: Tensor, style: Tensor, *, patch_size: int = 3, stride: int = 1, eps: float = 1e-5,
    content_mask: Tensor | None = None, dtype: torch.dtype = torch.float64, search: str = "exact",
    rank: int | None = None, score_dtype: torch.dtype | None = None,
) -> Tensor:
    """Avatar-Net's style decorator (Sheng et al. 2018, sec. 3.2, eq. 2–4).

    Whiten content and style features (zero mean, identity covariance), swap every whitened
    content patch for the best-matching whitened style patch (:func:`patch_swap`), and colour
    the result with the style's covariance and mean. Matching in the whitened domain compares
    structure rather than colour and contrast; the swap keeps the style's local patterns,
    which plain WCT loses.

    Args:
        content: ``(B, C, H, W)``.
        style: ``(1, C, H', W')``.
        patch_size: side of the swapped patches (3 in the paper).
        stride: stride of the style patches (1 in the paper).
        eps: eigenvalue floor of the whitening.
        content_mask: optional ``(1, 1, H, W)`` region whose statistics whiten the content.
        dtype: precision of the covariance decompositions.
        search: the patch search (:func:`patch_swap`).
        rank: channels kept by the approximate search (default :data:`SEARCH_RANK`).
        score_dtype: precision of the search's products (:func:`nearest_patches`).
    """
    whitened_content = whiten(content, eps=eps, mask=content_mask, dtype=dtype)
    whitened_style = whiten(style, eps=eps, dtype=dtype)
    style_mean, style_cov = covariance(style, dtype=dtype)
    swapped = patch_swap(whitened_content, whitened_style, patch_size, stride, search=search, rank=rank,
                         score_dtype=score_dtype)
    return colour(swapped, style_mean, style_cov, eps=eps)


def swap_batch(content: Tensor, style: Tensor, patch_size: int = 3, stride: int = 1, *, search: str = "exact",
               rank: int | None = None) -> Tensor:
    """:func:`patch_swap` of each content item with the style item at the same index."""
    return torch.cat([patch_swap(content[i : i + 1], style[i : i + 1], patch_size, stride, search=search, rank=rank)
                      for i in range(len(content))])
