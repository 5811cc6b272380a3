from __future__ import annotations

import pytest
import torch

from atelier.ops import adain, covariance, mean_std, whiten_color


def _features(seed: int, channels: int = 6, size: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(channels, channels, generator=g)
    x = torch.randn(1, channels, size * size, generator=g)
    return (mix @ x).reshape(1, channels, size, size) + torch.randn(1, channels, 1, 1, generator=g) * 3


def test_wct_output_has_style_mean_and_covariance():
    content, style = _features(0), _features(1, size=14)
    out = whiten_color(content, style, eps=1e-8)
    mean_o, cov_o = covariance(out)
    mean_s, cov_s = covariance(style)
    assert torch.allclose(mean_o, mean_s, atol=1e-4)
    assert torch.allclose(cov_o, cov_s, atol=1e-4 * cov_s.abs().max())
    assert out.shape == content.shape and out.dtype == content.dtype


def test_wct_float32_fast_path_close_to_float64():
    content, style = _features(2), _features(3)
    exact = whiten_color(content, style, dtype=torch.float64)
    fast = whiten_color(content, style, dtype=torch.float32)
    assert (exact - fast).abs().max() < 1e-3 * exact.abs().max()


def test_wct_masked_statistics_come_from_the_region():
    content, style = _features(4), _features(5)
    mask = torch.zeros(1, 1, 20, 20)
    mask[..., :10] = 1
    out = whiten_color(content, style, content_mask=mask, eps=1e-8)
    mean_o, cov_o = covariance(out[..., :10])
    mean_s, cov_s = covariance(style)
    assert torch.allclose(mean_o, mean_s, atol=1e-3)
    assert torch.allclose(cov_o, cov_s, atol=1e-3 * cov_s.abs().max())


def test_wct_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="channel counts differ"):
        whiten_color(_features(0, channels=4), _features(1, channels=5))


def test_adain_masked_region_takes_style_statistics():
    content, style = _features(6), _features(7)
    mask = torch.zeros(1, 1, 20, 20)
    mask[..., 5:15, :] = 1
    out = adain(content, style, content_mask=mask)
    mean_o, std_o = mean_std(out[..., 5:15, :])
    mean_s, std_s = mean_std(style)
    assert torch.allclose(mean_o, mean_s, atol=1e-4) and torch.allclose(std_o, std_s, atol=1e-3)
    full = mean_std(content, mask=torch.ones(1, 1, 20, 20))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(full, mean_std(content)))
