"""Frames per second at 480p with and without frame batching (interleaved A/B, median of repeats).

Usage:
    .venv/bin/python benchmarks/video_batch.py [--video ../shared/data/video/bunny.mp4] [--size 854]
        [--frames 8] [--repeats 3] [--rows johnson adain]

Each row runs ``atelier.stylize_video`` end to end with ``--temporal`` (decoding, flow, blend, H.264)
over --frames frames at --size px, once with the frames per network call the memory budget allows
(``atelier.pipelines.memory.frames_per_batch``, which the package uses off the CPU only) and once
forced to 1, alternating A and B
--repeats times after one warm-up run each; the median fps of each is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from common import DATA
from video import subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DATA / "video" / "bunny.mp4")
    parser.add_argument("--size", type=int, default=854)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=["johnson (wave)", "adain"])
    args = parser.parse_args()
    import atelier.pipelines.memory as memory

    budgeted = memory.frames_per_batch
    work = Path(tempfile.mkdtemp(prefix="atelier-video-batch-"))
    print(f"{args.size} px, {args.frames} frames, {torch.get_num_threads()} torch threads; "
          f"ATELIER memory budget {memory.memory_budget() / 2**30:.1f} GiB")
    for label in args.rows:
        row = subject(label, 0)
        chosen: list[int] = []
        run(row, args, work, True, budgeted, chosen)
        run(row, args, work, False, budgeted, chosen)  # warm-up: weights loaded, ONNX graph cached
        fps: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for batched in (True, False):
                fps[batched].append(run(row, args, work, batched, budgeted, chosen))
        print(f"| {label} | {max(chosen)} | {statistics.median(fps[False]):.2f} | {statistics.median(fps[True]):.2f} | "
              f"{' '.join(f'{v:.2f}' for v in fps[False])} / {' '.join(f'{v:.2f}' for v in fps[True])} |", flush=True)


def run(row: Any, args: argparse.Namespace, work: Path, batched: bool, budgeted: Callable[..., int],
        chosen: list[int]) -> float:
    """fps of one run, frames per call as the budget allows (``batched``, also on the CPU) or 1."""
    import atelier.api as api
    import atelier.pipelines.memory as memory

    def budget(per_frame: float | None, **options: Any) -> int:
        chosen.append(budgeted(per_frame, **options))
        return chosen[-1]

    default = api._frame_batch
    memory.frames_per_batch = budget if batched else (lambda per_frame, **options: 1)  # type: ignore[assignment]
    api._frame_batch = lambda frame_batch, device: None  # type: ignore[assignment]  # the budget decides
    try:
        begin = time.perf_counter()
        row.run(args.video, work / "out.mp4", temporal=True, size=args.size, duration=args.frames / 24 + 0.01)
        return args.frames / (time.perf_counter() - begin)
    finally:
        memory.frames_per_batch = budgeted  # type: ignore[assignment]
        api._frame_batch = default  # type: ignore[assignment]

if __name__ == "__main__":
    main()
