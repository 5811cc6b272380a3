from __future__ import annotations

import pytest
import torch

from atelier.eval import gram_distance, ssim
from helpers import smooth_image, stripes_image


def test_ssim_is_one_for_identical_and_drops_with_noise():
    image = smooth_image(40, 40)
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-6)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    assert float(ssim(image, noisy)) < 0.5
    assert float(ssim(image, noisy)) == pytest.approx(float(ssim(noisy, image)), abs=1e-6)


def test_ssim_ignores_a_hue_change_of_equal_luminance():
    image = smooth_image(40, 40)
    swapped = image[:, [1, 0, 2]]  # R<->G changes luminance only a little for smooth images
    assert float(ssim(image, swapped)) > float(ssim(image, torch.rand_like(image)))


def test_ssim_rejects_mismatched_or_tiny_images():
    with pytest.raises(ValueError, match="one shape"):
        ssim(smooth_image(20, 20), smooth_image(20, 24))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(smooth_image(8, 8), smooth_image(8, 8))


def test_gram_distance_zero_for_self_and_orders_styles(tiny_encoder):
    style = stripes_image()
    assert gram_distance(tiny_encoder, style, style) == pytest.approx(0.0, abs=1e-6)
    near = (style * 0.9 + 0.05).clamp(0, 1)
    far = smooth_image()
    assert gram_distance(tiny_encoder, near, style) < gram_distance(tiny_encoder, far, style)


def test_stride_grid_finds_a_pattern_tied_to_the_stride():
    from atelier.eval.metrics import stride_grid
    from helpers import smooth_image

    photo = smooth_image(128, 128, seed=3)
    cell = torch.zeros(8, 8)
    cell[0, :] = cell[:, 0] = 1  # a line on every 8 px cell edge, as a blocky decoder draws
    gridded = (0.8 * photo + 0.2 * cell.repeat(16, 16)).clamp(0, 1)
    assert stride_grid(photo) < 0.15
    assert stride_grid(gridded) > 0.5
    assert stride_grid(gridded, period=5) < 0.3  # the pattern repeats every 8 px, not every 5
    with pytest.raises(ValueError, match="16 px"):
        stride_grid(photo[..., :10, :10])
