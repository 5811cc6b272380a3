from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.ops import (
    adain,
    gram_matrix,
    luminance,
    match_color,
    match_histograms,
    mean_std,
    resize_mask,
    rgb_to_yiq,
    stats,
    total_variation,
    transfer_luminance,
    yiq_to_rgb,
)


def test_gram_matches_definition():
    x = torch.randn(2, 3, 4, 5)
    flat = x.flatten(2)
    expected = flat @ flat.transpose(1, 2) / (3 * 20)
    assert torch.allclose(gram_matrix(x), expected, atol=1e-6)


def test_gram_full_mask_equals_unmasked_and_half_mask_is_region_gram():
    x = torch.randn(1, 4, 6, 8)
    assert torch.allclose(gram_matrix(x, torch.ones(1, 1, 6, 8)), gram_matrix(x), atol=1e-6)
    mask = torch.zeros(1, 1, 6, 8)
    mask[..., :4] = 1
    assert torch.allclose(gram_matrix(x, mask), gram_matrix(x[..., :4]), atol=1e-6)


def test_gram_shape_check():
    with pytest.raises(OptionError, match=r"\(B, C, H, W\)"):
        gram_matrix(torch.randn(3, 4, 5))


def test_gram_gradcheck():
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    m = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: gram_matrix(t, m).double(), (x,))


def test_mean_std_and_adain():
    content, style = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 6, 7) * 3 + 2
    out = adain(content, style)
    m, s = mean_std(out)
    sm, ss = mean_std(style)
    assert torch.allclose(m, sm, atol=1e-4) and torch.allclose(s, ss, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mean_std_in_chunks_matches_float64(monkeypatch, dtype):
    # Several chunks (30 positions x 6 channels each), a mean 300x the spread (cancellation would show),
    # channels-last and contiguous maps: the statistics of the values as stored, to float32 precision.
    monkeypatch.setattr(stats, "_STATS_CHUNK_ELEMENTS", 180)
    generator = torch.Generator().manual_seed(0)
    features = (torch.randn(2, 6, 11, 13, generator=generator) + 300.0).to(dtype)
    stored = features.double()
    for layout in (features, features.contiguous(memory_format=torch.channels_last)):
        mean, std = mean_std(layout, eps=0.0)
        assert mean.dtype == dtype and mean.shape == (2, 6, 1, 1)
        mean32, std32 = mean_std(layout, eps=0.0, dtype=torch.float32)
        assert mean32.dtype == torch.float32
        torch.testing.assert_close(mean32.double(), stored.mean((2, 3), keepdim=True), rtol=1e-6, atol=0)
        torch.testing.assert_close(std32.double(), stored.std((2, 3), keepdim=True, correction=0),
                                   rtol=1e-4, atol=0)
        torch.testing.assert_close((mean, std), (mean32.to(dtype), std32.to(dtype)), rtol=0, atol=0)


def test_mean_std_keeps_its_gradient():
    features = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: torch.cat(mean_std(x)), (features,))
    with torch.no_grad():
        no_grad = mean_std(features)
    torch.testing.assert_close(torch.cat(no_grad), torch.cat(mean_std(features)).detach())


def test_total_variation_zero_for_constant_positive_for_noise():
    assert total_variation(torch.ones(1, 3, 8, 8)).item() == 0
    assert total_variation(torch.rand(1, 3, 8, 8)).item() > 0.05


def test_yiq_roundtrip_and_luminance():
    x = torch.rand(1, 3, 5, 5)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5)
    gray = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(luminance(gray), torch.full((1, 1, 2, 2), 0.4), atol=1e-6)
    assert torch.allclose(rgb_to_yiq(gray)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-6)


def test_transfer_luminance_keeps_content_chroma():
    stylized, content = torch.rand(1, 3, 6, 6) * 0.5 + 0.25, torch.rand(1, 3, 6, 6) * 0.5 + 0.25
    out = transfer_luminance(stylized, content)
    assert torch.allclose(luminance(out), luminance(stylized), atol=1e-5)
    assert torch.allclose(rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:], atol=1e-5)


def test_match_color_gives_reference_mean_and_covariance():
    generator = torch.Generator().manual_seed(1)
    source = torch.rand(1, 3, 32, 32, generator=generator) * 0.4 + 0.1
    reference = torch.rand(1, 3, 24, 24, generator=generator) * 0.3 + 0.5
    reference[:, 1] = reference[:, 0] * 0.5 + 0.2  # correlated channels
    out = match_color(source, reference)

    def stats(x):
        f = x.double().flatten(2)[0]
        return f.mean(1), torch.cov(f, correction=0)

    (mo, co), (mr, cr) = stats(out), stats(reference)
    assert torch.allclose(mo, mr, atol=1e-3) and torch.allclose(co, cr, atol=1e-3)


def test_match_histograms_exact_when_sizes_equal():
    source = torch.randn(1, 2, 100)
    reference = torch.rand(1, 2, 100) * 5
    out = match_histograms(source, reference)
    assert torch.equal(out.sort(-1).values, reference.sort(-1).values)
    # Ranks are kept: the remapping is monotone.
    assert torch.equal(out.argsort(-1), source.argsort(-1))


def test_match_histograms_interpolates_other_sizes():
    out = match_histograms(torch.arange(5.0).view(1, 1, 5), torch.tensor([[[0.0, 10.0]]]))
    assert torch.allclose(out, torch.tensor([[[0.0, 2.5, 5.0, 7.5, 10.0]]]))


def test_resize_mask_area_average():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    small = resize_mask(mask, (2, 2))
    assert torch.equal(small, torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]]))
    assert resize_mask(mask, (8, 8)).shape == (1, 1, 8, 8)
