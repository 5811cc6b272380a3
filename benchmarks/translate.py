"""Unpaired translation (CycleGAN, U-GAT-IT): CPU speed, a domain score, a contact sheet.

Usage:
    .venv/bin/python benchmarks/translate.py --model summer2winter [summer2winter_ugatit_light ...]
        [--data ../shared/train/unpaired/summer2winter] [--size 256] [--repeats 5] [--threads N]
        [--train-count 300] [--test-count 0] [--classifier-size 128] [--sheet docs/translate_sheet.jpg]
        [--table FILE]

Part 1 (speed): seconds per image on the CPU for each direction at --size x --size px, median of
--repeats after one warm-up, through :class:`atelier.pipelines.translation.Translator` on a tensor already
in memory (generators loaded before timing, so no file I/O is counted).

Part 2 (domain score): a judge independent of the model's own discriminators,
:class:`atelier.eval.DomainJudge`: logistic regression on frozen VGG-19 statistics (the per-channel
mean and standard deviation of relu1_1 ... relu4_1, the "style" statistics of AdaIN, 1920 numbers
per image, computed at --classifier-size px) learns A vs B from the *training* folders only
(--train-count images per domain, evenly spaced). It then labels the held-out test images:
untranslated testA and testB (how well the judge separates the domains, and the baseline "share
already classified as the target"), and the translations testA -> B and testB -> A. A good
translator moves the share classified as the target domain from the untranslated source's share
towards the real target's.

Part 3 (contact sheet): ``docs/translate_sheet.jpg``: rows of testA | A -> B by each model | testB |
B -> A by each model.

Several --model are compared side by side on the same images with the same judge.

The judge sees colour and texture statistics (snow, foliage, sky, light), not semantics; a
translator can score well by matching those statistics, so read the score next to the sheet.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common import ROOT, median_time, rel, save_sheet, square

DATA = ROOT.parent / "shared" / "train" / "unpaired" / "summer2winter"


def images(folder: Path) -> list[Path]:
    from atelier.io.images import image_files

    files = image_files(folder)
    if not files:
        raise SystemExit(f"no images in {folder}")
    return files


def spaced(files: list[Path], count: int) -> list[Path]:
    """``count`` evenly spaced files (all when count is 0 or more than there are)."""
    if count <= 0 or count >= len(files):
        return files
    return [files[int(i)] for i in np.linspace(0, len(files) - 1, count).round()]


def load(path: Path, size: int) -> Tensor:
    from atelier.io.images import load_image

    return square(load_image(path), size)


def label(translator) -> str:
    info = translator.info
    return f"`{info['name']}` ({info['task']}, {info['steps']} steps)"


def speed(translators: list, size: int, repeats: int, sample: Tensor) -> list[str]:
    image = square(sample, size)
    rows = []
    for translator in translators:
        cells = []
        for direction in ("a2b", "b2a"):
            seconds, times = median_time(lambda t=translator, d=direction: t(image, d), repeats)
            cells.append(f"{seconds:.3f}")
            print(f"{translator.info['name']} {direction} {size} px: {seconds:.3f} s "
                  f"({', '.join(f'{t:.3f}' for t in times)})", flush=True)
        parameters = sum(p.numel() for p in translator.nets["a2b"].parameters())
        rows.append(f"| {label(translator)} | {parameters / 1e6:.2f} M | "
                    f"{cells[0]} | {cells[1]} |")
    return [f"## Speed: seconds per image on the CPU at {size}x{size} px (median of {repeats} after 1 warm-up, "
            f"{torch.get_num_threads()} threads)", "",
            "| model | generator parameters | A -> B s/image | B -> A s/image |", "|---|---:|---:|---:|", *rows]


def domain_score(args: argparse.Namespace, translators: list) -> tuple[list[str], dict[str, list[Tensor]]]:
    """The judge, trained once, on every model's translations of the same test images."""
    info = translators[0].info
    name_a, name_b = info["domain_a"], info["domain_b"]
    from atelier.encoders import load_vgg19
    from atelier.eval import DomainJudge

    start = time.perf_counter()
    judge = DomainJudge(load_vgg19(), size=args.classifier_size)
    train = {d: spaced(images(args.data / f"train{d}"), args.train_count) for d in "AB"}
    feats = {d: judge.features(load(p, args.size) for p in files) for d, files in train.items()}
    accuracy = judge.fit(feats["A"], feats["B"])
    print(f"judge: trained on {len(train['A'])} + {len(train['B'])} training images, training accuracy "
          f"{accuracy:.1%} ({time.perf_counter() - start:.0f} s)", flush=True)
    # Sheet columns: the source, then each model's translation of it, per direction.
    sheet: dict[str, list[Tensor]] = {}
    untranslated: dict[str, Tensor] = {}
    translated: dict[tuple[str, int], Tensor] = {}
    for source, direction in (("A", "a2b"), ("B", "b2a")):
        files = spaced(images(args.data / f"test{source}"), args.test_count)
        plain: list[Tensor] = []
        moved: list[list[Tensor]] = [[] for _ in translators]
        for index, path in enumerate(files):
            image = load(path, args.size)
            plain.append(judge.features(image))
            if index < args.sheet_rows:
                sheet.setdefault(source, []).append(image)
            for number, translator in enumerate(translators):
                output = translator(image, direction)
                moved[number].append(judge.features(output))
                if index < args.sheet_rows:
                    sheet.setdefault(f"{direction}{number}", []).append(output)
        untranslated[source] = judge.predict(torch.cat(plain))
        for number in range(len(translators)):
            translated[source, number] = judge.predict(torch.cat(moved[number]))
        print(f"test{source}: {len(files)} images translated by {len(translators)} model(s) and judged", flush=True)
    # Shares classified as B (probability > 0.5); for B -> A the target is A, so 1 - that.
    as_b = {k: float((v > 0.5).float().mean()) for k, v in untranslated.items()}
    rows = []
    for number, translator in enumerate(translators):
        moved_a = float((translated["A", number] > 0.5).float().mean())
        moved_b = float((translated["B", number] > 0.5).float().mean())
        model = label(translator)
        rows.append(f"| {model} | {name_a} -> {name_b} (testA, {len(untranslated['A'])}) | {moved_a:.1%} | "
                    f"{as_b['A']:.1%} | {as_b['B']:.1%} |")
        rows.append(f"| {model} | {name_b} -> {name_a} (testB, {len(untranslated['B'])}) | {1 - moved_b:.1%} | "
                    f"{1 - as_b['B']:.1%} | {1 - as_b['A']:.1%} |")
    lines = [f"## Domain score: share classified as the target domain (judge: logistic regression on VGG-19 "
             f"relu1_1-relu4_1 mean/std at {args.classifier_size} px, trained on {len(train['A'])} trainA + "
             f"{len(train['B'])} trainB images, training accuracy {accuracy:.1%})", "",
             "| model | direction (test images) | translated | untranslated source | real target images |",
             "|---|---|---:|---:|---:|", *rows]
    return lines, sheet


def contact_sheet(sheet: dict[str, list[Tensor]], models: int, path: Path, cell: int, max_kb: int) -> str:
    columns = ["A", *(f"a2b{n}" for n in range(models)), "B", *(f"b2a{n}" for n in range(models))]
    rows = min(len(sheet[c]) for c in columns)
    gap = 2
    canvas = torch.ones(1, 3, rows * cell + (rows - 1) * gap, len(columns) * cell + (len(columns) - 1) * gap)
    for row in range(rows):
        for column, key in enumerate(columns):
            y, x = row * (cell + gap), column * (cell + gap)
            canvas[..., y:y + cell, x:x + cell] = square(sheet[key][row], cell)
    return save_sheet(canvas, path, max_kb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, nargs="+",
                        help="trained translation model(s): names or .safetensors files, compared side by side "
                             "(one judge, one sheet)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with trainA, trainB, testA, testB")
    parser.add_argument("--size", type=int, default=256, help="px of the timed and translated test images")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per direction (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for torch")
    parser.add_argument("--train-count", type=int, default=300,
                        help="training images per domain for the judge (evenly spaced; 0 = all)")
    parser.add_argument("--test-count", type=int, default=0, help="test images per domain (0 = all)")
    parser.add_argument("--classifier-size", type=int, default=128, help="px at which the judge sees images")
    parser.add_argument("--sheet", type=Path, default=ROOT / "docs" / "translate_sheet.jpg")
    parser.add_argument("--sheet-rows", type=int, default=4, help="test images per domain on the sheet")
    parser.add_argument("--sheet-cell", type=int, default=192, help="px of a cell in the sheet")
    parser.add_argument("--sheet-max-kb", type=int, default=400, help="lower the JPEG quality until under this")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-score", action="store_true", help="no judge and no sheet")
    parser.add_argument("--table", type=Path, help="also write the markdown tables to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from atelier.errors import AtelierError
    from atelier.pipelines.translation import Translator

    translators = [Translator(model) for model in args.model]
    try:
        infos = [translator.info for translator in translators]
    except AtelierError as error:
        raise SystemExit(f"translate benchmark: {error}") from None
    if len({(info["domain_a"], info["domain_b"]) for info in infos}) > 1:
        raise SystemExit("translate benchmark: the models translate between different domains; compare one pair "
                         "of domains at a time")
    for info in infos:
        print(f"# translate benchmark: {info['path']} ({info['task']}, {info['domain_a']} <-> {info['domain_b']}); "
              f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}",
              flush=True)
    lines: list[str] = []
    if not args.skip_speed:
        sample = load(images(args.data / "testA")[0], args.size)
        lines += [*speed(translators, args.size, args.repeats, sample), ""]
    if not args.skip_score:
        table, sheet = domain_score(args, translators)
        lines += [*table, ""]
        size = contact_sheet(sheet, len(translators), args.sheet, args.sheet_cell, args.sheet_max_kb)
        names = ", ".join(info["name"] for info in infos)
        lines.append(f"Contact sheet: {rel(args.sheet)} ({size}); rows: testA | A -> B by each model ({names}) | "
                     f"testB | B -> A by each model.")
    text = "\n".join(lines).rstrip() + "\n"
    print("\n" + text)
    if args.table:
        args.table.write_text(text)


if __name__ == "__main__":
    main()
