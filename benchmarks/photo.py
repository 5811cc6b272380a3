"""Photorealistic transfer on every pair of ``../shared/data/photo``: time, style, structure.

Usage:
    .venv/bin/python benchmarks/photo.py [--size 512] [--pairs 1 2 3] [--work out/bench_photo]

For each pair ``inN.jpg`` / ``tarN.jpg`` with their segmentation maps, runs ``method="photo"``
with its defaults at ``--size`` (longest side) and records:

* seconds for the whole stylization (Laplacian, both stages; image loading excluded);
* the Gram style distance to the reference (:func:`atelier.eval.gram_distance`, VGG-19
  relu1_1..relu5_1) of the input and of the result: the result should be much closer;
* SSIM of the result's luminance against the input's (:func:`atelier.eval.ssim`): structure
  kept (1 = identical luminance).

Each pair's result is cached in ``--work`` (PNG + JSON), so an interrupted run resumes.
Writes ``docs/photo_sheet.jpg`` (input | reference | result, two pairs a row) and
``docs/photo_results.md`` (the table and its medians).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "photo"


def pair_ids() -> list[int]:
    return sorted(int(m.group(1)) for p in (PHOTO / "input").glob("in*.jpg") if (m := re.match(r"in(\d+)", p.stem)))


def run_pair(n: int, size: int, work: Path, encoder) -> dict:
    from atelier.api import stylize_tensor
    from atelier.eval import gram_distance, ssim
    from atelier.io import load_image, resize_longest, save_image

    record_path = work / f"pair{n:02d}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    content = resize_longest(load_image(PHOTO / "input" / f"in{n}.jpg"), size)
    style = load_image(PHOTO / "style" / f"tar{n}.jpg")
    seg = {"content_mask": str(PHOTO / "segmentation" / f"in{n}.png"),
           "style_mask": str(PHOTO / "segmentation" / f"tar{n}.png")}
    start = time.perf_counter()
    result = stylize_tensor(content, [style], "photo", progress=False, seed=0,
                            method_kwargs={"encoder": encoder}, **seg)
    seconds = time.perf_counter() - start
    output = result.image.clamp(0, 1)
    reference = resize_longest(style, size)
    record = {
        "pair": n,
        "size": list(output.shape[-2:]),
        "seconds": round(seconds, 1),
        "regions": result.info["regions"],
        "style_distance_input": round(gram_distance(encoder, content, reference), 4),
        "style_distance_result": round(gram_distance(encoder, output, reference), 4),
        "ssim": round(float(ssim(output, content)), 4),
    }
    save_image(output, work / f"pair{n:02d}.png", overwrite=True)
    record_path.write_text(json.dumps(record))
    return record


def contact_sheet(ids: list[int], work: Path, size: int, path: Path, cell: int = 100, per_row: int = 2) -> None:
    from atelier.io import load_image, resize_longest, tensor_to_pil

    rows = []
    for n in ids:
        cells = [resize_longest(load_image(PHOTO / "input" / f"in{n}.jpg"), size),
                 resize_longest(load_image(PHOTO / "style" / f"tar{n}.jpg"), size),
                 load_image(work / f"pair{n:02d}.png")]
        images = [tensor_to_pil(c) for c in cells]
        images = [im.resize((max(1, round(im.width * cell / im.height)), cell), Image.LANCZOS) for im in images]
        rows.append(images)
    widths = [sum(im.width for im in r) + 4 * len(r) for r in rows]
    pair_width = max(widths)
    lines = [rows[i : i + per_row] for i in range(0, len(rows), per_row)]
    sheet = Image.new("RGB", (pair_width * per_row + 8, len(lines) * (cell + 4)), "white")
    for y, line in enumerate(lines):
        for x, images in enumerate(line):
            left = x * (pair_width + 8)
            for im in images:
                sheet.paste(im, (left, y * (cell + 4)))
                left += im.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=72, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", type=int, nargs="*", help="pair numbers (default: all)")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench_photo")
    parser.add_argument("--sheet", type=Path, default=ROOT / "docs" / "photo_sheet.jpg")
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "photo_results.md")
    args = parser.parse_args()
    from atelier.encoders import load_vgg19

    if not PHOTO.exists():
        raise SystemExit(f"{PHOTO} not found: this benchmark needs ../shared/data/photo beside the checkout")
    ids = args.pairs or pair_ids()
    work = args.work / str(args.size)
    work.mkdir(parents=True, exist_ok=True)
    encoder = load_vgg19()
    records = []
    for i, n in enumerate(ids):
        record = run_pair(n, args.size, work, encoder)
        records.append(record)
        print(f"[{i + 1}/{len(ids)}] pair {n}: {record['seconds']} s, style distance "
              f"{record['style_distance_input']} -> {record['style_distance_result']}, SSIM {record['ssim']}",
              flush=True)
    contact_sheet(ids, work, args.size, args.sheet)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in records)

    lines = [
        "# Photorealistic transfer on ../shared/data/photo",
        "",
        f"Command: `.venv/bin/python benchmarks/photo.py --size {args.size}` (method `photo`, defaults, the "
        f"pairs' segmentation maps). Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}.",
        "",
        f"Medians over {len(records)} pairs: **{median('seconds'):.0f} s per pair**; Gram style distance to the "
        f"reference {median('style_distance_input'):.3f} (input) -> {median('style_distance_result'):.3f} "
        f"(result); SSIM of the result's luminance vs the input {median('ssim'):.3f}.",
        "",
        f"Contact sheet: [photo_sheet.jpg]({args.sheet.name}) (input | reference | result).",
        "",
        "| pair | size (h x w) | s | regions | style dist. input | style dist. result | SSIM |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in records:
        lines.append(f"| {r['pair']} | {r['size'][0]}x{r['size'][1]} | {r['seconds']} | {', '.join(r['regions'])} | "
                     f"{r['style_distance_input']} | {r['style_distance_result']} | {r['ssim']} |")
    args.table.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.sheet} and {args.table}")


if __name__ == "__main__":
    main()
