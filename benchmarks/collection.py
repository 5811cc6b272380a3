"""Collection-trained networks (style-aware content loss, content-style disentanglement): speed and sheets.

Usage:
    .venv/bin/python benchmarks/collection.py [--style-aware kaokore chinese_landscape]
        [--disentangle chinese_landscape_dis] [--collection ../shared/train/collections/chinese_landscape.txt]
        [--photo chicago] [--sizes 256 512 1024] [--repeats 3] [--threads N] [--sheets docs]

Part 1 (speed): seconds per image on the CPU at each --sizes (longest side), median of --repeats after
one warm-up, through :func:`atelier.api.stylize_tensor` on a photo already in memory (networks loaded
before timing).

Part 2 (sheets, written into --sheets):
    * ``style_aware_sheet.jpg``: rows of photos, columns photo | each --style-aware model;
    * ``style_aware_hd.jpg``: one photo stylized at 1280 px by the first model (the paper's point is
      HD: strokes stay strokes at full size), saved whole;
    * ``disentangle_sheet.jpg``: one photo (--photo), then that photo under the collection's average
      style and under ten paintings of --collection (evenly spaced in the list; their file names are
      printed, the paintings themselves are not put on the sheet: the collection may not be
      redistributed), in two rows of six.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from common import DATA, ROOT, content_images, find_image, median_time, rel, save_sheet, square

COLLECTIONS = ROOT.parent / "shared" / "train" / "collections"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--style-aware", nargs="*", default=["kaokore", "chinese_landscape"])
    parser.add_argument("--disentangle", nargs="*", default=["chinese_landscape_dis"])
    parser.add_argument("--collection", type=Path, default=COLLECTIONS / "chinese_landscape.txt")
    parser.add_argument("--photos", type=Path, default=DATA / "content")
    parser.add_argument("--photo", default="chicago")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024], help="none: no timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--sheets", type=Path, default=None, help="folder for the sheets (e.g. docs)")
    parser.add_argument("--cell", type=int, default=192)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from atelier.api import stylize_tensor
    from atelier.io.images import load_image, resize_longest
    from atelier.methods import get_method
    from atelier.train.data import collection_files

    methods = {name: get_method("style_aware")(model=name) for name in args.style_aware}
    methods |= {name: get_method("disentangle")(model=name) for name in args.disentangle}
    photo = load_image(find_image(args.photos, args.photo))
    print(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("| model | " + " | ".join(f"{s} px" for s in args.sizes) + " |")
    print("|---|" + "---:|" * len(args.sizes))
    for name, method in methods.items():
        cells = []
        for size in args.sizes:
            image = resize_longest(photo, size)
            def run(image=image, method=method):  # defaults bind the loop values now
                return stylize_tensor(image, [], method, progress=False)

            seconds, _ = median_time(run, args.repeats)
            cells.append(f"{seconds:.2f} s")
        print(f"| {name} ({method.name}) | " + " | ".join(cells) + " |")

    if args.sheets is None:
        return
    cell = args.cell
    if args.style_aware:
        rows = []
        for path in content_images(args.photos)[:4]:
            image = resize_longest(load_image(path), 512)
            outputs = [stylize_tensor(image, [], methods[n], progress=False).image for n in args.style_aware]
            rows.append(torch.cat([square(x, cell) for x in [image, *outputs]], dim=3))
        print("wrote", rel(args.sheets / "style_aware_sheet.jpg"),
              save_sheet(torch.cat(rows, dim=2), args.sheets / "style_aware_sheet.jpg", 240))
        hd = stylize_tensor(resize_longest(photo, 1280), [], methods[args.style_aware[0]], progress=False).image
        print("wrote", rel(args.sheets / "style_aware_hd.jpg"), save_sheet(hd, args.sheets / "style_aware_hd.jpg", 240))
    if args.disentangle:
        method = methods[args.disentangle[0]]
        files = collection_files(args.collection)
        picks = [files[round(i * (len(files) - 1) / 9)] for i in range(10)]
        image = resize_longest(photo, 384)
        # The paintings themselves stay out of the sheet (the collection's images may not be
        # redistributed); their file names are printed, and the caption lists them.
        cells = [square(image, cell), square(stylize_tensor(image, [], method, progress=False).image, cell)]
        cells += [square(stylize_tensor(image, [load_image(p)], method, progress=False).image, cell) for p in picks]
        sheet = torch.cat([torch.cat(cells[:6], dim=3), torch.cat(cells[6:], dim=3)], dim=2)
        print("wrote", rel(args.sheets / "disentangle_sheet.jpg"),
              save_sheet(sheet.clamp(0, 1), args.sheets / "disentangle_sheet.jpg", 240),
              "paintings:", ", ".join(p.name for p in picks))
        spread = disentangle_spread(method, [square(load_image(p), cell) for p in content_images(args.photos)[:4]],
                                    [load_image(p) for p in picks], cell)
        print(", ".join(f"{key} {value:.4f}" for key, value in spread.items()))


def disentangle_spread(method, photos: list[torch.Tensor], paintings: list[torch.Tensor],
                       cell: int) -> dict[str, float]:
    """How a disentanglement network's outputs differ between paintings and between photos.

    ``across_paintings``: mean |G(x, s_a) - G(x, s_b)| over photo x and painting pairs;
    ``across_photos``: mean |G(x_1, s) - G(x_2, s)| over paintings and photo pairs (content
    differs there, so it is the scale to read the first against); ``code_spread``: mean distance
    between the paintings' unit style codes (0 = collapsed encoder, 2 = antipodes);
    ``colour_spread_ratio``: spread of the outputs' colour statistics (per-channel mean and std,
    averaged over photos) across paintings, over the paintings' own; ``colour_correlation``:
    correlation between the paintings' pairwise colour-statistic distances and their outputs'
    (near 1: the outputs differ the way the paintings do).
    """
    from atelier.api import stylize_tensor
    from atelier.methods.disentangle import code_spread

    def stats(image: torch.Tensor) -> torch.Tensor:
        return torch.cat([image.mean((2, 3)), image.std((2, 3))], 1)

    outputs = torch.stack([torch.cat([stylize_tensor(x, [p], method, progress=False).image for x in photos])
                           for p in paintings])  # (paintings, photos, 3, cell, cell)
    pairs = lambda n: n * (n - 1)  # noqa: E731
    n_paint, n_photo = outputs.shape[:2]
    across_paintings = (outputs[:, None] - outputs[None]).abs().mean((2, 3, 4, 5)).sum() / pairs(n_paint)
    across_photos = (outputs[:, :, None] - outputs[:, None]).abs().mean((0, 3, 4, 5)).sum() / pairs(n_photo)
    painting_stats = torch.cat([stats(square(p, cell)) for p in paintings])
    output_stats = stats(outputs.flatten(0, 1)).view(n_paint, n_photo, -1).mean(1)
    off = ~torch.eye(n_paint, dtype=torch.bool)
    correlation = torch.corrcoef(torch.stack([torch.cdist(painting_stats, painting_stats)[off],
                                              torch.cdist(output_stats, output_stats)[off]]))[0, 1]
    codes = torch.cat([method.style_code([p], [1.0])[None] for p in paintings])
    return {"across_paintings": float(across_paintings), "across_photos": float(across_photos),
            "code_spread": float(code_spread(codes)),
            "colour_spread_ratio": float(output_stats.std(0).mean() / painting_stats.std(0).mean()),
            "colour_correlation": float(correlation)}


if __name__ == "__main__":
    main()
