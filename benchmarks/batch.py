"""`atelier batch` throughput: images per second with adain, locally and on a local Ray cluster.

Usage:
    .venv/bin/python benchmarks/batch.py [--count 1000] [--size 256] [--inputs DIR] [--styles DIR]
        [--runs local1 local2 ray1 ray2] [--json FILE]

The first --count images of --inputs (default ../shared/train/content, photos of about 1 MP) are
linked into a temporary tree of 10 sub-folders; each run stylizes all of them into a fresh output
folder with adain at --size px (longest side), a random style per image from --styles (default
../shared/data/style, 18 paintings), seed 0, the default batch of 8 images per network call.
Timed: the whole ``run_batch`` call, wall clock: listing, planning, starting the workers (and
loading their networks), reading and resizing, stylizing, writing PNGs and the manifest.

Runs: ``localN`` = the local engine with N worker processes (N = 1 runs in this process with
every core's threads; N = 2 spawns two processes of one thread each); ``rayN`` = the Ray
engine with N actors on a local Ray started here on 127.0.0.1 with as many CPUs as this machine
has (``ray.init``, which starts the same head node as ``ray start --head``; its start time is
reported on its own). Ray's overhead is its wall time minus the local engine's at the same
worker count.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from atelier.batch import MethodSpec, list_images, run_batch
from atelier.batch.run import cores

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def link_inputs(source: Path, count: int, folder: Path) -> int:
    """Link the first ``count`` images of ``source`` into 10 sub-folders of ``folder``."""
    names = list_images(source, "inputs")[:count]
    for index, name in enumerate(names):
        target = folder / f"part{index % 10}" / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source / name)
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--inputs", type=Path, default=SHARED / "train" / "content")
    parser.add_argument("--styles", type=Path, default=SHARED / "data" / "style")
    parser.add_argument("--runs", nargs="+", default=["local1", "local2", "ray1", "ray2"])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    spec = MethodSpec("adain")
    results: dict[str, dict[str, float]] = {}
    ray_start = None
    with tempfile.TemporaryDirectory(prefix="atelier-batch-bench-") as temp:
        inputs = Path(temp) / "in"
        count = link_inputs(args.inputs, args.count, inputs)
        print(f"{count} inputs, {len(list_images(args.styles, 'styles'))} styles, {args.size} px, "
              f"{cores()} cores, torch {torch.__version__}, {platform.processor() or platform.machine()}", flush=True)
        for run in args.runs:
            engine, workers = run.rstrip("0123456789"), int(run[len(run.rstrip("0123456789")):])
            if engine == "ray" and ray_start is None:
                import ray

                start = time.perf_counter()
                ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                         _node_ip_address="127.0.0.1")
                ray_start = time.perf_counter() - start
                print(f"ray start: {ray_start:.1f} s", flush=True)
            torch.set_num_threads(cores())
            out = Path(temp) / f"out_{run}"
            start = time.perf_counter()
            result = run_batch(inputs, out, args.styles, spec, engine=engine, workers=workers, size=args.size,
                               progress=True)
            seconds = time.perf_counter() - start
            results[run] = {"images": result.done, "failed": result.failed, "seconds": round(seconds, 1),
                            "images_per_second": round(result.done / seconds, 3)}
            print(f"{run}: {result.done} done, {result.failed} failed in {seconds:.1f} s = "
                  f"{result.done / seconds:.2f} img/s", flush=True)
        if ray_start is not None:
            import ray

            ray.shutdown()
    for workers in (1, 2):
        local, remote = results.get(f"local{workers}"), results.get(f"ray{workers}")
        if local and remote:
            print(f"ray overhead at {workers} worker(s): {remote['seconds'] - local['seconds']:+.1f} s "
                  f"({remote['seconds'] / local['seconds'] - 1:+.0%})")
    summary = {"count": count, "size": args.size, "cores": cores(), "ray_start_seconds": ray_start, "runs": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
