"""``atelier batch``: plan, skip what the manifest says is done, run an engine, record as it goes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AtelierError, OptionError
from ..io.atomic import check_writable_folder
from ..progress import Progress, format_duration
from .plan import Manifest, list_images, plan_jobs
from .worker import BatchSettings, MethodSpec

__all__ = ["ENGINES", "BatchError", "BatchInterrupted", "BatchResult", "cores", "run_batch"]

ENGINES = ("local", "ray")


class BatchError(AtelierError):
    """The batch cannot go on (a worker process died); what finished is in the manifest."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a batch; ``result`` counts what was done and recorded."""

    def __init__(self, result: BatchResult) -> None:
        super().__init__(f"interrupted after {result.done} new images; run the same command to go on")
        self.result = result


@dataclass
class BatchResult:
    """What one run did (images already done by earlier runs count in ``skipped``)."""

    planned: int
    skipped: int
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    manifest: Path = field(default_factory=Path)

    @property
    def images_per_second(self) -> float:
        """Images finished (done or failed) per wall-clock second of this run."""
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_batch(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    styles_dir: str | os.PathLike,
    spec: MethodSpec,
    *,
    mode: str = "random",
    seed: int = 0,
    engine: str = "local",
    workers: int = 0,
    address: str | None = None,
    size: int | None = 512,
    device: str = "cpu",
    max_pixels: int | None = None,
    batch_size: int = 8,
    suffix: str = ".png",
    progress: bool = True,
) -> BatchResult:
    """Stylize every image below ``input_dir`` into a mirrored tree below ``output_dir``.

    Jobs come from :func:`~atelier.batch.plan.plan_jobs`; those the manifest records as done
    with the same options are skipped; each finished image is appended to the manifest as soon
    as its chunk returns. Failures are recorded with their reason and do not stop the run.

    Args:
        input_dir: folder of content images (searched recursively).
        output_dir: where the mirrored tree and ``manifest.jsonl`` go.
        styles_dir: folder of style images (searched recursively).
        spec: the method and its options (every worker builds it once).
        mode: style assignment, one of :data:`~atelier.batch.plan.ASSIGNMENTS`.
        seed: seed of the assignment and of each image's random methods.
        engine: ``local`` (process pool) or ``ray`` (Ray Data actors).
        workers: processes (local) or actors (ray); 0 = one per core.
        address: Ray cluster address (ray engine only; None: a local Ray or ``$RAY_ADDRESS``).
        size: longest side of the outputs in px (None: the input's size).
        device: where the networks run (``cuda`` with Ray: one GPU per actor, on whichever node).
        max_pixels: refuse inputs above this many pixels (recorded as failed); None: the default limit.
        batch_size: images stacked into one network call where their sizes match.
        suffix: output format (``.png``, ``.jpg``, ...).
        progress: show a progress line with ETA.

    Raises:
        OptionError, ImageError: bad options or folders (before any work).
        BatchInterrupted: Ctrl-C; what finished is recorded, the same call goes on from there.
    """
    if engine not in ENGINES:
        raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if workers < 0 or batch_size < 1:
        raise OptionError("--workers must be >= 0 (0: one per core) and --batch-size >= 1")
    if address and engine != "ray":
        raise OptionError("--address names a Ray cluster; add --engine ray")
    if not spec.build().uses_style_images:  # bad method options fail here, before any process starts
        raise OptionError(f"method {spec.name!r} holds its own styles; atelier batch needs a method that takes "
                          "style images (see `atelier methods`)")
    inputs, styles = Path(input_dir), Path(styles_dir)
    output = Path(output_dir)
    if output.resolve() == inputs.resolve() or inputs.resolve() in output.resolve().parents:
        raise OptionError(f"{output}: the output folder must not be inside the input folder (its outputs would "
                          "become inputs of the next run)")
    check_writable_folder(output)
    jobs = plan_jobs(list_images(inputs, "inputs"), list_images(styles, "styles"), mode, seed, suffix)
    gpu = device.startswith("cuda")
    # On a GPU the default is one local process (they would share the one device) or one GPU per Ray actor.
    count = workers or (1 if gpu and engine == "local" else cores())
    settings = BatchSettings(str(inputs.resolve()), str(styles.resolve()), str(output.resolve()), size=size,
                             device=device, batch_size=batch_size, threads=max(1, cores() // count),
                             **({"max_pixels": max_pixels} if max_pixels else {}))
    manifest = Manifest(output)
    pending = manifest.pending(jobs, settings.manifest_options(spec))
    result = BatchResult(planned=len(jobs), skipped=len(jobs) - len(pending), manifest=manifest.path)
    if not pending:
        if progress:
            print(f"all {len(jobs)} images are done already (manifest {manifest.path})", file=sys.stderr)
        return result
    # Several chunks per worker, so a slow chunk does not leave the others idle at the end.
    chunk = max(1, min(batch_size * 2, -(-len(pending) // (2 * count))))
    stream: Iterator[list[dict[str, Any]]]
    if engine == "ray":
        from .ray_engine import run_ray

        stream = run_ray(pending, spec, settings, count, address=address, chunk=chunk, quiet=not progress,
                         gpus_per_worker=1.0 if gpu else 0.0)
    else:
        from .local import run_local

        chunks = [pending[i : i + chunk] for i in range(0, len(pending), chunk)]
        stream = run_local(chunks, spec, settings, count)
    bar = Progress(len(pending), label=f"batch {engine} x{count} ", unit="img", enabled=progress)
    start = time.perf_counter()
    try:
        for records in stream:
            manifest.append(records)
            result.done += sum(r["status"] == "done" for r in records)
            result.failed += sum(r["status"] != "done" for r in records)
            bar.update(result.done + result.failed)
    except KeyboardInterrupt:
        result.seconds = time.perf_counter() - start
        bar.close()
        raise BatchInterrupted(result) from None
    except BrokenProcessPool:
        bar.close()
        raise BatchError(f"a worker process died (out of memory?) after {result.done} new images; what finished is "
                         "in the manifest: run the same command again, with fewer --workers or a smaller "
                         "--batch-size") from None
    result.seconds = time.perf_counter() - start
    bar.close(f"{result.done} done, {result.failed} failed, {result.skipped} done before; "
              f"{result.images_per_second:.2f} img/s in {format_duration(result.seconds)}; manifest {manifest.path}")
    return result
