"""``--engine local``: a pool of processes on this machine, each holding its own loaded method.

Chunks of jobs go to the workers with at most two chunks in flight per worker, so memory stays
flat whatever the folder size; records come back as chunks finish. One worker runs in this
process (no pool to start). Ctrl-C stops handing out chunks, waits for those in flight and
returns their records too, so nothing made is lost from the manifest.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import Any

from .plan import Job
from .worker import BatchSettings, MethodSpec, Worker

__all__ = ["run_local"]

_WORKER: Worker | None = None


def _start(spec: MethodSpec, settings: BatchSettings) -> None:
    """Pool initializer: build this process's method once; Ctrl-C is the parent's to handle."""
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = Worker(spec, settings)


def _work(chunk: Sequence[Job]) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _WORKER(chunk)


def run_local(chunks: Sequence[Sequence[Job]], spec: MethodSpec, settings: BatchSettings,
              workers: int) -> Iterator[list[dict[str, Any]]]:
    """Yield the records of every chunk (in the order chunks finish)."""
    if workers <= 1 or len(chunks) <= 1:
        # In this process: its thread count is the caller's to choose.
        worker = Worker(spec, replace(settings, threads=0))
        for chunk in chunks:
            yield worker(chunk)
        return
    # spawn, not fork: a forked copy of a process that has run OpenMP threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start,
                             initargs=(spec, settings)) as pool:
        queue = iter(chunks)
        running: set[Future] = set()
        try:
            for chunk in queue:
                running.add(pool.submit(_work, chunk))
                if len(running) >= 2 * workers:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except KeyboardInterrupt:
            # The chunks in flight finish (their outputs are written) and are recorded.
            for future in running:
                if not future.cancel():
                    try:
                        yield future.result()
                    except KeyboardInterrupt:
                        break
            raise
