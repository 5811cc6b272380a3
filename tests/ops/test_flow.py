"""Optical flow, warping, Ruder et al.'s occlusion masks and the scene-cut distance on synthetic frames."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.errors import OptionError
from atelier.ops.flow import (
    consistency_mask,
    estimate_flow,
    feather_mask,
    histogram_distance,
    long_term_masks,
    motion_boundaries,
    occlusion_mask,
    photometric_mask,
    warp,
    warping_error,
)


def textured(height: int = 96, width: int = 128, seed: int = 0) -> torch.Tensor:
    """Mid-frequency random texture (blobs a few pixels wide), what a flow method can lock onto."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def test_warp_with_an_integer_flow_is_a_shift_and_zero_flow_is_identity():
    image = torch.rand(2, 3, 20, 30)
    assert torch.allclose(warp(image, torch.zeros(2, 2, 20, 30)), image, atol=1e-6)
    flow = torch.zeros(2, 2, 20, 30)
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # out(y, x) = image(y - 2, x + 3)
    out = warp(image, flow)
    assert torch.allclose(out[..., 2:, :-3], image[..., :-2, 3:], atol=1e-5)
    with pytest.raises(OptionError, match="flow must have shape"):
        warp(image, torch.zeros(2, 3, 20, 30))


def test_a_known_shift_is_recovered_within_a_pixel():
    pytest.importorskip("cv2")
    big = textured(140, 180)
    dx, dy = 5, -3
    # b is a moved by (dx, dy): b(y, x) = a(y - dy, x - dx); so a(p) = b(p + (dx, dy)).
    a = big[..., 20:116, 20:148]
    b = big[..., 20 - dy : 116 - dy, 20 - dx : 148 - dx]
    flow = estimate_flow(a, b)
    assert flow.shape == (1, 2, 96, 128)
    inner = flow[..., 12:-12, 12:-12]
    assert abs(float(inner[:, 0].median()) - dx) < 1 and abs(float(inner[:, 1].median()) - dy) < 1
    assert float((inner[:, 0] - dx).abs().mean()) < 1 and float((inner[:, 1] - dy).abs().mean()) < 1
    # Warping b by that flow gives back a (away from the edges it cannot know).
    assert float((warp(b, flow) - a)[..., 12:-12, 12:-12].abs().mean()) < 0.02
    # Computed at half size and upsampled, the flow is still in full-size pixels.
    half = estimate_flow(a, b, max_side=64)[..., 12:-12, 12:-12]
    assert half.shape[-2:] == inner.shape[-2:]
    assert abs(float(half[:, 0].median()) - dx) < 1 and abs(float(half[:, 1].median()) - dy) < 1


def _moving_square(shift: int = 8, size: int = 64, side: int = 16, left: int = 20, top: int = 24):
    """Analytic flows of a square moving ``shift`` px right over a static background."""
    backward = torch.zeros(1, 2, size, size)  # frame t -> t-1, on t's grid
    backward[:, 0, top : top + side, left + shift : left + shift + side] = -shift
    forward = torch.zeros(1, 2, size, size)  # frame t-1 -> t, on t-1's grid
    forward[:, 0, top : top + side, left : left + side] = shift
    return backward, forward


def test_occlusion_mask_finds_exactly_the_disoccluded_strip():
    backward, forward = _moving_square()
    occluded = occlusion_mask(backward, forward)
    expected = torch.zeros(1, 1, 64, 64)
    expected[..., 24:40, 20:28] = 1  # uncovered behind the square: background now, square before
    assert torch.equal(occluded, expected)
    # Motion boundaries are at the square's edges, not in the static background nor inside it.
    boundaries = motion_boundaries(backward)
    assert boundaries[..., 24:40, 27:29].sum() > 0 and boundaries[..., 24:40, 43:44].sum() > 0
    assert boundaries[..., :20, :].sum() == 0 and boundaries[..., 28:36, 31:41].sum() == 0
    mask = consistency_mask(backward, forward)
    assert mask[..., 24:40, 20:28].sum() == 0 and mask[..., :20, :].min() == 1 and mask[..., 28:36, 31:41].min() == 1


def test_occlusion_mask_on_frames_with_dis_flow():
    pytest.importorskip("cv2")
    background = textured(128, 160, seed=1)
    square = textured(48, 48, seed=2)
    previous, current = background.clone(), background.clone()
    previous[..., 32:80, 30:78] = square
    current[..., 32:80, 38:86] = square  # moved 8 px right: x 30-37 is uncovered at t
    backward, forward = estimate_flow(current, previous), estimate_flow(previous, current)
    assert abs(float(backward[0, 0, 36:76, 42:82].median()) + 8) < 1
    mask = consistency_mask(backward, forward)
    assert float(mask[..., 36:76, 31:37].mean()) < 0.2  # the disoccluded strip is not trusted
    assert float(mask[..., 2:28, :].mean()) > 0.95  # the still background is


def test_long_term_masks_take_each_pixel_from_the_most_recent_visible_frame():
    c1 = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    c2 = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    c4 = torch.tensor([[[[1.0, 1.0, 1.0]]]])
    out = long_term_masks([c1, c2, c4])
    assert [m.flatten().tolist() for m in out] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_histogram_distance_separates_a_cut_from_motion():
    big = textured(140, 180, seed=3)
    a, moved = big[..., :96, :128], big[..., 6:102, 9:137]
    other = textured(96, 128, seed=4) * 0.4 + 0.6 * torch.tensor([0.9, 0.3, 0.1]).view(1, 3, 1, 1)
    assert histogram_distance(a, a) == 0
    assert histogram_distance(a, moved) < 0.15
    assert histogram_distance(a, other) > 0.5


def test_warping_error_is_zero_for_a_consistent_video_and_ignores_masked_pixels():
    image = torch.rand(1, 3, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    mask = torch.ones(1, 1, 16, 16)
    assert warping_error(image, image, flow, mask) == pytest.approx(0, abs=1e-10)
    changed = image.clone()
    changed[..., :4, :] += 0.5
    assert warping_error(changed, image, flow, mask) > 0
    mask[..., :4, :] = 0
    assert warping_error(changed, image, flow, mask) == pytest.approx(0, abs=1e-12)


def test_photometric_mask_trusts_a_right_flow_and_refuses_a_wrong_one_both_directions_agree_on():
    big = textured(48, 120, seed=5)
    previous, current = big[..., :, 10:74], big[..., :, 40:104]  # a 30 px pan: current(p) = previous(p + 30)
    right = torch.zeros(1, 2, 48, 64)
    right[:, 0] = 30.0
    inside = (..., slice(None), slice(0, 30))  # where previous holds what current shows
    assert float(photometric_mask(current, previous, right)[inside].min()) == 1
    # A zero flow both ways passes the forward-backward test, and is wrong: brightness constancy sees it.
    zero = torch.zeros(1, 2, 48, 64)
    assert float(consistency_mask(zero, zero).min()) == 1
    assert float(photometric_mask(current, previous, zero).mean()) < 0.1
    # A static frame is trusted everywhere; the weight falls from 1 to 0 between half the threshold and it.
    assert float(photometric_mask(current, current, zero).min()) == 1
    grey = torch.full((1, 3, 8, 8), 0.5)
    weights = [float(photometric_mask(grey + d, grey, torch.zeros(1, 2, 8, 8), threshold=0.04).mean())
               for d in (0.01, 0.03, 0.05)]
    assert weights == pytest.approx([1.0, 0.5, 0.0], abs=1e-5)
    with pytest.raises(OptionError, match="threshold"):
        photometric_mask(current, previous, zero, threshold=0)


def test_feather_mask_ramps_inside_the_reliable_side_and_never_lets_unreliable_pixels_in():
    mask = torch.ones(1, 1, 12, 20)
    mask[..., :, :10] = 0
    soft = feather_mask(mask, 2)
    assert torch.equal(soft[..., :10], mask[..., :10])  # still 0 where it was 0
    row = soft[0, 0, 6, 10:].tolist()
    assert row[0] < row[1] < row[2] < row[3] < row[4] and row[-1] == 1  # a ramp, then fully carried
    assert torch.equal(feather_mask(torch.ones(1, 1, 8, 8), 3), torch.ones(1, 1, 8, 8))
    assert torch.equal(feather_mask(mask, 0), mask)
