"""Temporal consistency of a stylized video: Lai et al.'s warping error, short- and long-term.

Lai, Huang, Wang, Shechtman, Yumer, Yang 2018, "Learning Blind Video Temporal Consistency"
(ECCV), sec. 5.1, eq. 9: for output frames ``V`` and the *input* video's flow ``F`` and
non-occlusion mask ``M`` between frames t and t-k,
``E = mean_t sum_p M_t(p) ||V_t(p) - warp(V_{t-k}, F_{t->t-k})(p)||^2 / sum_p M_t(p)``.
Short-term is k = 1, long-term k = 10 (Lai et al. use the first frame; a fixed gap keeps clips of
any length comparable). Flow: OpenCV DIS on the input frames (Lai et al. use FlowNet2; the masks
exclude what DIS gets wrong); occlusions by Ruder et al.'s forward-backward test.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

import torch.nn.functional as F

from ..io.images import resize_longest
from ..io.video import read_frames
from ..ops.flow import consistency_mask, estimate_flow, warping_error

__all__ = ["WarpingErrors", "video_warping_errors"]


@dataclass(frozen=True)
class WarpingErrors:
    """Mean warping errors (RGB in [0, 1], squared differences summed over channels) and the frames used."""

    short: float
    long: float
    frames: int
    long_gap: int


def video_warping_errors(source: str | os.PathLike, output: str | os.PathLike, *, long_gap: int = 10,
                         start: float = 0.0, duration: float | None = None) -> WarpingErrors:
    """Warping errors of ``output`` (a processed video) against the motion of ``source``.

    The input frames (from ``start`` for ``duration`` seconds, as the output was made) are resized
    to the output's size; frames are paired in order, so the output must start at the same frame.

    Args:
        source: the input video.
        output: the processed video.
        long_gap: k of the long-term error.
        start: where in ``source`` the output begins (seconds).
        duration: the seconds of ``source`` the output covers (None: to its end).

    Returns:
        The short-term (t-1) and long-term (t-``long_gap``) errors.
    """
    inputs: deque = deque(maxlen=long_gap + 1)
    outputs: deque = deque(maxlen=long_gap + 1)
    short: list[float] = []
    long: list[float] = []
    count = 0
    for frame_in, frame_out in zip(read_frames(source, start=start, duration=duration), read_frames(output)):
        if frame_in.shape[-2:] != frame_out.shape[-2:]:
            frame_in = resize_longest(frame_in, max(frame_out.shape[-2:]))
            frame_in = F.interpolate(frame_in, size=frame_out.shape[-2:], mode="bilinear", align_corners=False)
        inputs.append(frame_in)
        outputs.append(frame_out)
        count += 1
        for gap, errors in ((1, short), (long_gap, long)):
            if len(inputs) > gap:
                before_in, before_out = inputs[-1 - gap], outputs[-1 - gap]
                backward = estimate_flow(frame_in, before_in)
                forward = estimate_flow(before_in, frame_in)
                errors.append(warping_error(frame_out, before_out, backward, consistency_mask(backward, forward)))
    mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
    return WarpingErrors(mean(short), mean(long), count, long_gap)
