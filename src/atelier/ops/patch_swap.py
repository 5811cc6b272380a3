"""Patch swap (Chen & Schmidt 2016) and the style decorator of Avatar-Net (Sheng et al. 2018).

Style swap replaces every ``k x k`` patch of the content features by the style patch with the
highest normalised cross-correlation, then averages overlapping patches (Chen & Schmidt 2016,
"Fast Patch-based Style Transfer of Arbitrary Style", sec. 2, eq. 1–3). The paper's search is a
convolution of the content with the style patches divided by their norms (the content patch's
own norm does not change the argmax); the reconstruction (eq. 3, the transposed convolution of
the one-hot argmax map with the patches, divided by the number of patches covering each
position) gathers each chosen patch's pixels straight from the style's feature map, ``k²`` row
gathers, instead of multiplying by zeros or building the ``N x C k²`` patch table.

**Exact search** (``search="exact"``). A patch correlation is the sum of ``k²`` pixel
correlations along a diagonal: ``<c_patch(p), s_patch(q)> = Σ_d <c(p + d), s(q + d)>``. So the
search takes one matrix product of the content's pixels with the style's pixels (``C``
multiply-adds per pair instead of the convolution's ``C k²``) and sums ``k²`` shifted views of
it, in blocks of :data:`EXACT_BLOCK_BYTES` (:func:`_exact_nearest`). Still quadratic in pixels,
but on Avatar-Net's 512 px maps 5-6x faster than the convolution and 2-3x faster than the
approximate search below (docs/BENCHMARKS.md).

The approximate search (``search="approximate"``) does two things, each measured in docs/BENCHMARKS.md:

* **projection:** both sides go onto the ``rank`` leading principal directions of the
  normalised style patches' pixels, which makes every comparison ``C / rank`` times cheaper
  (4x at relu3_1 with rank 64);
* **inverted file** (Jégou et al. 2011, "Product quantization for nearest neighbor search",
  sec. 4, without the quantisation): above :data:`INVERTED_FILE_MIN` patches, spherical k-means
  puts the projected patches into ``≈ sqrt(N)`` lists; each content patch is scored against the
  lists' centroids and then only against the patches of its ``probes`` best lists. That is
  ``positions x (sqrt(N) + probes sqrt(N)) x rank k²`` multiply-adds, ``N^1.5`` instead of ``N²``.

``search="auto"`` (the methods' default) is exact up to :data:`EXACT_MAX_PAIRS` content
positions x style patches, where the exact search is the faster one, and approximate above.

PatchMatch (Barnes et al. 2009) was tried and measured slower here (its per-position gathers are
memory-bound on a CPU); see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw
from .layout import spatial_size
from .wct import Whitened, colour, whiten, whiten_for_colour

__all__ = ["SEARCHES", "PatchIndex", "approximate_nearest_patches", "matched_patch_cost", "nearest_patches",
           "patch_swap", "style_decorator", "style_patches", "swap_batch", "swapped_features"]

#: Bytes of correlation scores computed at once by the approximate search's products.
SCORE_BYTES = 1 << 27
#: Bytes of pixel correlations (float32) the exact search computes at once: a block of content rows
#: against a block of style rows. 16 MB keeps a block and its partial sums in this CPU's 32 MB L3
#: (8 and 128 MB were slower, docs/BENCHMARKS.md).
EXACT_BLOCK_BYTES = 1 << 24
#: ``auto`` searches exactly up to this many content positions x style patches (about 0.15 s on two
#: cores at 4.4 ns per pair), approximately above: on Avatar-Net's relu4_1 maps the two were equally
#: fast at 50-60 M pairs (768 px), the approximate one 2x faster at 250 M (1024 px), docs/BENCHMARKS.md.
EXACT_MAX_PAIRS = 1 << 25
#: The patch searches: ``auto`` (exact while cheap, else approximate), ``exact`` (every patch, eq. 1)
#: or ``approximate`` (projected, see the module doc).
SEARCHES = ("auto", "exact", "approximate")
#: Channels kept by the approximate search (of relu3_1's 256: matched-patch cost within 1.4% of exact,
#: measured in docs/BENCHMARKS.md).
SEARCH_RANK = 64
#: Lists of the inverted file each content patch is compared with (docs/BENCHMARKS.md: the cost and
#: time of 4, 8 and 16 probes).
SEARCH_PROBES = 8
#: From this many style patches on, the approximate search uses the inverted file; below, scoring
#: every projected patch is as fast as building the lists (64 x 64 relu3_1 pixels: a 256 px style).
INVERTED_FILE_MIN = 4096
#: Rounds of spherical k-means that build the inverted file's lists ...
KMEANS_ROUNDS = 6
#: ... on at most this many evenly spaced keys per list (all keys: 5x the k-means time; with bf16
#: list products, measured together, the matched-patch cost rose at most 0.3% on 6 pairs at 512 px,
#: docs/BENCHMARKS.md).
KMEANS_KEYS_PER_LIST = 32


def style_patches(style: Tensor, patch_size: int = 3, stride: int = 1) -> Tensor:
    """All ``patch_size`` x ``patch_size`` patches of ``style`` ``(1, C, H, W)`` as ``(N, C, k, k)``.

    The list's order (row-major over the top-left corners, ``stride`` apart) is the order the
    searches' indices refer to.
    """
    _check_patches(style, patch_size, stride)
    columns = F.unfold(style, patch_size, stride=stride)  # (1, C*k*k, N)
    return columns[0].T.reshape(-1, style.shape[1], patch_size, patch_size)


def _check_patches(style: Tensor, patch_size: int, stride: int) -> None:
    check_bchw(style, "style")
    if style.shape[0] != 1:
        raise OptionError(f"style must be one feature map (1, C, H, W), got batch {style.shape[0]}")
    if patch_size < 1 or stride < 1:
        raise OptionError(f"patch_size and stride must be >= 1, got {patch_size} and {stride}")
    if min(style.shape[-2:]) < patch_size:
        raise OptionError(f"style features of {spatial_size(style)} are smaller than a {patch_size}px patch")


def _checked_search(search: str, rank: int | None, probes: int | None) -> tuple[int, int]:
    """``rank`` and ``probes``, or their module defaults when None (read at call time), after checking."""
    if search not in SEARCHES:
        raise OptionError(f"unknown patch search {search!r}: choose one of {', '.join(SEARCHES)}")
    rank = SEARCH_RANK if rank is None else rank
    probes = SEARCH_PROBES if probes is None else probes
    if rank < 1:
        raise OptionError(f"the approximate search's rank must be >= 1, got {rank}")
    if probes < 1:
        raise OptionError(f"the approximate search's probes must be >= 1, got {probes}")
    return rank, probes


def _patch_norms(style: Tensor, patch_size: int, stride: int) -> Tensor:
    """Euclidean norm (float32) of every patch of :func:`style_patches`, from the map's pixel energies.

    ``(1, 1, rows, cols)``: the patch grid, whose row-major order is the patch list's.
    """
    energy = style.float().square().sum(1, keepdim=True)
    return (F.avg_pool2d(energy, patch_size, stride) * patch_size**2).sqrt()


def nearest_patches(content: Tensor, style: Tensor, patch_size: int = 3, stride: int = 1, eps: float = 1e-8, *,
                    search: str = "exact", rank: int | None = None, probes: int | None = None,
                    score_dtype: torch.dtype | None = None,
                    index_cache: dict[tuple[Any, ...], PatchIndex] | None = None) -> Tensor:
    """Index ``(B, H-k+1, W-k+1)`` into :func:`style_patches` of the patch most correlated with each content patch.

    Chen & Schmidt 2016, eq. 1: the highest normalised cross-correlation. ``search="exact"``
    scores every patch (:func:`_exact_nearest`); ``search="approximate"`` is
    :func:`approximate_nearest_patches`; ``search="auto"`` is exact up to :data:`EXACT_MAX_PAIRS`
    positions x patches. ``score_dtype`` (default: the content's) is the precision of the
    products: ``torch.bfloat16`` runs them about 2x faster on a CPU with native bf16 (callers pass
    it where :func:`atelier.devices.resolve_precision` says so) and picks patches of the same cost
    within 0.1% (docs/BENCHMARKS.md); sums and maxima are taken in float32. ``index_cache``: see
    :func:`approximate_nearest_patches` (the exact search has no index to keep).
    """
    check_bchw(content, "content")
    _check_patches(style, patch_size, stride)
    rank, probes = _checked_search(search, rank, probes)
    if search == "auto":
        grid_rows, grid_cols = _patch_grid(style, patch_size, stride)
        positions = content.shape[0] * (content.shape[-2] - patch_size + 1) * (content.shape[-1] - patch_size + 1)
        search = "exact" if positions * grid_rows * grid_cols <= EXACT_MAX_PAIRS else "approximate"
    if search == "approximate":
        return approximate_nearest_patches(content, style, patch_size, stride, rank=rank, probes=probes, eps=eps,
                                           score_dtype=score_dtype, index_cache=index_cache)
    return torch.stack([_exact_nearest(item[None], style, patch_size, stride, eps, score_dtype or content.dtype)
                        for item in content])


def _patch_grid(style: Tensor, patch_size: int, stride: int) -> tuple[int, int]:
    """Rows and columns of the top-left corners of :func:`style_patches`."""
    return (style.shape[-2] - patch_size) // stride + 1, (style.shape[-1] - patch_size) // stride + 1


def _exact_nearest(content: Tensor, style: Tensor, patch_size: int, stride: int, eps: float,
                   dtype: torch.dtype) -> Tensor:
    """Eq. 1 over every style patch for one content map ``(1, C, H, W)``: indices ``(H-k+1, W-k+1)``.

    The pixel correlations ``G[p, q] = <c(p), s(q)>`` are one matrix product (in ``dtype``);
    patch ``n`` at style corner ``s n`` then scores ``Σ_{a,b} G[(i+a, j+b), (s n_r + a, s n_c + b)]``
    at content corner ``(i, j)``, a sum of ``k²`` strided views of ``G``. The sum runs in two
    stages (the ``k`` column offsets, then the ``k`` row offsets: ``2(k-1)`` additions rather than
    ``k² - 1``), in float32 (float64 for float64 products), over blocks of content rows x style
    rows within :data:`EXACT_BLOCK_BYTES`; style blocks are combined by :func:`_chunked_argmax`.
    """
    k = patch_size
    channels, height, width = content.shape[1:]
    style_width = style.shape[-1]
    out_rows, out_cols = height - k + 1, width - k + 1
    grid_rows, grid_cols = _patch_grid(style, k, stride)
    inverse_norms = _patch_norms(style, k, stride).clamp_min(eps).reciprocal()[0, 0]  # (grid_rows, grid_cols)
    content_pixels = content[0].permute(1, 2, 0).reshape(-1, channels).to(dtype)  # (H W, C)
    style_pixels = style[0].permute(1, 2, 0).reshape(-1, channels).to(dtype)  # (H' W', C)
    sum_dtype = torch.promote_types(dtype, torch.float32)
    content_band, style_band = _exact_blocks(out_rows, width, grid_rows, style_width, k, stride)
    best_index = torch.empty(out_rows, out_cols, dtype=torch.long, device=content.device)
    for row in range(0, out_rows, content_band):
        rows = min(content_band, out_rows - row)
        queries = content_pixels[row * width : (row + rows + k - 1) * width]

        def block_scores(start: int, stop: int, queries: Tensor = queries, rows: int = rows) -> Tensor:
            """Scores ``(rows out_cols, patches)`` of the patches ``start:stop`` (whole grid rows)."""
            grid_row = start // grid_cols
            patch_rows = min(style_band, grid_rows - grid_row)
            style_rows = (patch_rows - 1) * stride + k
            keys = style_pixels[grid_row * stride * style_width : (grid_row * stride + style_rows) * style_width]
            pixel_scores = (queries @ keys.T).to(sum_dtype).view(rows + k - 1, width, style_rows, style_width)
            column_sums = _shifted_sum(pixel_scores, 1, 3, out_cols, grid_cols, k, stride)
            scores = _shifted_sum(column_sums, 0, 2, rows, patch_rows, k, stride)
            return scores.mul_(inverse_norms[grid_row : grid_row + patch_rows]).view(rows * out_cols, -1)

        best_index[row : row + rows] = _chunked_argmax(block_scores, grid_rows * grid_cols,
                                                       style_band * grid_cols).view(rows, out_cols)
    return best_index


def _shifted_sum(scores: Tensor, content_dim: int, style_dim: int, content_size: int, style_size: int, k: int,
                 stride: int) -> Tensor:
    """``Σ_{d<k} scores[.., d : d + content_size, .., d : d + stride (style_size - 1) + 1 : stride, ..]``.

    The shift ``d`` moves the content axis ``content_dim`` and the style axis ``style_dim`` together
    (one diagonal of the pixel correlations); the style axis is taken every ``stride``.
    """
    def view(offset: int) -> Tensor:
        return (scores.narrow(content_dim, offset, content_size)
                .narrow(style_dim, offset, stride * (style_size - 1) + 1)[_every(style_dim, stride)])

    if k == 1:
        return view(0).clone(memory_format=torch.contiguous_format)
    first = view(0)
    total = torch.add(first, view(1), out=torch.empty(first.shape, dtype=first.dtype, device=first.device))
    for offset in range(2, k):
        total.add_(view(offset))
    return total


def _every(dim: int, stride: int) -> tuple[slice, ...]:
    """An index taking every ``stride``-th element along ``dim`` of a 4-d tensor."""
    return (slice(None),) * dim + (slice(None, None, stride),)


def _exact_blocks(out_rows: int, width: int, grid_rows: int, style_width: int, k: int, stride: int) -> tuple[int, int]:
    """Content output rows and style patch rows per block of :func:`_exact_nearest`.

    A block holds ``(rows + k - 1) width x style_rows style_width`` float32 correlations within
    :data:`EXACT_BLOCK_BYTES`. The whole style goes in one block when that leaves at least 8
    content rows (or all of them); otherwise the block is about square in rows, so that the
    ``k - 1`` rows of overlap with the next block stay a small share on both sides.
    """
    budget = max(1, EXACT_BLOCK_BYTES // (4 * width * style_width))  # (content rows) x (style rows)
    def style_rows(patch_rows: int) -> int:
        return (patch_rows - 1) * stride + k
    whole_style = budget // style_rows(grid_rows) - (k - 1)
    if whole_style >= min(out_rows, 8):
        return max(1, min(out_rows, whole_style)), grid_rows
    side = max(1, math.isqrt(budget) - (k - 1))
    content_band = min(out_rows, side)
    patch_rows = max(1, (budget // (content_band + k - 1) - k) // stride + 1)
    return content_band, min(grid_rows, patch_rows)


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


def approximate_nearest_patches(content: Tensor, style: Tensor, patch_size: int = 3, stride: int = 1, *,
                                rank: int = SEARCH_RANK, probes: int = SEARCH_PROBES, eps: float = 1e-8,
                                score_dtype: torch.dtype | None = None,
                                index_cache: dict[tuple[Any, ...], PatchIndex] | None = None) -> Tensor:
    """Eq. 1 of Chen & Schmidt 2016 with both sides projected on ``rank`` channels, through an inverted file.

    The style's side (projection, keys, inverted file) is a :class:`PatchIndex`. ``index_cache``,
    a dict the caller keeps for this one style map, holds it once built, so that the frames of a
    video or the images of a folder search the same index. Deterministic: no random state.
    """
    key = (tuple(style.shape), patch_size, stride, rank, eps, score_dtype)
    index = None if index_cache is None else index_cache.get(key)
    if index is None:
        index = PatchIndex(style, patch_size, stride, rank=rank, eps=eps, score_dtype=score_dtype)
        if index_cache is not None:
            index_cache[key] = index
    return index.nearest(content, probes)


class PatchIndex:
    """The style's side of :func:`approximate_nearest_patches`: what every content search reuses.

    **Projection.** The basis is the leading eigenvectors of the second moment of the pixels of
    the normalised style patches, so the correlation keeps the directions the style's patches
    actually use; what is dropped changes the scores by the style's residual energy, small for
    CNN features whose spectrum decays fast. That moment is a weighted sum over the style's
    pixels (each weighted by the inverse squared norms of the patches that cover it), and the
    projected patches are the patches of the projected map divided by their norms: nothing of
    size ``N x C k²`` is built. With ``rank >= C`` nothing is projected.

    **Search.** Below :data:`INVERTED_FILE_MIN` patches every projected patch is scored (one
    matrix product per chunk, in ``score_dtype``); from there on, an inverted file (:class:`_InvertedFile`).
    """

    def __init__(self, style: Tensor, patch_size: int = 3, stride: int = 1, *, rank: int = SEARCH_RANK,
                 eps: float = 1e-8, score_dtype: torch.dtype | None = None) -> None:
        k = self.patch_size = patch_size
        style = style.float()
        norm_grid = _patch_norms(style, k, stride).clamp_min(eps)
        basis = None
        if rank < style.shape[1]:
            # Every pixel of every normalised patch, as the correlation sees them: the centre pixels
            # alone (9x cheaper) gave 3x the cost gap (1.8% against 0.6% on chicago x mondrian at 512 px).
            coverage = F.conv_transpose2d(norm_grid.pow(-2), style.new_ones(1, 1, k, k), stride=stride)
            coverage = F.pad(coverage, (0, style.shape[-1] - coverage.shape[-1],
                                        0, style.shape[-2] - coverage.shape[-2]))
            pixels = style[0].flatten(1)  # (C, H W)
            _, eigenvectors = torch.linalg.eigh((pixels * coverage.flatten()) @ pixels.T)
            basis = eigenvectors[:, -rank:]  # (C, rank), the leading directions (eigh sorts ascending)
        self.basis = basis
        keys = _unfolded(style, basis, k, stride) / norm_grid.flatten()[:, None]  # (N, rank k²), channel-major
        self.count = len(keys)
        self.inverted_file = _InvertedFile(keys, score_dtype) if len(keys) >= INVERTED_FILE_MIN else None
        # The flat search's keys, converted once for every content item (none with the inverted file).
        self.flat_keys = None if self.inverted_file is not None else keys.to(score_dtype or keys.dtype)

    def nearest(self, content: Tensor, probes: int = SEARCH_PROBES) -> Tensor:
        """Index ``(B, H-k+1, W-k+1)`` of the best style patch for each content patch (``probes`` lists searched)."""
        k = self.patch_size
        indices = []
        for item in content.float():
            queries = _unfolded(item[None], self.basis, k, 1)  # (positions, rank k²)
            h, w = item.shape[-2] - k + 1, item.shape[-1] - k + 1
            if self.inverted_file is not None:
                best_index = self.inverted_file.search(queries, probes)
            else:
                assert self.flat_keys is not None
                flat_keys, flat_queries = self.flat_keys, queries.to(self.flat_keys.dtype)
                chunk = max(1, SCORE_BYTES // (4 * len(queries)))
                best_index = _chunked_argmax(lambda start, stop: flat_queries @ flat_keys[start:stop].T,  # noqa: B023
                                             self.count, chunk)
            indices.append(best_index.reshape(h, w))
        return torch.stack(indices)


def _unfolded(features: Tensor, basis: Tensor | None, patch_size: int, stride: int) -> Tensor:
    """The ``k x k`` patches ``(N, rank k²)`` of one ``(1, C, H, W)`` map after projecting its channels on ``basis``."""
    if basis is not None:
        features = torch.einsum("bchw,cr->brhw", features, basis)
    return F.unfold(features, patch_size, stride=stride)[0].T


class _InvertedFile:
    """The keys (unit-norm patches, or their projections) in ``round(sqrt(N))`` lists of an inverted file.

    Spherical k-means builds the lists, started from evenly spaced keys and run for
    :data:`KMEANS_ROUNDS` rounds on :data:`KMEANS_KEYS_PER_LIST` evenly spaced keys per list
    (deterministic). Built once per style; :meth:`search` serves every content item.
    """

    def __init__(self, keys: Tensor, score_dtype: torch.dtype | None = None) -> None:
        keys = keys.contiguous()
        count = len(keys)
        self.lists = max(1, round(math.sqrt(count)))

        def spaced(n: int) -> Tensor:
            return keys[torch.linspace(0, count - 1, min(n, count), device=keys.device).round().long()]

        centroids, sample = spaced(self.lists), spaced(self.lists * KMEANS_KEYS_PER_LIST)
        for _ in range(KMEANS_ROUNDS):
            assignment = (sample @ centroids.T).argmax(1)
            sums = torch.zeros_like(centroids).index_add_(0, assignment, sample)
            filled = torch.bincount(assignment, minlength=self.lists) > 0  # an emptied list keeps its centroid
            centroids = torch.where(filled[:, None], F.normalize(sums, dim=1), centroids)
        assignment = (keys @ centroids.T).argmax(1)
        self.centroids = centroids
        self.key_order = torch.argsort(assignment, stable=True)
        self.key_ends = torch.bincount(assignment, minlength=self.lists).cumsum(0).tolist()
        self.score_dtype = score_dtype or keys.dtype
        self.keys = keys.to(self.score_dtype)

    def search(self, queries: Tensor, probes: int) -> Tensor:
        """Index of the key of highest inner product with each query, among the keys of its ``probes`` best lists.

        Each query is compared with every centroid, then with the keys of its ``probes`` best
        lists only (Jégou et al. 2011, sec. 4). The queries of one list are gathered and scored
        in one matrix product (within :data:`SCORE_BYTES`, in ``score_dtype``), so the work is a
        few hundred dense products, not per-query gathers; each list's best score is kept in float32.
        """
        probes = min(probes, self.lists)
        queries = queries.contiguous()
        probed = (queries @ self.centroids.T).topk(probes, dim=1).indices.flatten()  # (queries * probes,)
        probe_order = torch.argsort(probed, stable=True)
        probe_ends = torch.bincount(probed, minlength=self.lists).cumsum(0).tolist()
        candidate_score = torch.full((len(probed),), -math.inf, device=queries.device)
        candidate_index = torch.zeros(len(probed), dtype=torch.long, device=queries.device)
        queries = queries.to(self.score_dtype)
        key_start = probe_start = 0
        for key_end, probe_end in zip(self.key_ends, probe_ends):
            members = self.key_order[key_start:key_end]
            if len(members):
                table = self.keys[members]
                rows = max(1, SCORE_BYTES // (4 * len(members)))
                for start in range(probe_start, probe_end, rows):
                    slots = probe_order[start : min(start + rows, probe_end)]
                    score, best = (queries[slots // probes] @ table.T).max(dim=1)
                    candidate_score[slots], candidate_index[slots] = score.float(), members[best]
            key_start, probe_start = key_end, probe_end
        winner = candidate_score.view(-1, probes).argmax(1, keepdim=True)
        return candidate_index.view(-1, probes).gather(1, winner)[:, 0]


def matched_patch_cost(content: Tensor, style: Tensor, index: Tensor, patch_size: int = 3, stride: int = 1,
                       eps: float = 1e-8) -> float:
    """Sum over positions of ``1 - NCC`` of each content patch with its chosen patch.

    ``index`` comes from :func:`nearest_patches` with the same ``patch_size`` and ``stride``; this
    is what eq. 1 minimises, to compare searches.
    """
    k = patch_size
    table = style_patches(style.float(), k, stride).flatten(1)
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


def swapped_features(style: Tensor, index: Tensor, size: tuple[int, int], patch_size: int = 3,
                     stride: int = 1) -> Tensor:
    """Eq. 3 of Chen & Schmidt 2016: at each position of a ``size`` map, the mean of the chosen patches covering it.

    ``index`` ``(B, H-k+1, W-k+1)`` points into :func:`style_patches` of ``style``; patch ``n``'s
    pixel ``(i, j)`` is the style's pixel at its top-left corner plus ``(i, j)``, so each of the
    ``k²`` offsets is one gather of ``C``-vectors from the channels-last style map, added into a
    float32 sum. Returns ``(B, C, H, W)`` in the style's dtype, channels-last in memory.
    """
    k = patch_size
    batch, rows, cols = index.shape
    channels, width = style.shape[1], style.shape[-1]
    grid_width = _patch_grid(style, k, stride)[1]
    corner = (index // grid_width) * (stride * width) + (index % grid_width) * stride  # flat top-left pixel
    table = style[0].permute(1, 2, 0).reshape(-1, channels)  # (H' W', C)
    summed = torch.zeros(batch, *size, channels, dtype=torch.float32, device=style.device)
    for i in range(k):
        for j in range(k):
            pixels = table.index_select(0, (corner + (i * width + j)).flatten()).view(batch, rows, cols, channels)
            summed[:, i : i + rows, j : j + cols] += pixels
    counts = F.fold(torch.ones(1, k * k, rows * cols, device=style.device), size, k)[0, 0]  # patches per position
    return (summed / counts[..., None]).to(style.dtype).permute(0, 3, 1, 2)


def patch_swap(content: Tensor, style: Tensor, patch_size: int = 3, stride: int = 1, *, search: str = "exact",
               rank: int | None = None, probes: int | None = None, score_dtype: torch.dtype | None = None,
               source: Tensor | None = None, index_cache: dict[tuple[Any, ...], PatchIndex] | None = None) -> Tensor:
    """Style swap: each content patch replaced by its best-matching style patch (Chen & Schmidt 2016).

    Args:
        content: ``(B, C, H, W)`` features.
        style: ``(1, C, H', W')`` features of the style.
        patch_size: side of the patches (3 in the paper).
        stride: stride of the style patch extraction (1 in the paper; 2 searches 4x fewer patches).
        search: ``exact`` (eq. 1 over every patch) or ``approximate`` (projection and inverted
            file, :func:`approximate_nearest_patches`).
        rank: channels kept by the approximate search (default :data:`SEARCH_RANK`).
        probes: lists of the inverted file searched per position (default :data:`SEARCH_PROBES`).
        score_dtype: precision of the search's products (:func:`nearest_patches`); the swapped
            patches keep the content's dtype.
        source: ``(1, C', H', W')`` features whose patches are pasted at the positions the search
            chose in ``style`` (default: ``style`` itself); e.g. the style before a transform that
            the search needed and the output would undo.
        index_cache: a dict kept for this one style map, where the approximate search keeps its
            :class:`PatchIndex` (a style reused over a folder or the frames of a video).

    Returns:
        ``(B, C, H, W)``: at each position the mean of the selected style patches covering it
        (eq. 3, :func:`swapped_features`).
    """
    check_bchw(style, "style")
    if content.shape[1] != style.shape[1]:
        raise OptionError(f"channel counts differ: content {content.shape[1]}, style {style.shape[1]}")
    if source is not None and (source.ndim != 4 or source.shape[0] != 1 or source.shape[-2:] != style.shape[-2:]):
        raise OptionError(f"source must be (1, C, {style.shape[-2]}, {style.shape[-1]}) like the style's map, "
                          f"got {tuple(source.shape)}")
    k = patch_size
    if min(content.shape[-2:]) < k:
        raise OptionError(f"content features of {spatial_size(content)} are smaller than a {k}px patch")
    index = nearest_patches(content, style, k, stride, search=search, rank=rank, probes=probes,
                            score_dtype=score_dtype, index_cache=index_cache)  # (B, H', W')
    pasted = style if source is None else source
    return swapped_features(pasted.to(content.dtype), index, spatial_size(content), k, stride)


def style_decorator(
    content: Tensor, style: Tensor, *, patch_size: int = 3, stride: int = 1, eps: float = 1e-5,
    content_mask: Tensor | None = None, dtype: torch.dtype = torch.float64, search: str = "exact",
    rank: int | None = None, probes: int | None = None, score_dtype: torch.dtype | None = None,
    whitened_style: Whitened | None = None, index_cache: dict[tuple[Any, ...], PatchIndex] | None = None,
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
        probes: lists of the inverted file searched per position (default :data:`SEARCH_PROBES`).
        score_dtype: precision of the search's products (:func:`nearest_patches`).
        whitened_style: ``whiten_for_colour(style, eps=eps, dtype=dtype)`` when the caller has it
            (a style reused over a folder or the frames of a video); computed here otherwise.
        index_cache: where the approximate search keeps the whitened style's index (:func:`patch_swap`).
    """
    whitened_content = whiten(content, eps=eps, mask=content_mask, dtype=dtype)
    if whitened_style is None:
        whitened_style = whiten_for_colour(style, eps=eps, dtype=dtype)
    elif whitened_style.whitened.shape != style.shape:
        raise OptionError(f"whitened_style is of a {tuple(whitened_style.whitened.shape)} map, the style "
                          f"{tuple(style.shape)}; pass whiten_for_colour(style)")
    whitened, style_mean, style_colouring, invertible = whitened_style
    # Eq. 4's colouring is affine and eq. 3 averages patches (weights summing to 1), so colouring the
    # swapped whitened patches is pasting the coloured ones; and colouring a whitened style pixel
    # gives the style pixel back when no eigenvalue was dropped. Then the style's own patches are
    # pasted: the same result without a C x C product over the map.
    swapped = patch_swap(whitened_content, whitened, patch_size, stride, search=search, rank=rank,
                         probes=probes, score_dtype=score_dtype, source=style if invertible else None,
                         index_cache=index_cache)
    return swapped if invertible else colour(swapped, style_mean, style_colouring)


def swap_batch(content: Tensor, style: Tensor, patch_size: int = 3, stride: int = 1, *, search: str = "exact",
               rank: int | None = None) -> Tensor:
    """:func:`patch_swap` of each content item with the style item at the same index."""
    return torch.cat([patch_swap(content[i : i + 1], style[i : i + 1], patch_size, stride, search=search, rank=rank)
                      for i in range(len(content))])
