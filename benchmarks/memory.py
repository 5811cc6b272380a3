"""Peak memory of every method at 512, 1024 and 2048 px: one CLI run per cell, its max RSS.

Usage:
    .venv/bin/python benchmarks/memory.py [--sizes 512 1024 2048] [--timeout 900] [--out memory.json]

Each cell is a fresh ``atelier stylize`` (or ``atelier translate``) subprocess on
``../shared/data/content/golden_gate.jpg`` (longest side ``--size``) with ``la_muse.jpg`` as the
style; its peak resident set size is the child's own ``ru_maxrss`` (``os.wait4``), so it
includes Python, torch and the weights (the ``baseline`` row: ``import atelier.cli, torch``
alone). The optimisation methods run 1 iteration per level (``gatys``: every level of its
pyramid; ``photo``: 1 stage-1 and 1 refinement iteration), to keep 2048 px within minutes.
That run holds one iteration's activations and gradients at the finest level but not L-BFGS's
history, which fills over the first ``LBFGS_HISTORY`` (100) iterations: two image-sized float32
vectors per iteration, 2.4 kB per pixel after 100. Their cells therefore also give the full run,
``measured + history`` (checked against a whole default run at 512 px in docs/BENCHMARKS.md).
A run the method refuses (memory bound, ``pipelines.memory.check_fits``) records its one-line
message; one past ``--timeout`` records that instead. Each child runs with 1 thread
(``OMP_NUM_THREADS=1``), so memory does not depend on the thread count of a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT, rel

#: The 14 registered methods and the two translation models: how each is run (CLI arguments after the content).
RUNS: dict[str, list[str]] = {
    "adain": ["--method", "adain"],
    "avatar": ["--method", "avatar"],
    "efdm": ["--method", "efdm"],
    "iecontraast": ["--method", "iecontraast"],
    "lst": ["--method", "lst"],
    "sanet": ["--method", "sanet"],
    "style_swap": ["--method", "style_swap"],
    "wct": ["--method", "wct"],
    "gatys": ["--method", "gatys", "--iterations", "1"],
    "photo": ["--method", "photo", "--iterations", "1", "--refine-iterations", "1"],
    "johnson": ["--model", "wave"],
    "multimodal": ["--model", "multimodal_wave"],
    "style_aware": ["--model", "kaokore"],
    "disentangle": ["--model", "chinese_landscape_dis"],
    "cyclegan": ["translate", "--model", "summer2winter"],
    "ugatit": ["translate", "--model", "summer2winter_ugatit_light"],
}
STYLE_FREE = {"johnson", "multimodal", "style_aware", "disentangle", "cyclegan", "ugatit"}
OPTIMIZATION = {"gatys", "photo"}


def lbfgs_history_mib(name: str, output: Path) -> float:
    """L-BFGS's history at the end of the method's default finest level, at the output's size.

    One pair of float32 RGB images per iteration of that level, up to ``LBFGS_HISTORY`` pairs
    (gatys: its final ``iterations``; photo: its ``refine_iterations`` at full size).
    """
    from PIL import Image

    from atelier.methods.gatys import GatysConfig
    from atelier.methods.photo import PhotoConfig
    from atelier.optim.loop import lbfgs_history_bytes

    if name == "gatys":
        gatys = GatysConfig()
        steps = gatys.final_iterations or gatys.iterations
    else:
        steps = PhotoConfig().refine_iterations
    with Image.open(output) as image:
        width, height = image.size
    return lbfgs_history_bytes(width * height, steps) / 2**20


def run_child(command: list[str], timeout: float, env: dict[str, str]) -> tuple[int | None, float, float, str]:
    """``(exit status or None on timeout, max RSS in MiB, seconds, last stderr line)`` of one child."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        status: int | None = None
        while True:
            pid, wait_status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(wait_status)
                break
            if time.perf_counter() - start > timeout:
                child.kill()
                _, _, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        child.returncode = status if status is not None else -9  # already reaped: keep Popen quiet
        err.seek(0)
        lines = [line for line in err.read().decode(errors="replace").splitlines() if line.strip()]
    return status, usage.ru_maxrss / 1024, time.perf_counter() - start, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--methods", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--content", type=Path, default=DATA / "content" / "golden_gate.jpg")
    parser.add_argument("--style", type=Path, default=DATA / "style" / "la_muse.jpg")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run before it is recorded as too slow")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    python = sys.executable
    folder = Path(tempfile.mkdtemp(prefix="atelier-memory-"))
    print(f"# peak RSS per run (MiB), content {rel(args.content)}, style {rel(args.style)}, "
          f"ATELIER_MEMORY_GB={os.environ.get('ATELIER_MEMORY_GB', 'unset (70% of available)')}", flush=True)
    _, baseline, _, _ = run_child([python, "-c", "import torch, atelier.cli"], 120, env)
    print(f"baseline (import torch, atelier.cli): {baseline:.0f} MiB", flush=True)
    results: dict[str, dict[str, dict[str, object]]] = {"baseline": {"any": {"peak_mib": round(baseline)}}}
    for name in args.methods:
        results[name] = {}
        for size in args.sizes:
            extra = RUNS[name]
            subcommand = ["translate"] if extra[0] == "translate" else ["stylize"]
            options = extra[1:] if extra[0] == "translate" else extra
            style = [] if name in STYLE_FREE else ["--style", str(args.style)]
            out = folder / f"{name}_{size}.png"
            command = [python, "-m", "atelier.cli", *subcommand, str(args.content), *style, *options,
                       "--size", str(size), "-q", "--overwrite", "-o", str(out)]
            status, peak, seconds, last = run_child(command, args.timeout, env)
            if status == 0:
                cell = {"peak_mib": round(peak), "seconds": round(seconds, 1)}
                shown = f"{peak:7.0f} MiB  ({seconds:.0f} s)"
                if name in OPTIMIZATION:
                    cell["full_run_mib"] = round(peak + lbfgs_history_mib(name, out))
                    shown += f"; full run {cell['full_run_mib']} MiB with L-BFGS's history"
            elif status is None:
                cell = {"timeout_s": args.timeout, "peak_mib_so_far": round(peak)}
                shown = f"stopped after {args.timeout:.0f} s (peak so far {peak:.0f} MiB)"
            else:
                cell = {"status": status, "message": last, "peak_mib": round(peak)}
                shown = f"exit {status}: {last}"
            results[name][str(size)] = cell
            print(f"{name:12s} {size:5d} px  {shown}", flush=True)
            if args.out is not None:
                args.out.write_text(json.dumps(results, indent=1))
            if status is None:  # larger sizes would only take longer
                break


if __name__ == "__main__":
    main()
