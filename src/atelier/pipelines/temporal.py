"""Temporal consistency for video: the one frame loop every method's video goes through.

For each input frame the loop measures the optical flow back to the previous frame(s), finds
where it can be trusted (forward-backward consistency and motion boundaries, Ruder et al. 2016,
sec. 3.1; and brightness constancy of the input frames, which catches a flow wrong in both
directions alike on fast, low-texture pans) and hands the method a :class:`TemporalGuide`: the
previous output(s) warped onto this frame, with their masks. What a method does with it:

* feed-forward, per-style and translation networks (no retraining): the fresh output is blended
  with the warped previous output where the flow is reliable (:meth:`TemporalGuide.blend`); a
  recursive filter along the motion, so detail that flickers frame to frame settles while
  everything the flow cannot carry (occlusions, motion boundaries) is the fresh output;
* image optimisation (gatys, photo): the warped previous output is the initialisation and the
  target of Ruder et al.'s temporal loss on the reliable pixels (eq. 5), over several previous
  frames with the long-term masks of eq. 7 when asked.

The first frame, a hard cut (a jump of the colour histogram) and a frame where almost no pixel
can be carried get no guide: they are stylized fresh, so a cut never smears the previous shot
into the next. Only ``max(long_term)`` previous frames are kept: memory is flat over any length.

Papers:
    Ruder, Dosovitskiy, Brox 2016, "Artistic Style Transfer for Videos" (GCPR).
    Lai et al. 2018, "Learning Blind Video Temporal Consistency" (ECCV): the warping error that
    measures the result (:func:`atelier.ops.flow.warping_error`).

Deviations:
    * DIS flow (OpenCV; Kroeger et al. 2016) instead of DeepFlow/EpicFlow: 10-100x faster on a CPU,
      less accurate at large motions, which the consistency masks then exclude.
    * The blend for feed-forward networks is not in Ruder et al. (their networks were
      optimisation-based); it is the post-hoc filter Lai et al. compare against, kept cheap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ..losses.temporal import TemporalLoss
from ..ops.flow import (
    FLOW_PRESETS,
    consistency_mask,
    estimate_flow,
    feather_mask,
    histogram_distance,
    long_term_masks,
    photometric_mask,
    warp,
)

__all__ = ["FrameProcess", "TemporalCoherence", "TemporalGuide", "TemporalOptions", "TemporalStats", "blend_fresh",
           "temporal_map", "temporal_map_batched"]


@dataclass(frozen=True)
class TemporalOptions:
    """How video frames are tied together (``--temporal``/``--no-temporal`` and friends)."""

    #: Weight of the warped previous output where the flow is reliable (0 = frame by frame). 0.9
    #: keeps a ~10-frame memory along the motion: on the test clip it brings the long-term (t-10)
    #: warping error of johnson and adain to 0.30-0.34 of frame by frame (0.8: 0.49-0.51) with the
    #: style distance within 3% (docs/BENCHMARKS.md, "Video").
    strength: float = 0.9
    #: Previous frames (t - j) whose warped outputs constrain the optimisation methods (Ruder et al.
    #: 2016, sec. 3.2 use J = {1, 2, 4} for long-term consistency); (1,) = short-term only.
    long_term: tuple[int, ...] = (1,)
    #: Weight of the temporal loss of the optimisation methods (gamma in Ruder et al. 2016, eq. 5,
    #: rescaled to this package's losses: images in [0, 1], mean over pixels).
    loss_weight: float = 1e3
    #: Colour-histogram distance above which two frames are a scene cut (:func:`histogram_distance`).
    cut_threshold: float = 0.3
    #: Input residual (mean absolute RGB difference in [0, 1], smoothed) at which a pixel the flow
    #: carries is no longer trusted (:func:`~atelier.ops.flow.photometric_mask`): catches the wrong
    #: flow DIS gives on fast pans over low-texture regions, which the forward-backward test passes
    #: because both directions are wrong alike. None = off (Ruder et al.'s masks only).
    photometric_threshold: float | None = 0.03
    #: Width of the ramp between carried and fresh pixels, as a fraction of the frame's longest side
    #: (:func:`~atelier.ops.flow.feather_mask`; 1/128: 2 px at 256 px, 7 px at 480p): a hard switch
    #: tears visible seams where the fresh and the carried stylization differ (a fast pan over a
    #: flat sky on the sheet of docs/BENCHMARKS.md, "Video"). 0 = hard masks (Ruder et al.'s).
    feather: float = 1 / 128
    #: A frame where less than this fraction of the pixels can be carried is stylized fresh.
    min_reliable: float = 0.2
    #: OpenCV DIS preset.
    flow_preset: str = "medium"
    #: Longest side the flow is computed at (larger frames are downscaled for it, the flow
    #: upsampled): 480p frames cost a third of the flow time, and the stylized texture is coarser
    #: than the flow's error anyway. None = full size.
    flow_max_side: int | None = 512
    #: Iterations of an optimisation method on frames after the first (they start from the warped
    #: previous output); 0 = a fifth of the method's own (Ruder et al.'s code runs 2000 on a fresh
    #: frame and 1000 after, but converged; ours are not). The method's iterations go to the first
    #: frame and after cuts: they must bring it close to convergence, or each later frame goes on
    #: converging from the last and the video drifts (gatys at 96 px on bunny, t-10 warping error
    #: over frame by frame: 20 iterations everywhere 1.9x; 100 then 50: 1.01x; 100 then 20: 0.32x,
    #: docs/BENCHMARKS.md "Video").
    iterations: int = 0

    def __post_init__(self) -> None:
        """Refuse out-of-range options with what to give instead."""
        if not 0 <= self.strength <= 1:
            raise OptionError(f"temporal strength must be in [0, 1] (0 = frame by frame), got {self.strength}")
        if not self.long_term or any(not isinstance(j, int) or j < 1 for j in self.long_term):
            raise OptionError(f"long-term frames must be whole numbers >= 1 (e.g. 1 2 4), got {self.long_term}")
        if self.long_term[0] != 1 or list(self.long_term) != sorted(set(self.long_term)):
            raise OptionError(f"long-term frames start at 1 and increase (e.g. 1 2 4), got {self.long_term}")
        if self.loss_weight < 0 or not 0 < self.cut_threshold <= 1 or not 0 <= self.min_reliable < 1:
            raise OptionError("temporal loss weight must be >= 0, cut threshold in (0, 1], min_reliable in [0, 1)")
        if self.flow_preset not in FLOW_PRESETS:
            raise OptionError(f"flow preset must be one of {', '.join(FLOW_PRESETS)}, not {self.flow_preset!r}")
        if self.flow_max_side is not None and self.flow_max_side < 32:
            raise OptionError(f"flow_max_side must be at least 32 px (or None), got {self.flow_max_side}")
        if self.iterations < 0:
            raise OptionError(f"temporal iterations must be >= 0, got {self.iterations}")
        if not 0 <= self.feather <= 0.25:
            raise OptionError(f"feather must be a fraction of the frame's side in [0, 0.25], got {self.feather}")
        if self.photometric_threshold is not None and not self.photometric_threshold > 0:
            raise OptionError(f"photometric threshold must be > 0 (or None = off), got {self.photometric_threshold}")


@dataclass
class TemporalGuide:
    """The previous outputs warped onto the current frame, with where each can be trusted.

    ``warped[k]`` is the output of frame ``t - offsets[k]`` warped onto frame t, ``masks[k]`` its
    Ruder et al. long-term mask (eq. 7; ``masks[0]`` is the plain consistency mask of t-1), all
    ``(1, C, H, W)`` / ``(1, 1, H, W)`` at the current frame's size. ``blend_mask`` (default:
    ``masks[0]``) is the stricter weight of :meth:`blend`: also brightness-checked and feathered.

    The optimisation methods (:meth:`initial`, :meth:`loss_terms`) keep Ruder et al.'s masks: their
    loss couples neighbouring pixels, so no seam forms where the mask ends, and every pixel the
    stricter mask frees drifts on with the optimisation (96 px on bunny, t-10 warping error over
    frame by frame, 20 guided steps: gatys 0.45 with the blend's mask, 0.32 with Ruder's; photo 1.00
    and 0.35; docs/BENCHMARKS.md, "Video").
    """

    warped: list[Tensor]
    masks: list[Tensor]
    offsets: list[int]
    options: TemporalOptions = field(default_factory=TemporalOptions)
    blend_mask: Tensor | None = None

    def _at(self, tensor: Tensor, like: Tensor) -> Tensor:
        if tensor.shape[-2:] == like.shape[-2:]:
            return tensor.to(like)
        return F.interpolate(tensor.to(like), size=like.shape[-2:], mode="bilinear", align_corners=False)

    def blend(self, fresh: Tensor) -> Tensor:
        """``fresh + s * c * (warped_{t-1} - fresh)``.

        The fresh output where the flow is unreliable (``c = 0``), mostly the warped previous
        output where it is reliable.
        """
        mask = self.masks[0] if self.blend_mask is None else self.blend_mask
        weight = self.options.strength * self._at(mask, fresh)
        return fresh + weight * (self._at(self.warped[0], fresh) - fresh)

    def initial(self, content: Tensor) -> Tensor:
        """Ruder et al.'s initialisation: the warped previous output.

        The content where it cannot be carried: disocclusions start from the frame itself, not
        from a smeared neighbour.
        """
        mask = self._at(self.masks[0], content)
        return mask * self._at(self.warped[0], content) + (1 - mask) * content

    def loss_terms(self, like: Tensor) -> list[TemporalLoss]:
        """Ruder et al.'s temporal loss (eq. 5) for each previous frame, long-term masks (eq. 7)."""
        weight = self.options.loss_weight
        return [TemporalLoss(self._at(w, like), self._at(m, like), weight)
                for w, m in zip(self.warped, self.masks)] if weight > 0 else []

    def map(self, transform: Callable[[Tensor], Tensor]) -> TemporalGuide:
        """The same guide with ``transform`` applied to each warped output (e.g. to luminance)."""
        return TemporalGuide([transform(w) for w in self.warped], self.masks, self.offsets, self.options,
                             self.blend_mask)


@dataclass
class TemporalStats:
    """What the loop saw: frames, fresh starts (first frame, cuts, unreliable flow), mean reliable fraction."""

    frames: int = 0
    cuts: int = 0
    unreliable: int = 0
    reliable_sum: float = 0.0

    @property
    def reliable(self) -> float:
        """Mean fraction of pixels carried from the previous frame (over guided frames)."""
        guided = self.frames - 1 - self.cuts - self.unreliable
        return self.reliable_sum / guided if guided > 0 else 0.0


class TemporalCoherence:
    """Keeps the last input frames and outputs and builds each frame's :class:`TemporalGuide`.

    >>> coherence = TemporalCoherence(TemporalOptions())  # doctest: +SKIP
    >>> guide = coherence.guide(frame)        # None: stylize fresh
    >>> coherence.push(frame, output)
    """

    def __init__(self, options: TemporalOptions, flow: Callable[..., Tensor] = estimate_flow):
        self.options = options
        self.flow = flow
        depth = max(options.long_term)
        self.inputs: deque[Tensor] = deque(maxlen=depth)
        self.outputs: deque[Tensor] = deque(maxlen=depth)
        self.stats = TemporalStats()

    def guide(self, frame: Tensor) -> TemporalGuide | None:
        """The guide for ``frame`` ``(1, 3, H, W)``, or None where it must be stylized fresh."""
        self.stats.frames += 1
        if not self.inputs:
            return None
        if histogram_distance(self.inputs[-1], frame) > self.options.cut_threshold:
            self.stats.cuts += 1
            self.reset()
            return None
        warped, masks, offsets = [], [], []
        blend_mask: Tensor | None = None
        for offset in self.options.long_term:
            if offset > len(self.inputs):
                break
            before, output = self.inputs[-offset], self.outputs[-offset]
            backward = self.flow(frame, before, preset=self.options.flow_preset, max_side=self.options.flow_max_side)
            forward = self.flow(before, frame, preset=self.options.flow_preset, max_side=self.options.flow_max_side)
            mask = consistency_mask(backward, forward)
            if blend_mask is None:  # the blend's mask, of t-1 only
                blend_mask = mask
                if self.options.photometric_threshold is not None:
                    blend_mask = blend_mask * photometric_mask(frame, before, backward,
                                                               threshold=self.options.photometric_threshold)
                blend_mask = feather_mask(blend_mask, round(self.options.feather * max(frame.shape[-2:])))
            masks.append(mask)
            warped.append(warp(output, backward))
            offsets.append(offset)
        assert blend_mask is not None  # long_term holds 1 (checked by TemporalOptions) and inputs is not empty
        reliable = float(blend_mask.mean())
        if reliable < self.options.min_reliable:
            self.stats.unreliable += 1
            return None
        self.stats.reliable_sum += reliable
        return TemporalGuide(warped, [masks[0], *long_term_masks(masks)[1:]], offsets, self.options, blend_mask)

    def push(self, frame: Tensor, output: Tensor) -> None:
        """Remember ``frame`` and its final ``output`` (resized to the frame when they differ)."""
        output = output.detach().float().cpu()
        if output.shape[-2:] != frame.shape[-2:]:
            output = F.interpolate(output, size=frame.shape[-2:], mode="bilinear", align_corners=False)
        self.inputs.append(frame.detach().float().cpu())
        self.outputs.append(output)

    def reset(self) -> None:
        """Forget the previous frames (at a scene cut)."""
        self.inputs.clear()
        self.outputs.clear()


#: Stylizes one frame given its guide (None: fresh) and returns the final output frame.
FrameProcess = Callable[[Tensor, "TemporalGuide | None"], Tensor]


def blend_fresh(stylize: Callable[[Tensor], Tensor]) -> FrameProcess:
    """A :data:`FrameProcess` for a network with no temporal term: stylize fresh, then blend."""

    def process(frame: Tensor, guide: TemporalGuide | None) -> Tensor:
        fresh = stylize(frame)
        return fresh if guide is None else guide.blend(fresh.detach().float().cpu())

    return process


def temporal_map(frames: Iterable[Tensor], process: FrameProcess, options: TemporalOptions | None,
                 coherence: TemporalCoherence | None = None) -> Iterator[Tensor]:
    """Apply ``process`` to every frame with its guide, yielding the outputs one at a time.

    With ``options`` None every guide is None: frame by frame.
    """
    if options is not None and coherence is None:
        coherence = TemporalCoherence(options)
    for frame in frames:
        guide = coherence.guide(frame) if coherence is not None else None
        output = process(frame, guide)
        if coherence is not None:
            coherence.push(frame, output)
        yield output



def temporal_map_batched(frames: Iterable[Tensor], stylize: Callable[[Tensor], Tensor], options: TemporalOptions | None,
                         batch: int, coherence: TemporalCoherence | None = None) -> Iterator[Tensor]:
    """:func:`temporal_map` for a network with no temporal term, ``batch`` frames per network call.

    The fresh stylization of a frame does not depend on the previous output, so ``stylize``
    takes up to ``batch`` frames of one size at once ``(B, 3, H, W)`` and returns their ``B``
    outputs; each is then blended with the warped previous output in order, as
    :func:`blend_fresh` does. A change of frame size ends a batch early. ``batch`` 1 is
    :func:`temporal_map` with :func:`blend_fresh`.
    """
    if batch < 1:
        raise OptionError(f"frames per batch must be >= 1, got {batch}")
    fresh: deque[Tensor] = deque()

    def stylized_ahead() -> Iterator[Tensor]:
        pending: list[Tensor] = []

        def flush() -> Iterator[Tensor]:
            outputs = stylize(torch.cat(pending))
            fresh.extend(outputs[i : i + 1] for i in range(len(pending)))
            yield from pending
            pending.clear()

        for frame in frames:
            if pending and frame.shape != pending[0].shape:
                yield from flush()
            pending.append(frame)
            if len(pending) == batch:
                yield from flush()
        if pending:
            yield from flush()

    def process(frame: Tensor, guide: TemporalGuide | None) -> Tensor:
        output = fresh.popleft()
        return output if guide is None else guide.blend(output.detach().float().cpu())

    return temporal_map(stylized_ahead(), process, options, coherence)
