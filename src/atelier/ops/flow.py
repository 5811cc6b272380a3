"""Optical flow between video frames and what it tells: warps, occlusions, motion boundaries, cuts.

Flow convention (OpenCV's and Ruder et al.'s): a flow ``(B, 2, H, W)`` on image ``a``'s pixel
grid, channel 0 horizontal and channel 1 vertical, in pixels, such that ``a(p) ~ b(p + flow(p))``.
:func:`warp` ``(b, flow)`` then resamples ``b`` onto ``a``'s grid.

Papers:
    Ruder, Dosovitskiy, Brox 2016, "Artistic Style Transfer for Videos" (GCPR), sec. 3.1:
    forward-backward consistency (occlusions) and motion boundaries.
    Kroeger, Timofte, Dai, Van Gool 2016, "Fast Optical Flow using Dense Inverse Search" (ECCV):
    the DIS flow of OpenCV used by :func:`estimate_flow`.
    Lai, Huang, Wang, Shechtman, Yumer, Yang 2018, "Learning Blind Video Temporal Consistency"
    (ECCV), sec. 5.1 eq. 9: the warping error.
    Horn, Schunck 1981, "Determining Optical Flow" (Artificial Intelligence 17): brightness
    constancy, the assumption :func:`photometric_mask` checks.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw

__all__ = ["consistency_mask", "estimate_flow", "feather_mask", "histogram_distance", "long_term_masks",
           "motion_boundaries", "occlusion_mask", "photometric_mask", "require_opencv", "warp", "warping_error"]

#: OpenCV DIS presets by name (Kroeger et al. 2016, sec. 4: ultrafast/fast/medium operating points).
FLOW_PRESETS = ("ultrafast", "fast", "medium")


def require_opencv() -> ModuleType:
    """OpenCV, or :class:`OptionError` saying how to install it (checked before a video starts)."""
    try:
        import cv2
    except ImportError:
        raise OptionError("optical flow needs OpenCV: pip install 'atelier[video]' "
                          "(or pip install opencv-python-headless)") from None
    return cv2


def _gray_uint8(image: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> ``(H, W)`` uint8 luminance (Rec. 601 weights, as OpenCV's)."""
    rgb = image[0].detach().float().cpu().clamp(0, 1)
    gray = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return np.ascontiguousarray((gray * 255 + 0.5).to(torch.uint8).numpy())


def estimate_flow(source: Tensor, target: Tensor, *, preset: str = "medium", max_side: int | None = None) -> Tensor:
    """Dense flow from ``source`` to ``target`` (``source(p) ~ target(p + flow(p))``) by OpenCV's DIS.

    Args:
        source: ``(1, 3, H, W)`` frame in [0, 1].
        target: ``(1, 3, H, W)`` frame in [0, 1], same size.
        preset: DIS operating point, ``ultrafast``, ``fast`` or ``medium`` (the most accurate).
        max_side: frames with a longer side are downscaled to it for the flow, which is then
            upsampled and rescaled (DIS's cost grows with the pixels; masks stay full size).

    Returns:
        ``(1, 2, H, W)`` float32 flow in pixels.
    """
    check_bchw(source, "source", 3)
    check_bchw(target, "target", 3)
    if source.shape != target.shape or source.shape[0] != 1:
        raise OptionError(f"flow needs two single frames of one size, got {tuple(source.shape)} and "
                          f"{tuple(target.shape)}")
    if preset not in FLOW_PRESETS:
        raise OptionError(f"flow preset must be one of {', '.join(FLOW_PRESETS)}, not {preset!r}")
    cv2 = require_opencv()
    height, width = source.shape[-2:]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        small = estimate_flow(F.interpolate(source, size=size, mode="bilinear", align_corners=False, antialias=True),
                              F.interpolate(target, size=size, mode="bilinear", align_corners=False, antialias=True),
                              preset=preset)
        flow = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        return flow * torch.tensor([width / size[1], height / size[0]]).view(1, 2, 1, 1)
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    flow = dis.calc(_gray_uint8(source), _gray_uint8(target), None)
    return torch.from_numpy(flow).permute(2, 0, 1)[None].contiguous()


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: ``out(p) = image(p + flow(p))``, bilinear, edges clamped.

    Args:
        image: ``(B, C, H, W)``.
        flow: ``(B, 2, H, W)`` in pixels on the output's grid.

    Returns:
        ``(B, C, H, W)``.
    """
    check_bchw(image, "image")
    check_bchw(flow, "flow", 2)
    if image.shape[-2:] != flow.shape[-2:]:
        raise OptionError(f"image {tuple(image.shape[-2:])} and flow {tuple(flow.shape[-2:])} differ in size")
    height, width = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    # grid_sample's normalised coordinates with align_corners=True: -1 and 1 are pixel centres 0 and N-1.
    grid = torch.stack((2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1), dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def occlusion_mask(backward: Tensor, forward: Tensor) -> Tensor:
    """1 where forward and backward flow disagree (occluded / disoccluded pixels), else 0.

    Ruder et al. 2016, sec. 3.1: with ``w^ = backward`` (frame t -> t-1, on frame t's grid) and
    ``w~(p) = forward(p + w^(p))`` (frame t-1 -> t, brought onto frame t's grid), a pixel is
    occluded where ``|w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5``.

    Args:
        backward: ``(B, 2, H, W)`` flow from the current frame to the previous one.
        forward: ``(B, 2, H, W)`` flow from the previous frame to the current one.

    Returns:
        ``(B, 1, H, W)`` float mask.
    """
    check_bchw(forward, "forward", 2)
    forward_here = warp(forward, backward)
    disagreement = (forward_here + backward).pow(2).sum(1, keepdim=True)
    scale = forward_here.pow(2).sum(1, keepdim=True) + backward.pow(2).sum(1, keepdim=True)
    return (disagreement > 0.01 * scale + 0.5).to(backward.dtype)


def motion_boundaries(flow: Tensor) -> Tensor:
    """1 on motion boundaries, else 0 (Ruder et al. 2016, sec. 3.1).

    A boundary is where ``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002`` (forward differences,
    replicated at the last row and column).

    Args:
        flow: ``(B, 2, H, W)``.

    Returns:
        ``(B, 1, H, W)`` float mask.
    """
    check_bchw(flow, "flow", 2)
    dx = F.pad(flow[..., :, 1:] - flow[..., :, :-1], (0, 1, 0, 0), mode="replicate")
    dy = F.pad(flow[..., 1:, :] - flow[..., :-1, :], (0, 0, 0, 1), mode="replicate")
    gradient = (dx.pow(2) + dy.pow(2)).sum(1, keepdim=True)
    return (gradient > 0.01 * flow.pow(2).sum(1, keepdim=True) + 0.002).to(flow.dtype)


def consistency_mask(backward: Tensor, forward: Tensor) -> Tensor:
    """Ruder et al.'s per-pixel weight ``c`` (sec. 3.1).

    1 where the backward flow can be trusted to carry the previous frame here, 0 at occlusions and
    motion boundaries.

    Args:
        backward: ``(B, 2, H, W)`` flow from the current frame to the previous one.
        forward: ``(B, 2, H, W)`` flow from the previous frame to the current one.

    Returns:
        ``(B, 1, H, W)`` float mask in {0, 1}.
    """
    untrusted = torch.maximum(occlusion_mask(backward, forward), motion_boundaries(backward))
    return 1 - untrusted


def photometric_mask(current: Tensor, previous: Tensor, backward: Tensor, *, threshold: float = 0.03,
                     radius: int = 2) -> Tensor:
    """Brightness constancy: 1 where the previous *input* frame warped by the flow looks like the current one.

    The forward-backward test of :func:`occlusion_mask` cannot see a flow that is wrong in both
    directions alike, which DIS gives on a fast pan over a low-texture region (its coarsest
    pyramid level cannot reach the motion, so both flows fall short together); carried along such
    a flow, the stylized texture tears into stripes. The input frames can tell: where
    ``warp(previous, backward)`` differs from ``current``, the flow does not carry this pixel.

    The residual is the difference box-averaged over a ``(2 radius + 1)^2`` window, then its
    absolute value averaged over RGB: the averaging comes first so that what is zero-mean or thin
    (compression noise, the one-pixel band of a sub-pixel misalignment along an edge) cancels,
    while a region carried from the wrong place differs coherently. The weight is 1 up to
    ``threshold / 2``, 0 from ``threshold`` on, linear between: a soft edge, so the blend shows
    no seam where carried and fresh pixels meet. With the default 0.03 (about 8/255) the pixels
    the consistency mask trusts on the test clip (``bunny.mp4`` at 160 px, H.264) lose 0.8% of
    their weight, and 66-75% of DIS's wrong but consistent matches on a 40 px/frame pan over faint
    blobs get weight 0 (measured for this choice; the absolute difference averaged instead lost
    2.1% on the clip for 73-80%).

    Args:
        current: ``(B, 3, H, W)`` input frame t in [0, 1].
        previous: ``(B, 3, H, W)`` input frame t-k in [0, 1].
        backward: ``(B, 2, H, W)`` flow from frame t to frame t-k.
        threshold: residual at and above which a pixel gets weight 0.
        radius: half side of the averaging window in px.

    Returns:
        ``(B, 1, H, W)`` weights in [0, 1].
    """
    check_bchw(current, "current")
    check_bchw(previous, "previous", current.shape[1])
    if not threshold > 0 or radius < 0:
        raise OptionError(f"photometric threshold must be > 0 and radius >= 0, got {threshold} and {radius}")
    difference = current - warp(previous, backward)
    if radius > 0:
        difference = F.avg_pool2d(difference, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    residual = difference.abs().mean(1, keepdim=True)
    return (2 - 2 * residual / threshold).clamp(0, 1).to(backward.dtype)


def feather_mask(mask: Tensor, radius: int) -> Tensor:
    """Soften a reliability mask's edges inward: erode by ``radius``, then box-average over the same window.

    Where a carried region meets a fresh one the two stylizations can differ a lot (a network's
    output over a flat sky jumps from frame to frame); a hard switch between them shows as a torn
    seam. Eroding first keeps every unreliable pixel at weight 0 (nothing unreliable leaks in);
    the averaging then ramps the weight up over ``2 radius + 1`` pixels inside the reliable side.

    Args:
        mask: ``(B, 1, H, W)`` weights in [0, 1].
        radius: half width of the ramp in px (0 = unchanged).

    Returns:
        ``(B, 1, H, W)`` weights in [0, 1], never above ``mask``.
    """
    check_bchw(mask, "mask", 1)
    if radius <= 0:
        return mask
    side = 2 * radius + 1
    eroded = -F.max_pool2d(-mask, side, stride=1, padding=radius)
    return torch.minimum(F.avg_pool2d(eroded, side, stride=1, padding=radius, count_include_pad=False), mask)


def long_term_masks(masks: list[Tensor]) -> list[Tensor]:
    """Long-term weights (Ruder et al. 2016, eq. 7).

    Each pixel is constrained by the most recent previous frame in which it is visible:
    ``c_long(j) = max(c(j) - sum_{k < j} c(k), 0)`` over the masks of frames t-j ordered from the
    most recent.

    Args:
        masks: ``(B, 1, H, W)`` consistency masks, most recent previous frame first.

    Returns:
        The long-term masks, same order; they sum to at most 1 per pixel.
    """
    out: list[Tensor] = []
    covered = torch.zeros_like(masks[0]) if masks else None
    for mask in masks:
        assert covered is not None
        out.append((mask - covered).clamp_min(0))
        covered = covered + mask
    return out


def histogram_distance(a: Tensor, b: Tensor, bins: int = 32) -> float:
    """Colour-histogram distance of two frames in [0, 1] (0: same colours; 1: disjoint).

    Half the L1 distance of their per-channel normalised histograms, averaged over channels.
    Consecutive frames of one shot stay near 0.0-0.1; a hard cut between shots typically gives 0.3
    or more.

    Args:
        a: ``(1, C, H, W)`` in [0, 1].
        b: ``(1, C, h, w)`` in [0, 1] (sizes may differ).
        bins: histogram bins per channel.

    Returns:
        The distance, a float in [0, 1].
    """
    check_bchw(a, "a")
    check_bchw(b, "b", a.shape[1])
    total = 0.0
    for channel in range(a.shape[1]):
        ha = torch.histc(a[0, channel].float().clamp(0, 1), bins=bins, min=0, max=1)
        hb = torch.histc(b[0, channel].float().clamp(0, 1), bins=bins, min=0, max=1)
        total += 0.5 * float((ha / ha.sum() - hb / hb.sum()).abs().sum())
    return total / a.shape[1]


def warping_error(current: Tensor, previous: Tensor, flow: Tensor, mask: Tensor) -> float:
    """Lai et al. 2018, eq. 9: ``sum_p M(p) |V_t(p) - warp(V_{t-k}, flow)(p)|^2 / sum_p M(p)``.

    The squared difference is summed over the channels (RGB in [0, 1]); ``flow`` is the input
    video's flow from frame t to frame t-k and ``mask`` its non-occlusion mask.

    Args:
        current: ``(1, 3, H, W)`` output frame t.
        previous: ``(1, 3, H, W)`` output frame t-k.
        flow: ``(1, 2, H, W)`` input flow t -> t-k.
        mask: ``(1, 1, H, W)`` 1 where the flow is reliable.

    Returns:
        The error (0 when nothing is reliable).
    """
    difference = (current - warp(previous, flow)).pow(2).sum(1, keepdim=True)
    weight = float(mask.sum())
    return float((difference * mask).sum()) / weight if weight > 0 else 0.0
