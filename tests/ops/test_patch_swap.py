"""Patch swap (Chen & Schmidt 2016) and the Avatar-Net style decorator."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from atelier.errors import OptionError
from atelier.ops import covariance, nearest_patches, patch_swap, style_decorator, style_patches

patch_swap_module = importlib.import_module("atelier.ops.patch_swap")


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


def test_search_in_chunks_matches_one_pass(monkeypatch):
    content, style = _features(4), _features(5, size=(10, 10))
    whole = nearest_patches(content, style)
    monkeypatch.setattr(patch_swap_module, "SCORE_BYTES", 4 * 9 * 7 * 3)  # 3 patches per chunk
    assert torch.equal(nearest_patches(content, style), whole)


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
