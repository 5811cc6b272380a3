from __future__ import annotations

import pytest
import torch

from atelier.ops import adain, covariance, mean_std, whiten_color
from atelier.ops import wct as wct_ops
from atelier.ops.wct import colour, style_colouring, whiten_color_with, whiten_for_colour


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
    with pytest.raises(ValueError, match="channel counts differ"):
        whiten_color_with(_features(0, channels=4), style_colouring(_features(1, channels=5)))


def test_a_style_colouring_is_its_mean_and_covariance_square_root_and_serves_every_content():
    style = _features(8, size=12)
    colouring = style_colouring(style, eps=1e-10)
    mean_s, cov_s = covariance(style)
    # (float32 products summed in float64: 1e-6 relative, see centred_covariance)
    torch.testing.assert_close(colouring.mean, mean_s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(colouring.matrix @ colouring.matrix, cov_s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(colouring.matrix, colouring.matrix.transpose(1, 2))
    for seed in (9, 10):  # one colouring, several contents: each gets the style's statistics
        out = whiten_color_with(_features(seed), colouring, eps=1e-10)
        mean_o, cov_o = covariance(out)
        assert torch.allclose(mean_o, mean_s, atol=1e-4)
        assert torch.allclose(cov_o, cov_s, atol=1e-4 * cov_s.abs().max())


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


@pytest.mark.parametrize("masked", [False, True])
def test_centred_covariance_equals_the_float64_covariance(monkeypatch, masked):
    # Products over chunks of 64 positions (of 400), an offset far from zero: the float32 path
    # must still agree with the float64 one-pass sums.
    monkeypatch.setattr(wct_ops, "PRODUCT_CHUNK", 64)
    features = _features(6) + 100.0
    mask = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(7)) if masked else None
    mean, cov = wct_ops.centred_covariance(features, mask)
    mean_ref, cov_ref = covariance(features.double(), None if mask is None else mask.double())
    assert mean.dtype == cov.dtype == torch.float64
    torch.testing.assert_close(mean, mean_ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(cov, cov_ref, rtol=0, atol=1e-5 * float(cov_ref.abs().max()))


def test_mean_std_is_the_same_for_channels_last_and_contiguous_maps():
    features = _features(8) * 5 + 40
    mean, std = mean_std(features)
    reference = features.flatten(2).double()
    torch.testing.assert_close(mean.flatten().double(), reference.mean(-1).flatten(), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(std.flatten().double(), (reference.var(-1, unbiased=False) + 1e-5).sqrt().flatten(),
                               rtol=1e-5, atol=1e-5)
    mean_last, std_last = mean_std(features.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(mean_last, mean)
    torch.testing.assert_close(std_last, std)
    assert mean.shape == std.shape == (1, 6, 1, 1)


def test_wct_reads_channels_last_maps_and_gives_the_same_result_in_chunks(monkeypatch):
    content, style = _features(9), _features(10, size=14)
    expected = whiten_color(content, style)
    out = whiten_color(content.contiguous(memory_format=torch.channels_last), style)
    assert out.is_contiguous(memory_format=torch.channels_last)  # what the decoders take, without a copy
    torch.testing.assert_close(out, expected)
    monkeypatch.setattr(wct_ops, "CHUNK", 64)  # the affine map over 7 chunks of positions
    torch.testing.assert_close(whiten_color(content, style), expected)


def test_whiten_for_colour_says_whether_the_colouring_undoes_the_whitening():
    features = torch.randn(1, 6, 9, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    whitened, mean, colouring, invertible = whiten_for_colour(features)
    assert invertible
    torch.testing.assert_close(colour(whitened, mean, colouring), features)
    # A repeated channel leaves one eigenvalue at zero: that direction is dropped and cannot come back.
    degenerate = torch.cat([features, features[:, :1]], 1)
    whitened, mean, colouring, invertible = whiten_for_colour(degenerate)
    assert not invertible
    _, covariance_whitened = covariance(whitened)
    assert abs(float(torch.linalg.matrix_rank(covariance_whitened[0])) - 6) < 0.5
