"""The coarse-to-fine driver: one optimisation per pyramid level, each starting from the last.

Gatys et al. (2017, "Controlling Perceptual Factors in Neural Style Transfer", sec. 5) optimise
at a low resolution first and upsample the result as the next level's start: the coarse levels
place the large structures cheaply, the fine ones add detail. A method supplies the criterion of
each level (its targets depend on the level's size); this module runs the levels with one
progress bar and stops at the first interrupted level with its best image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from ..io.images import resize_to
from ..progress import Progress
from .loop import Criterion, OptimizationResult, optimize_image

__all__ = ["PyramidResult", "coarse_to_fine"]


@dataclass
class PyramidResult:
    """The image of the last level run (at that level's size), its level's result and the whole history."""

    image: Tensor
    last: OptimizationResult
    history: list[float] = field(default_factory=list)
    interrupted: bool = False


class _LevelProgress:
    """Shows one level's iterations as part of the whole run."""

    def __init__(self, bar: Progress, offset: int) -> None:
        self.bar, self.offset = bar, offset

    def update(self, count: int, **values: float) -> None:
        """Show the run's count: the levels before this one plus ``count``."""
        self.bar.update(self.offset + count, **values)


def coarse_to_fine(
    init: Tensor,
    sizes: Sequence[tuple[int, int]],
    criterion_at: Callable[[int, tuple[int, int]], Criterion],
    *,
    iterations: int | Sequence[int],
    optimizer: str = "lbfgs",
    lr: float | None = None,
    bar: Progress | None = None,
    label: str = "",
    on_iteration_at: Callable[[int], Callable[[int, Tensor], None] | None] | None = None,
    interpolation: str = "bilinear",
    detail: Tensor | None = None,
) -> PyramidResult:
    """Optimise ``init`` level by level, smallest size first.

    Args:
        init: the start image ``(1, 3, H, W)``; resized to each level's size.
        sizes: ``(height, width)`` of each level, coarse to fine (see
            :func:`~atelier.optim.schedule.pyramid_sizes`).
        criterion_at: the criterion of level ``i`` at ``size``, built when the level starts.
        iterations: optimiser steps per level, or one count per level (coarse to fine).
        optimizer: ``"lbfgs"`` or ``"adam"`` (see :func:`~atelier.optim.loop.optimize_image`).
        lr: the optimiser's learning rate (None: its default).
        bar: one progress bar over all levels (the sum of the levels' iterations), or None.
        label: the bar's label, followed by the level's size.
        on_iteration_at: given a level's first iteration number in the run, the callback for
            that level's iterations (e.g. saving intermediate images), or None.
        interpolation: how a level's result is upsampled to start the next: ``"bilinear"`` or
            ``"bicubic"`` (sharper, so the fine level starts with less blur to undo).
        detail: an image ``(1, 3, H, W)`` whose detail band is added to each later level's start
            (usually the content): upsampling a level's result leaves the next level a blurred
            start, and a deep content layer (conv4_2) does not ask for the edges back, so the style
            loss fills the band with texture. Adding ``detail`` at this level's size minus
            ``detail`` at the previous level's size, upsampled the same way, restores exactly the
            band the coarse level could not hold (a Laplacian pyramid level of the content), and
            keeps the coarse level's colours and large shapes. The start is clamped to [0, 1].

    Returns:
        The last level's best image and result; ``interrupted`` when Ctrl-C stopped a level
        (the levels after it do not run).
    """
    if not sizes:
        raise ValueError("coarse_to_fine needs at least one level")
    counts = [iterations] * len(sizes) if isinstance(iterations, int) else list(iterations)
    if len(counts) != len(sizes):
        raise ValueError(f"coarse_to_fine got {len(counts)} iteration counts for {len(sizes)} levels")
    image, history, last = init, [], None
    offset = 0
    for level, size in enumerate(sizes):
        criterion = criterion_at(level, size)
        # The first level's start (the content or noise) is resized plainly; later starts are
        # results, upsampled with the chosen interpolation.
        image = resize_to(image, size, mode=interpolation if level else "bilinear")
        if level and detail is not None:
            band = resize_to(detail, size) - resize_to(resize_to(detail, sizes[level - 1]), size, mode=interpolation)
            image = (image + band.to(image)).clamp(0, 1)
        progress = None
        if bar is not None:
            bar.label = f"{label}{size[1]}x{size[0]} "
            bar.rebase(offset)
            progress = _LevelProgress(bar, offset)
        last = optimize_image(criterion, image, iterations=counts[level], optimizer=optimizer, lr=lr,
                              progress=progress, on_iteration=on_iteration_at(offset) if on_iteration_at else None)
        offset += counts[level]
        history += last.history
        image = last.image
        if last.interrupted:
            if bar is not None:
                bar.close(f"interrupted at iteration {offset - counts[level] + last.iterations}; "
                          "keeping the best image")
            return PyramidResult(image, last, history, interrupted=True)
    assert last is not None
    return PyramidResult(image, last, history)
