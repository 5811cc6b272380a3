"""Temporal stability of the arbitrary-style methods on a video, frame by frame.

Usage:
    .venv/bin/python benchmarks/video_stability.py [--video ../shared/data/video/bunny.mp4] [--frames 48]
        [--size 256] [--style ../shared/data/style/la_muse.jpg] [--methods lst lst_relu3_1 adain ...]

Each method stylizes the first --frames frames at --size px (longest side), built once, with one
style, as ``atelier.stylize_video`` does. Reported per method: the mean absolute change between
consecutive output frames divided by that of the input frames (a method that adds no flicker of
its own changes its output about as much as the content changes: a ratio near the one of a
smooth per-pixel mapping; flicker raises it), and the same ratio restricted to the frame pairs
where the input barely changes (below the median input change), where any change is flicker.
Linear Style Transfer's claim (Li et al. 2019, sec. 4.4) is that its output is stable without
any temporal term because T is a linear map fixed by the style.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch

from common import DATA, rel
from feedforward import VARIANTS, Runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DATA / "video" / "bunny.mp4")
    parser.add_argument("--style", type=Path, default=DATA / "style" / "la_muse.jpg")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["lst", "lst_relu3_1", "adain", "wct", "sanet", "avatar",
                                                          "style_swap"], choices=list(VARIANTS))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--table", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args()
    args.decoder = args.decoder_dir = None

    from atelier.api import stylize_tensor
    from atelier.io.images import load_image, resize_longest
    from atelier.io.video import read_frames

    frames = []
    for index, frame in enumerate(read_frames(args.video)):
        if index >= args.frames:
            break
        frames.append(resize_longest(frame, args.size))
    style = load_image(args.style)
    input_change = [float((b - a).abs().mean()) for a, b in itertools.pairwise(frames)]
    calm = [i for i, change in enumerate(input_change) if change < statistics.median(input_change)]
    rows = []
    for name in args.methods:
        try:
            runner = Runner(name, args)
        except Exception as error:
            rows.append(f"| {name} | not run: {type(error).__name__}: {error} | | |")
            continue
        start = time.perf_counter()
        outputs = [stylize_tensor(frame, [style], method=runner.method, progress=False).image for frame in frames]
        seconds = (time.perf_counter() - start) / len(frames)
        output_change = [float((b - a).abs().mean()) for a, b in itertools.pairwise(outputs)]
        ratio = sum(output_change) / sum(input_change)
        calm_ratio = sum(output_change[i] for i in calm) / max(sum(input_change[i] for i in calm), 1e-12)
        rows.append(f"| {name} | {ratio:.2f} | {calm_ratio:.2f} | {seconds:.3f} |")
        print(rows[-1], flush=True)
    lines = [f"Video {rel(args.video)}, first {len(frames)} frames at {args.size} px, style {args.style.name}, "
             f"{torch.get_num_threads()} threads (style remembered across frames)", "",
             "| method | output change / input change | same, calm frame pairs | s/frame |", "|---|---:|---:|---:|",
             *rows]
    text = "\n".join(lines) + "\n"
    print()
    print(text, end="")
    if args.table:
        args.table.write_text(text)


if __name__ == "__main__":
    main()
