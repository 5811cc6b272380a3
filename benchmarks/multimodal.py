"""Multimodal transfer (Wang et al. 2017) next to the Johnson network of the same painting, at high resolution.

Usage:
    .venv/bin/python benchmarks/multimodal.py [--multimodal multimodal_wave] [--johnson wave]
        [--contents golden_gate sailboat] [--sizes 512 1024 2048] [--repeats 1] [--sheet FILE]

For each content (``../shared/data/content``) and each --sizes (longest side of the output) both
networks stylize the photo at that size (fp32 autocast off, or bf16 where the CPU has it, as
``precision auto`` chooses). The sheet (default ``docs/multimodal_sheet.jpg``) has, per content,
a row for the Johnson network and a row for the multimodal network; each column is one size,
shown whole at the same thumbnail width (so a stroke that keeps its size *relative to the
image* looks the same in every column, and one fixed in pixels shrinks), and the last column is
a 192 px crop of the largest output at its full resolution (the strokes' real size in pixels).

It also prints seconds per image (median of --repeats after a warm-up at 256 px; the network
already loaded; no file I/O) — on a shared CPU these numbers are noisy — and the *stroke-scale
ratio*: each output shrunk to --judge px (longest side), its Gram distance to the painting at
--judge px over the photo's own (real VGG-19; relu1_2, relu2_2, relu3_4, relu4_4 on per-block
scaled features, as the losses). Strokes that keep their size relative to the image keep this
ratio as the output grows; strokes fixed in pixels shrink below the judge's resolution and the
ratio climbs toward 1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from common import DATA, ROOT, find_image, rel, save_sheet

THUMB = 320
CROP = 192


def _thumb(image: Tensor, width: int = THUMB) -> Tensor:
    from atelier.io.images import resize_to

    height = round(image.shape[-2] * width / image.shape[-1])
    return resize_to(image, (height, width))


def _centre_crop(image: Tensor, side: int) -> Tensor:
    top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
    return image[..., top : top + side, left : left + side]


def _pad(image: Tensor, height: int, width: int) -> Tensor:
    return F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]), value=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multimodal", default="multimodal_wave")
    parser.add_argument("--johnson", default="wave")
    parser.add_argument("--contents", nargs="+", default=["golden_gate", "sailboat"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sheet", default=str(ROOT / "docs" / "multimodal_sheet.jpg"))
    parser.add_argument("--painting", default="", help="the painting (default: the one the multimodal card names)")
    parser.add_argument("--judge", type=int, default=512, help="size at which outputs meet the painting, px")
    args = parser.parse_args()

    from atelier.encoders import load_vgg19
    from atelier.io.images import load_image, resize_longest
    from atelier.losses import CAFFE_FEATURE_SCALES, layer_scale
    from atelier.methods import get_method
    from atelier.methods.multimodal import STYLE_LAYERS, load_multimodal
    from atelier.nets.pretrained import model_cards
    from atelier.ops.gram import gram_matrix

    vgg = load_vgg19()

    def grams(image: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            features = vgg(resize_longest(image, args.judge), STYLE_LAYERS)
        return {k: gram_matrix(features[k].float() / layer_scale(k, CAFFE_FEATURE_SCALES)) for k in STYLE_LAYERS}

    def distance(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
        return sum(float(((a[k] - b[k]) ** 2).mean()) for k in STYLE_LAYERS)

    _, info = load_multimodal(args.multimodal)
    card = next((c for c in model_cards() if c.get("name") == Path(info["path"]).stem), {})
    painting_file = args.painting or (card.get("options") or {}).get("style", "")
    painting = grams(load_image(ROOT / painting_file)) if painting_file and (ROOT / painting_file).is_file() else None

    methods = {"johnson": get_method("johnson")(model=args.johnson, backend="torch"),
               "multimodal": get_method("multimodal")(model=args.multimodal)}
    for method in methods.values():  # load the weights before timing
        method.stylize(torch.rand(1, 3, 256, 256), [], style_weights=[1.0])
    rows: list[Tensor] = []
    print(f"| content | size | {args.johnson} (Johnson) s | {args.multimodal} (multimodal) s "
          f"| {args.johnson} stroke-scale ratio | {args.multimodal} stroke-scale ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for stem in args.contents:
        photo = load_image(find_image(DATA / "content", stem))
        photo_distance = distance(grams(photo), painting) if painting is not None else float("nan")
        outputs: dict[str, list[Tensor]] = {name: [] for name in methods}
        for size in args.sizes:
            content = resize_longest(photo, size)
            seconds, ratios = {}, {}
            for name, method in methods.items():
                times = []
                for _ in range(max(1, args.repeats)):
                    start = time.perf_counter()
                    image = method.stylize(content, [], style_weights=[1.0]).image
                    times.append(time.perf_counter() - start)
                seconds[name] = sorted(times)[len(times) // 2]
                ratios[name] = (distance(grams(image), painting) / photo_distance if painting is not None
                                else float("nan"))
                outputs[name].append(image)
            print(f"| {stem} | {size} | {seconds['johnson']:.2f} | {seconds['multimodal']:.2f} "
                  f"| {ratios['johnson']:.3f} | {ratios['multimodal']:.3f} |")
        for name in methods:
            tiles = [_thumb(image) for image in outputs[name]] + [_centre_crop(outputs[name][-1], CROP)]
            height = max(t.shape[-2] for t in tiles)
            rows.append(torch.cat([_pad(t, height, t.shape[-1]) for t in tiles], -1))
    width = max(r.shape[-1] for r in rows)
    sheet = torch.cat([_pad(r, r.shape[-2] + 4, width) for r in rows], -2)
    print(f"sheet: rows {', '.join(f'{c}: {args.johnson}, {args.multimodal}' for c in args.contents)}; "
          f"columns {', '.join(map(str, args.sizes))} px (whole, {THUMB} px wide), {CROP} px crop at "
          f"{args.sizes[-1]} px -> {rel(Path(args.sheet))} ({save_sheet(sheet, Path(args.sheet), 240)})")


if __name__ == "__main__":
    main()
