"""Patch swap (Chen & Schmidt 2016) and the Avatar-Net style decorator."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from atelier.errors import OptionError
from atelier.ops import covariance, nearest_patches, patch_swap, style_decorator, style_patches
from atelier.ops.wct import colour

patch_swap_module = importlib.import_module("atelier.ops.patch_swap")
wct_module = importlib.import_module("atelier.ops.wct")


def _features(seed, channels=6, size=(9, 11)):
    return torch.randn(1, channels, *size, generator=torch.Generator().manual_seed(seed))


def test_one_pixel_patches_copy_style_vectors_exactly():
    content, style = _features(0), _features(1, size=(7, 5))
    out = patch_swap(content, style, patch_size=1)
    vectors = style.flatten(2)[0].T  # (N, C)
    distances = (out.flatten(2)[0].T[:, None] - vectors[None]).abs().amax(-1)
    assert float(distances.min(1).values.max()) < 1e-6  # every output vector is a style vector
    # ... the one of highest normalised correlation with the content vector there.
    normalised = vectors / vectors.norm(dim=1, keepdim=True)
    best = (content.flatten(2)[0].T @ normalised.T).argmax(1)
    assert torch.allclose(out.flatten(2)[0].T, vectors[best])


def test_swap_equals_one_hot_transposed_convolution():
    content, style = _features(2), _features(3, size=(8, 8))
    for k, stride in ((3, 1), (3, 2), (2, 1)):
        patches = style_patches(style, k, stride)
        index = nearest_patches(content, style, k, stride)
        one_hot = F.one_hot(index, len(patches)).permute(0, 3, 1, 2).float()
        summed = F.conv_transpose2d(one_hot, patches)
        counts = F.conv_transpose2d(torch.ones(1, 1, *index.shape[-2:]), torch.ones(1, 1, k, k))
        assert torch.allclose(patch_swap(content, style, k, stride), summed / counts, atol=1e-5), (k, stride)


def _convolution_search(content, style, k, stride, eps=1e-8):
    """Eq. 1 as the paper computes it: a convolution with every normalised style patch."""
    patches = style_patches(style, k, stride)
    norms = patches.flatten(1).norm(dim=1).clamp_min(eps)
    return F.conv2d(content, patches / norms[:, None, None, None]).argmax(1)


@pytest.mark.parametrize(("k", "stride", "content_size", "style_size"),
                         [(3, 1, (9, 11), (8, 8)), (3, 2, (9, 11), (10, 9)), (2, 1, (7, 5), (6, 6)),
                          (5, 1, (12, 13), (11, 10)), (1, 1, (5, 6), (4, 4)), (3, 3, (15, 14), (17, 16))])
def test_exact_search_is_the_convolution_in_any_blocks(monkeypatch, k, stride, content_size, style_size):
    # The pixel correlations summed along patch diagonals score exactly what the convolution does.
    generator = torch.Generator().manual_seed(k * 10 + stride)
    content = torch.randn(2, 6, *content_size, generator=generator, dtype=torch.float64)
    style = torch.randn(1, 6, *style_size, generator=generator, dtype=torch.float64)
    reference = _convolution_search(content, style, k, stride)
    assert torch.equal(nearest_patches(content, style, k, stride), reference)
    for budget in (4 * 40, 4 * 30 * style_size[1] * content_size[1]):  # 1 x 1 rows; about 5 x 5 rows
        monkeypatch.setattr(patch_swap_module, "EXACT_BLOCK_BYTES", budget)
        assert torch.equal(nearest_patches(content, style, k, stride), reference), budget


@pytest.mark.parametrize(("out_rows", "width", "grid_rows", "style_width", "k", "stride"),
                         [(62, 64, 56, 70, 3, 1), (126, 128, 115, 140, 3, 1), (254, 256, 254, 256, 3, 1),
                          (300, 310, 150, 301, 3, 2), (7, 9, 3, 8, 5, 1)])
def test_exact_blocks_fit_the_budget_and_cover_the_maps(out_rows, width, grid_rows, style_width, k, stride):
    content_band, style_band = patch_swap_module._exact_blocks(out_rows, width, grid_rows, style_width, k, stride)
    assert 1 <= content_band <= out_rows and 1 <= style_band <= grid_rows
    block = (content_band + k - 1) * width * ((style_band - 1) * stride + k) * style_width * 4
    assert block <= patch_swap_module.EXACT_BLOCK_BYTES or content_band == style_band == 1
    # The whole style with at least 8 content rows, or else about as many rows on both sides: the
    # k - 1 overlap rows of each block stay a small share on both.
    style_rows = (style_band - 1) * stride + k
    if style_band == grid_rows:
        assert content_band >= min(out_rows, 8)
    else:
        assert abs(content_band + k - 1 - style_rows) <= max(k, stride), (content_band, style_band)


def test_auto_search_is_exact_while_cheap(monkeypatch):
    content, style = _low_rank(30, 16, 16, (14, 15)), _low_rank(31, 16, 16, (20, 19))
    exact = nearest_patches(content, style, search="exact")
    approximate = nearest_patches(content, style, search="approximate", rank=4)
    assert not torch.equal(exact, approximate)  # the two differ here, so the choice can be seen
    pairs = 12 * 13 * 18 * 17  # content positions x style patches
    monkeypatch.setattr(patch_swap_module, "EXACT_MAX_PAIRS", pairs)
    assert torch.equal(nearest_patches(content, style, search="auto", rank=4), exact)
    monkeypatch.setattr(patch_swap_module, "EXACT_MAX_PAIRS", pairs - 1)
    assert torch.equal(nearest_patches(content, style, search="auto", rank=4), approximate)


def test_patch_swap_input_errors():
    with pytest.raises(OptionError, match="one feature map"):
        patch_swap(_features(0), torch.cat([_features(1)] * 2))
    with pytest.raises(OptionError, match="smaller than"):
        patch_swap(_features(0), _features(1, size=(2, 2)))
    with pytest.raises(OptionError, match="channel counts"):
        patch_swap(_features(0), _features(1, channels=4))


def _smooth(seed, channels, size):
    """Spatially correlated features, like a CNN's (upsampled noise)."""
    coarse = _features(seed, channels, (size[0] // 4, size[1] // 4))
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_decorator_output_has_the_style_statistics():
    content = _smooth(6, 8, (32, 32))
    style = _smooth(7, 8, (32, 32)) * torch.linspace(0.2, 3, 8)[None, :, None, None] + 2
    mean_s, cov_s = covariance(style)
    _, cov_c = covariance(content)
    # 1x1 patches: whitened style vectors, coloured back, are exactly style feature vectors.
    single = style_decorator(content, style, patch_size=1, eps=1e-8).flatten(2)[0].T
    vectors = style.flatten(2)[0].T
    assert float((single[:, None] - vectors[None]).abs().amax(-1).min(1).values.max()) < 1e-4
    # 3x3 patches (the paper's): averaging overlaps smooths a little, so the mean matches and the
    # covariance ends far closer to the style's than the content's was.
    mean_o, cov_o = covariance(style_decorator(content, style))
    # (Measured: mean within 0.09 std per channel, 0.36 of the covariance gap left.)
    std_s = cov_s.diagonal(dim1=-2, dim2=-1)[..., None].sqrt()
    assert bool(((mean_o - mean_s).abs() < 0.15 * std_s).all())
    gap = torch.linalg.matrix_norm(cov_c - cov_s)
    assert float(torch.linalg.matrix_norm(cov_o - cov_s)) < 0.5 * float(gap)


# The approximate search (channel projection, module doc of atelier.ops.patch_swap).


def _low_rank(seed, channels, latent, size, decay=1.0):
    """Smooth features spanning ``latent`` directions of ``channels``, the i-th scaled by i^-decay (CNN-like)."""
    generator = torch.Generator().manual_seed(seed)
    fields = _smooth(seed, latent, size) * torch.arange(1, latent + 1.0)[None, :, None, None] ** -decay
    mixing = torch.linalg.qr(torch.randn(channels, latent, generator=generator)).Q  # orthonormal columns
    return torch.einsum("blhw,cl->bchw", fields, mixing)


def test_approximate_finds_the_exact_patches_when_the_style_spans_the_rank():
    # Content cut from the style: each content patch has one perfect match (NCC 1) at its shift,
    # and with the features inside 4 directions a 4-channel projection loses nothing.
    style = _low_rank(10, 16, 4, (24, 24))
    content = style[..., 5:19, 7:20]
    exact = nearest_patches(content, style)
    approximate = nearest_patches(content, style, search="approximate", rank=4)
    rows, cols = torch.meshgrid(torch.arange(12) + 5, torch.arange(11) + 7, indexing="ij")
    assert torch.equal(exact[0], rows * 22 + cols)  # the shifted positions, in a 22 x 22 patch grid
    assert torch.equal(approximate, exact)
    assert torch.allclose(patch_swap(content, style, search="approximate", rank=4), content, atol=1e-5)


def test_approximate_cost_close_to_exact_on_random_features():
    content, style = _low_rank(11, 32, 32, (24, 28)), _low_rank(12, 32, 32, (26, 24))
    exact = patch_swap_module.matched_patch_cost(content, style, nearest_patches(content, style))
    costs = {rank: patch_swap_module.matched_patch_cost(
        content, style, nearest_patches(content, style, search="approximate", rank=rank)) for rank in (2, 8, 16)}
    # Never below the exact optimum; closer as the rank grows; within 5% at half the channels.
    assert exact <= costs[16] <= costs[8] <= costs[2]
    assert costs[16] < 1.05 * exact, (exact, costs)
    assert costs[2] > 1.05 * exact  # the test can fail: too few directions do lose matches


def test_approximate_search_is_deterministic_and_exact_at_full_rank():
    content, style = _low_rank(13, 24, 24, (16, 16)), _low_rank(14, 24, 24, (16, 16))
    torch.manual_seed(1)
    first = patch_swap(content, style, search="approximate", rank=6)
    torch.manual_seed(2)  # no random state is used
    assert torch.equal(patch_swap(content, style, search="approximate", rank=6), first)
    assert torch.equal(patch_swap(content, style, search="approximate", rank=24), patch_swap(content, style))
    for k, stride in ((3, 2), (5, 1)):  # other patch sizes and strides index the same patch list
        index = nearest_patches(content, style, k, stride, search="approximate", rank=6)
        assert index.shape == (1, 17 - k, 17 - k) and int(index.max()) < len(style_patches(style, k, stride))


def test_approximate_search_in_chunks_matches_one_pass(monkeypatch):
    content, style = _low_rank(15, 16, 16, (10, 12)), _low_rank(16, 16, 16, (10, 10))
    whole = nearest_patches(content, style, search="approximate", rank=5)
    monkeypatch.setattr(patch_swap_module, "SCORE_BYTES", 4 * 8 * 10 * 3)  # 3 patches per chunk
    assert torch.equal(nearest_patches(content, style, search="approximate", rank=5), whole)


def test_search_option_errors():
    with pytest.raises(OptionError, match="unknown patch search 'fast'"):
        patch_swap(_features(0), _features(1), search="fast")
    with pytest.raises(OptionError, match="rank must be >= 1"):
        patch_swap(_features(0), _features(1), search="approximate", rank=0)
    with pytest.raises(OptionError, match="probes must be >= 1"):
        patch_swap(_features(0), _features(1), search="approximate", probes=0)


@pytest.mark.parametrize("search", ["exact", "approximate"])
def test_bf16_scores_pick_patches_of_nearly_the_exact_cost(search):
    # bf16 products round the scores to ~3 significant digits: near-ties may flip, but the chosen
    # patches must cost within 1% of the float32 search's, and exact matches must stay found.
    content, style = _low_rank(17, 32, 32, (24, 28)), _low_rank(18, 32, 32, (26, 24))
    reference = nearest_patches(content, style, search=search, rank=16)
    fast = nearest_patches(content, style, search=search, rank=16, score_dtype=torch.bfloat16)
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    cost, cost_reference = (patch_swap_module.matched_patch_cost(content, style, index)
                            for index in (fast, reference))
    assert cost_reference <= cost * (1 + 1e-6) and cost < 1.01 * cost_reference, (cost, cost_reference)
    inside = style[..., 5:19, 7:20]  # content cut from the style: every patch has a perfect match
    swapped = patch_swap(inside, style, search=search, rank=32, score_dtype=torch.bfloat16)
    assert swapped.dtype == inside.dtype
    torch.testing.assert_close(swapped, inside, rtol=0, atol=1e-5)


# The inverted file (module doc of atelier.ops.patch_swap): forced on small maps by lowering
# INVERTED_FILE_MIN.


@pytest.fixture
def inverted_file(monkeypatch):
    monkeypatch.setattr(patch_swap_module, "INVERTED_FILE_MIN", 1)


def test_inverted_file_probing_every_list_is_the_flat_search(monkeypatch):
    content, style = _low_rank(19, 16, 16, (14, 15)), _low_rank(20, 16, 16, (20, 19))
    flat = nearest_patches(content, style, search="approximate", rank=8)
    lists = round((18 * 17) ** 0.5)
    monkeypatch.setattr(patch_swap_module, "INVERTED_FILE_MIN", 1)
    assert torch.equal(nearest_patches(content, style, search="approximate", rank=8, probes=lists), flat)
    assert not torch.equal(nearest_patches(content, style, search="approximate", rank=8, probes=1), flat)


@pytest.mark.usefixtures("inverted_file")
def test_inverted_file_finds_every_exact_match():
    # A content patch cut from the style is its own key up to scale: the list the key was put in
    # is the query's best centroid, so even one probe finds it.
    style = _low_rank(21, 16, 16, (30, 30))
    content = style[..., 4:20, 6:25]
    index = nearest_patches(content, style, search="approximate", rank=16, probes=1)
    rows, cols = torch.meshgrid(torch.arange(14) + 4, torch.arange(17) + 6, indexing="ij")
    assert torch.equal(index[0], rows * 28 + cols)
    torch.testing.assert_close(patch_swap(content, style, search="approximate", rank=16, probes=1), content)


@pytest.mark.usefixtures("inverted_file")
def test_inverted_file_cost_falls_with_more_probes_and_stays_near_exact():
    # Unprojected (rank = channels), so the scores are the NCC itself: each position's candidates
    # grow with the probes (the best lists of fewer probes are among those of more), its best NCC
    # cannot fall, and the total cost cannot rise.
    content, style = _low_rank(22, 16, 16, (20, 22)), _low_rank(23, 16, 16, (24, 24))
    exact = patch_swap_module.matched_patch_cost(content, style, nearest_patches(content, style))
    costs = [patch_swap_module.matched_patch_cost(
        content, style, nearest_patches(content, style, search="approximate", rank=16, probes=probes))
        for probes in (1, 4, 22)]
    assert costs[0] >= costs[1] >= costs[2] - 1e-3 and abs(costs[2] - exact) < 1e-3 * exact, (exact, costs)
    assert costs[0] > costs[2]  # one probe does miss matches: the test can fail
    assert costs[1] < 1.05 * exact


@pytest.mark.usefixtures("inverted_file")
def test_inverted_file_in_chunks_and_deterministic(monkeypatch):
    content, style = _low_rank(24, 16, 16, (12, 13)), _low_rank(25, 16, 16, (16, 16))
    whole = nearest_patches(content, style, search="approximate", rank=6, probes=3)
    torch.manual_seed(5)  # no random state is used
    monkeypatch.setattr(patch_swap_module, "SCORE_BYTES", 4 * 20)  # a few queries per product
    assert torch.equal(nearest_patches(content, style, search="approximate", rank=6, probes=3), whole)


def test_patch_swap_pastes_the_source_at_the_patches_found_in_the_style():
    content, style = _features(40), _features(41, size=(8, 9))
    source = _features(42, channels=3, size=(8, 9))
    index = nearest_patches(content, style)
    # Pasting is linear in the pasted map: the style's patches and another map's, at the same places.
    reference = patch_swap_module.swapped_features(source, index, (9, 11))
    torch.testing.assert_close(patch_swap(content, style, source=source), reference)
    torch.testing.assert_close(patch_swap(content, style, source=2 * style), 2 * patch_swap(content, style))
    with pytest.raises(OptionError, match="source must be"):
        patch_swap(content, style, source=source[..., :7])


@pytest.mark.parametrize("degenerate", [False, True])
def test_decorator_is_the_coloured_swap_of_whitened_features(degenerate):
    # Eq. 2-4 computed step by step. A full-rank style is pasted from its own pixels (no colouring
    # product); a style with a repeated channel drops an eigenvalue and takes the colouring.
    content = _smooth(43, 6, (16, 16)).double()
    style = _smooth(44, 6, (14, 15)).double()
    if degenerate:
        content, style = torch.cat([content, content[:, :1]], 1), torch.cat([style, style[:, :1]], 1)
    whitened_style, mean, colouring, invertible = wct_module.whiten_for_colour(style)
    assert invertible is not degenerate
    swapped = patch_swap(wct_module.whiten(content), whitened_style)
    reference = colour(swapped, mean, colouring)
    torch.testing.assert_close(style_decorator(content, style), reference, rtol=1e-5, atol=1e-5)
    # A caller reusing the style passes its whitening; the result is the same.
    given = style_decorator(content, style, whitened_style=wct_module.whiten_for_colour(style))
    torch.testing.assert_close(given, reference, rtol=1e-5, atol=1e-5)


def test_the_decorator_refuses_the_whitening_of_another_map():
    style = _features(45, size=(6, 6))
    with pytest.raises(OptionError, match="whitened_style"):
        style_decorator(_features(46, size=(5, 5)), style,
                        whitened_style=wct_module.whiten_for_colour(style[..., :5]))


@pytest.mark.parametrize("inverted", [False, True])
def test_an_index_cache_builds_the_style_index_once_and_finds_the_same_patches(monkeypatch, inverted):
    if inverted:
        monkeypatch.setattr(patch_swap_module, "INVERTED_FILE_MIN", 1)
    style = _low_rank(22, 16, 16, (18, 17))
    frames = [_low_rank(seed, 16, 16, (14, 15)) for seed in (23, 24, 25)]
    built = []
    original = patch_swap_module.PatchIndex.__init__
    monkeypatch.setattr(patch_swap_module.PatchIndex, "__init__",
                        lambda self, *a, **k: built.append(1) or original(self, *a, **k))
    cache: dict = {}
    cached = [nearest_patches(f, style, search="approximate", rank=8, index_cache=cache) for f in frames]
    assert len(built) == 1 and len(cache) == 1
    for frame, index in zip(frames, cached):
        assert torch.equal(index, nearest_patches(frame, style, search="approximate", rank=8))
    assert len(built) == 1 + len(frames)  # without a cache, one index per call
    # Other search settings (here the rank) get their own entry, not the first one's index.
    nearest_patches(frames[0], style, search="approximate", rank=4, index_cache=cache)
    assert len(cache) == 2
