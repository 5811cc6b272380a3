"""The one image-optimisation loop shared by every optimisation-based method.

A method supplies a criterion (image -> (loss, parts)) and an initial image; the loop
runs L-BFGS or Adam, keeps the best image seen, reports progress and stops cleanly on
Ctrl-C (the best image so far is returned with ``interrupted=True``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from ..errors import OptionError

__all__ = ["Criterion", "OptimizationResult", "ProgressSink", "lbfgs_history_bytes", "optimize_image"]

#: L-BFGS objective scale: the largest per-pixel gradient at the start is set to this.
#: torch's L-BFGS skips a curvature pair when y's <= 1e-10 (e.g. negative curvature) and
#: then steps by -lr * g; with Gram losses on 0-255 caffe features g reaches 1e7 per pixel,
#: and that step sends the image to infinity. Scaling the objective (which L-BFGS is otherwise
#: invariant to) makes such a fallback step move pixels by at most ~1%.
LBFGS_GRADIENT_SCALE = 1e-2
#: Pairs of image-sized vectors L-BFGS keeps (its memory is about twice this many images).
LBFGS_HISTORY = 100
Criterion = Callable[[Tensor], "tuple[Tensor, dict[str, float]]"]


def lbfgs_history_bytes(pixels: int, steps: int = LBFGS_HISTORY) -> int:
    """Bytes of L-BFGS's history after ``steps`` steps on a float32 RGB image of ``pixels`` pixels.

    One pair of image-sized vectors per step, at most :data:`LBFGS_HISTORY` pairs.
    """
    return min(steps, LBFGS_HISTORY) * 2 * 3 * 4 * pixels


class ProgressSink(Protocol):
    """What the loop reports to: a :class:`~atelier.progress.Progress` bar, or a view of one."""

    def update(self, count: int, **values: float) -> None:
        """Show ``count`` iterations done and the latest values."""


@dataclass
class OptimizationResult:
    """Best image found (clamped to [0, 1]), its loss and the loss history."""

    image: Tensor
    loss: float
    parts: dict[str, float]
    iterations: int
    history: list[float] = field(default_factory=list)
    interrupted: bool = False


def optimize_image(
    criterion: Criterion,
    init: Tensor,
    *,
    iterations: int,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    progress: ProgressSink | None = None,
    on_iteration: Callable[[int, Tensor], None] | None = None,
) -> OptimizationResult:
    """Minimise ``criterion(image)`` over the pixels of ``image``, starting at ``init``.

    Args:
        criterion: returns ``(loss, {term: value})`` for a ``(1, 3, H, W)`` image.
        init: the starting image, ``(1, 3, H, W)``; not modified.
        iterations: number of optimiser steps (one criterion evaluation each).
        optimizer: ``"lbfgs"`` (Gatys et al. 2016, sec. 3; history 100, unit step, no line
            search, as in Johnson's neural-style) or ``"adam"``.
        lr: step size; default 1.0 for L-BFGS, 0.02 for Adam (pixels in [0, 1]).
        progress: receives ``update(iteration, loss=..., **parts)``.
        on_iteration: called as ``on_iteration(iteration, image)`` after each step (e.g. to
            save intermediate images).
    """
    if iterations < 0:
        raise OptionError(f"iterations must be >= 0, got {iterations}")
    image = init.detach().clone().float().requires_grad_(True)
    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [image], lr=lr or 1.0, max_iter=1, history_size=LBFGS_HISTORY, tolerance_grad=0.0, tolerance_change=0.0
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam([image], lr=lr or 0.02)
    else:
        raise OptionError(f"optimizer must be 'lbfgs' or 'adam', not {optimizer!r}")

    best_image = image.detach().clone()
    best_loss = math.inf
    best_parts: dict[str, float] = {}
    history: list[float] = []
    last_parts: dict[str, float] = {}
    scale: float | None = None if optimizer == "lbfgs" else 1.0

    def closure() -> Tensor:
        nonlocal best_loss, best_image, best_parts, last_parts, scale
        opt.zero_grad(set_to_none=True)
        loss, parts = criterion(image)
        value = float(loss.detach())
        if scale is None:  # first evaluation: fix the objective scale (see LBFGS_GRADIENT_SCALE)
            (gradient,) = torch.autograd.grad(loss, image, retain_graph=True)
            peak = float(gradient.abs().max())
            scale = LBFGS_GRADIENT_SCALE / peak if peak > 0 and math.isfinite(peak) else 1.0
        loss = loss * scale
        loss.backward()
        # Channels-last encoders hand back channels-last gradients; L-BFGS needs .view(-1).
        assert image.grad is not None
        image.grad = image.grad.contiguous()
        last_parts = parts
        history.append(value)
        if value < best_loss:
            best_loss, best_parts = value, dict(parts)
            best_image = image.detach().clone()
        return loss

    done = 0
    interrupted = False
    try:
        for step in range(1, iterations + 1):
            opt.step(closure)  # type: ignore[arg-type]  # torch's stub says float; L-BFGS takes the loss tensor
            done = step
            if not math.isfinite(history[-1]):
                warnings.warn(
                    f"loss became {history[-1]} at iteration {step}; stopping and keeping the best "
                    "image (lower the learning rate or the loss weights)", RuntimeWarning, stacklevel=2
                )
                break
            if optimizer == "adam":
                with torch.no_grad():
                    image.clamp_(0, 1)
            if progress is not None:
                progress.update(step, loss=history[-1], **last_parts)
            if on_iteration is not None:
                on_iteration(step, image.detach())
        if iterations == 0 or not history:
            with torch.no_grad():
                loss, best_parts = criterion(image)
            best_loss = float(loss)
            history.append(best_loss)
    except KeyboardInterrupt:
        interrupted = True
    return OptimizationResult(
        image=best_image.clamp(0, 1), loss=best_loss, parts=best_parts, iterations=done,
        history=history, interrupted=interrupted,
    )
