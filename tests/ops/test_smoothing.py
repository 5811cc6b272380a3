"""Guided-filter smoothing (He et al. 2013) with the content photo as the guide."""

from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.ops.smoothing import box_filter, guided_filter, photo_smooth
from helpers import smooth_image, stripes_image


@pytest.mark.parametrize("radius", [0, 1, 3, 50])
def test_box_filter_equals_window_sums(radius):
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    expected = torch.zeros_like(x)
    for i in range(7):
        for j in range(9):
            window = x[..., max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1]
            expected[..., i, j] = window.sum((-1, -2))
    assert torch.allclose(box_filter(x, radius), expected, atol=1e-12)


def test_self_guided_with_tiny_eps_is_near_identity():
    image = smooth_image(40, 48)
    out = photo_smooth(image, image, radius=4, eps=1e-8)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert (out - image).abs().max() < 1e-3


def test_local_affine_recolouring_of_the_guide_passes_through():
    content = smooth_image(40, 48, seed=2)
    matrix = torch.tensor([[0.6, 0.2, 0.1], [0.1, 0.5, 0.2], [0.2, 0.1, 0.4]])
    recoloured = torch.einsum("ij,bjhw->bihw", matrix, content) + 0.1
    assert (photo_smooth(recoloured, content, radius=5, eps=1e-6) - recoloured).abs().max() < 1e-3


def test_reduces_high_frequency_noise_on_a_smooth_image():
    image = smooth_image(48, 64, seed=3)
    noisy = (image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    before = (noisy - image).pow(2).mean()
    for radius, eps in ((4, 1e-4), (35, 1e-4)):
        after = (photo_smooth(noisy, image, radius=radius, eps=eps) - image).pow(2).mean()
        assert after < 0.05 * before


def test_removes_texture_that_does_not_follow_the_guide_and_keeps_its_edges():
    content = torch.zeros(1, 3, 32, 32)
    content[..., 16:] = 1.0  # a vertical edge
    strokes = stripes_image(32, 32, period=4)  # across the edge
    stylized = 0.3 * strokes + 0.2 + 0.4 * content
    out = photo_smooth(stylized, content, radius=6, eps=1e-4)
    for half in (slice(0, 16), slice(16, 32)):
        assert stylized[..., half].std(dim=(-2, -1)).max() > 0.1
        assert out[..., half].std(dim=(-2, -1)).max() < 0.02  # the strokes are gone
    # The edge stays a one-pixel step of the stylization's colour difference (0.4).
    step = out[..., 15] - out[..., 16]
    assert (step.abs() - 0.4).abs().max() < 0.1
    assert (out[..., 1:15] - out[..., :14]).abs().max() < 0.02
    assert out.min() >= 0 and out.max() <= 1


def test_batch_with_one_content_and_large_eps_gives_local_mean():
    content = smooth_image(16, 20)
    stylized = torch.rand(3, 3, 16, 20)
    out = photo_smooth(stylized, content, radius=100, eps=1e4)
    assert out.shape == (3, 3, 16, 20)
    assert torch.allclose(out, stylized.mean((-1, -2), keepdim=True).expand_as(out), atol=1e-3)


def test_guided_filter_any_source_channels():
    guide = smooth_image(12, 14)
    assert guided_filter(torch.rand(1, 5, 12, 14), guide, 2, 1e-3).shape == (1, 5, 12, 14)


def test_errors():
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(OptionError, match="content is 9x8"):
        photo_smooth(image, torch.rand(1, 3, 8, 9))
    with pytest.raises(OptionError, match=r"\(B, 3, H, W\)"):
        photo_smooth(torch.rand(1, 1, 8, 8), image)
    with pytest.raises(OptionError, match="eps"):
        photo_smooth(image, image, eps=0)
    with pytest.raises(OptionError, match="radius"):
        photo_smooth(image, image, radius=-1)
