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
        index = nearest_patches(content, patches)
        one_hot = F.one_hot(index, len(patches)).permute(0, 3, 1, 2).float()
        summed = F.conv_transpose2d(one_hot, patches)
        counts = F.conv_transpose2d(torch.ones(1, 1, *index.shape[-2:]), torch.ones(1, 1, k, k))
        assert torch.allclose(patch_swap(content, style, k, stride), summed / counts, atol=1e-5), (k, stride)


def test_search_in_chunks_matches_one_pass(monkeypatch):
    content, style = _features(4), _features(5, size=(10, 10))
    patches = style_patches(style)
    whole = nearest_patches(content, patches)
    monkeypatch.setattr(patch_swap_module, "SCORE_BYTES", 4 * 9 * 7 * 3)  # 3 patches per chunk
    assert torch.equal(nearest_patches(content, patches), whole)


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
