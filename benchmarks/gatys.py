"""Gatys speed and quality: atelier next to the `pastiche` CLI, matched settings.

Usage:
    .venv/bin/python benchmarks/gatys.py [--size 512] [--iterations 100] [--repeats 3]

Matched settings (pastiche's defaults, expressed in atelier's loss):
    content relu4_2, weight 0.01 on the feature MSE; style relu1_1..relu5_1, 10 per layer on
    the MSE of Gram matrices normalised by C*H*W (= pastiche's 10/C^2 on Grams normalised by
    H*W); no TV; max pooling; init from content; L-BFGS lr 1, history 100; style resized to
    the content's pixel count; the same bundled VGG-19 weights.

Part 1 (speed): seconds per L-BFGS iteration = (time(N iterations) - time(0)) / N, each a
whole CLI run in a subprocess, median of ``--repeats``.
Part 0 (``--cpu``, for a busy machine): CPU seconds per L-BFGS iteration (``time.process_time``,
1 thread, in this process), pastiche's ``PasticheArtist.draw`` and atelier's optimisation step
at matched settings, interleaved in rounds of ``--cpu-iterations`` each, median of ``--repeats``
rounds after a warm-up round; the CPU time of a schedule is then its iterations per level times
that level's cost (levels at 1/2 the side cost about 1/4).
Part 2 (quality per time): pastiche 300 single-scale iterations vs atelier's default
coarse-to-fine schedule; both outputs are re-scored by atelier's fp32 loss (same layers and
weights) at the output size.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent

MATCHED = ["--content-layers", "relu4_2", "--content-weight", "0.01", "--style-weight", "50",
           "--tv-weight", "0", "--pooling", "max", "--init", "content"]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def pastiche_cmd(content: Path, style: Path, size: int, steps: int, out: Path) -> list[str]:
    return [str(BIN / "pastiche"), "--device", "cpu", "--seed", "0", "--size", str(size), "--num-steps",
            str(steps), "--info-step", "1000", "--content", str(content), "--styles", str(style),
            "--output", str(out)]


def atelier_cmd(content: Path, style: Path, size: int, steps: int, out: Path, extra: list[str]) -> list[str]:
    return [str(BIN / "atelier"), "stylize", str(content), "--style", str(style), "--size", str(size),
            "--iterations", str(steps), "--seed", "0", "-q", "--overwrite", "-o", str(out), *MATCHED, *extra]


def score(paths: dict[str, Path], content: Path, style: Path, size: int) -> dict[str, float]:
    """atelier's fp32 matched loss of each output image (at that image's size)."""
    from atelier.encoders import load_vgg19
    from atelier.io import load_image, resize_longest
    from atelier.io.images import resize_to, scaled_style_size
    from atelier.losses import PerceptualCriterion, StyleTarget
    from atelier.methods.gatys import Gatys

    method = Gatys(content_layers=("relu4_2",), content_weight=0.01, style_weight=50.0, tv_weight=0.0)
    encoder = load_vgg19()
    scores = {}
    for name, path in paths.items():
        output = load_image(path)
        hw = tuple(output.shape[-2:])
        content_image = resize_to(resize_longest(load_image(content), size), hw)
        style_image = load_image(style)
        style_image = resize_to(style_image, scaled_style_size(style_image, hw, 1.0))
        with torch.no_grad():
            target = StyleTarget(encoder(style_image, method.config.style_layers))
            criterion = PerceptualCriterion(encoder, method.build_terms(content_image, [target], encoder))
            scores[name] = float(criterion(output)[0])
    return scores


def cpu_per_iteration(content: Path, style: Path, size: int, iterations: int, rounds: int) -> dict[str, float]:
    """Median CPU seconds per L-BFGS iteration, pastiche and atelier (bf16, matched loss), 1 thread, interleaved."""
    from pastiche.pastiche import PasticheArtist

    from atelier.eval.peers import PastichePeer
    from atelier.io import load_image, resize_longest
    from atelier.io.images import resize_to, scaled_style_size
    from atelier.losses import PerceptualCriterion, StyleTarget, encode
    from atelier.methods.gatys import Gatys
    from atelier.optim import optimize_image

    torch.set_num_threads(1)
    method = Gatys(content_layers=("relu4_2",), content_weight=0.01, style_weight=50.0, tv_weight=0.0)
    encoder = method.encoder
    content_image = resize_longest(load_image(content), size)
    style_image = load_image(style)
    style_image = resize_to(style_image, scaled_style_size(style_image, tuple(content_image.shape[-2:]), 1.0))
    with torch.no_grad():
        target = StyleTarget({k: v.float() for k, v in
                              encode(encoder, style_image, method.config.style_layers, "bf16").items()})
        criterion = PerceptualCriterion(encoder, method.build_terms(content_image, [target], encoder, "bf16"),
                                        precision="bf16")
    peer = PastichePeer()
    artist = None
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / "content.png", Path(folder) / "style.png"]
        from atelier.io.images import tensor_to_pil

        tensor_to_pil(content_image).save(paths[0])
        tensor_to_pil(load_image(style)).save(paths[1])
        with peer._decoded_once():
            artist = PasticheArtist(str(paths[0]), [str(paths[1])], device="cpu", size=size)

    def run_pastiche() -> None:
        for _ in range(iterations):
            artist.draw()

    def run_atelier() -> None:
        optimize_image(criterion, content_image, iterations=iterations)

    times: dict[str, list[float]] = {"pastiche": [], "atelier bf16": []}
    for round_ in range(rounds + 1):
        for name, run in (("pastiche", run_pastiche), ("atelier bf16", run_atelier)):
            start = time.process_time()
            run()
            if round_:  # the first round warms both up
                times[name].append((time.process_time() - start) / iterations)
    for name, values in times.items():
        print(f"{name:14s} {statistics.median(values):.3f} CPU s/iteration at {size} px, 1 thread "
              f"(rounds: {', '.join(f'{v:.3f}' for v in values)})", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"speed-up per iteration (CPU time): {medians['pastiche'] / medians['atelier bf16']:.2f}x", flush=True)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", type=Path, default=DATA / "content" / "golden_gate.jpg")
    parser.add_argument("--style", type=Path, default=DATA / "style" / "la_muse.jpg")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-iterations", type=int, default=300, help="pastiche's run in part 2")
    parser.add_argument("--schedule-iterations", type=int, nargs="+", default=[100, 200],
                        help="part 2: atelier's default coarse-to-fine schedule with these --iterations per scale")
    parser.add_argument("--skip-part2", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="only part 0: CPU seconds per iteration, 1 thread")
    parser.add_argument("--cpu-iterations", type=int, default=5, help="part 0: iterations per round")
    parser.add_argument("--with-fp32", action="store_true", help="also time atelier in fp32")
    args = parser.parse_args()
    if args.cpu:
        cpu_per_iteration(args.content, args.style, args.size, args.cpu_iterations, args.repeats)
        return
    torch.set_num_threads(torch.get_num_threads())
    tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
    c, s, n = args.content, args.style, args.iterations
    print(f"# gatys benchmark: {c.name} + {s.name}, {args.size} px, torch threads {torch.get_num_threads()}")

    rows = []
    runs_to_time = [
        ("pastiche", lambda k, o: pastiche_cmd(c, s, args.size, k, o)),
        ("atelier bf16", lambda k, o: atelier_cmd(c, s, args.size, k, o, ["--scales", "1", "--precision", "bf16"])),
    ]
    if args.with_fp32:
        runs_to_time.append(
            ("atelier fp32", lambda k, o: atelier_cmd(c, s, args.size, k, o, ["--scales", "1", "--precision", "fp32"])))
    for name, make in runs_to_time:
        setup = statistics.median(timed(make(0, tmp / "zero.png")) for _ in range(args.repeats))
        runs = [timed(make(n, tmp / f"{name.replace(' ', '_')}_{n}.png")) for _ in range(args.repeats)]
        per_it = (statistics.median(runs) - setup) / n
        rows.append((name, setup, statistics.median(runs), per_it))
        print(f"{name:14s} setup {setup:6.1f} s  {n} its {statistics.median(runs):7.1f} s  "
              f"{per_it:.3f} s/it  (runs: {', '.join(f'{r:.1f}' for r in runs)})", flush=True)
    base = rows[0][3]
    for name, *_, per_it in rows[1:]:
        print(f"speed-up {name} vs pastiche: {base / per_it:.2f}x per iteration")
    outputs = {f"{name} {n} its": tmp / f"{name.replace(' ', '_')}_{n}.png" for name, *_ in rows}

    if not args.skip_part2:
        long = args.long_iterations
        t_pastiche = timed(pastiche_cmd(c, s, args.size, long, tmp / "pastiche_long.png"))
        print(f"pastiche {long} its single-scale: {t_pastiche:.1f} s", flush=True)
        outputs[f"pastiche {long} its"] = tmp / "pastiche_long.png"
        for its in args.schedule_iterations:
            out = tmp / f"atelier_schedule_{its}.png"
            t_atelier = timed(atelier_cmd(c, s, args.size, its, out, []))
            print(f"atelier default schedule, {its} its/scale: {t_atelier:.1f} s "
                  f"({t_atelier / t_pastiche:.2f} of pastiche's time)", flush=True)
            outputs[f"atelier multi-scale {its} its/scale"] = out
    for name, value in score(outputs, c, s, args.size).items():
        print(f"final loss (atelier fp32 matched loss) {name:32s} {value:.4g}")
    print(f"outputs in {tmp}")


if __name__ == "__main__":
    main()
