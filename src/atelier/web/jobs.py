"""A bounded job queue with progress, cancellation and a memory check.

A fixed number of worker threads, a limit on the jobs waiting or running, progress and ETA from
the runs' own :class:`~atelier.progress.Progress` bars, cancellation, and a memory check before a
job is accepted.

Plain Python (no web framework), so the queue's behaviour is tested without a server.
"""

from __future__ import annotations

import functools
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AtelierError
from ..pipelines.memory import memory_budget
from ..progress import Progress, observe

__all__ = ["InsufficientMemoryError", "Job", "JobInterrupted", "JobQueue", "QueueFullError"]

STATES = ("queued", "running", "done", "failed", "cancelled")


class QueueFullError(AtelierError):
    """Every slot of the job queue is taken (HTTP 503: try again later)."""


class InsufficientMemoryError(AtelierError):
    """A job's memory estimate is above what is free now (HTTP 503, with the numbers)."""


class JobInterrupted(KeyboardInterrupt):
    """A cancelled run leaving its job, with its best image so far (gatys) or None.

    A KeyboardInterrupt, as the progress observer's cancel is: every loop that stops cleanly on
    Ctrl-C stops the same way on a cancel.
    """

    def __init__(self, image: Any = None) -> None:
        super().__init__()
        self.image = image


@dataclass
class Job:
    """One unit of work and what a client can see of it (``public()``)."""

    kind: str
    run: Callable[[Job], Any]
    need_bytes: int = 0
    #: The CLI command that reproduces the result.
    command: str = ""
    #: Files the command names (painted masks as PNG bytes), by file name: ``GET .../files/{name}``.
    files: dict[str, bytes] = field(default_factory=dict)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = "queued"
    progress: float = 0.0
    eta_s: float | None = None
    stage: str = ""
    error: str | None = None
    result: Any = None
    created: float = field(default_factory=time.time)
    finished_at: float | None = None
    workdir: Path | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    #: Where :meth:`make_workdir` makes the job's folder (None: the system's temporary folder).
    root: Path | None = None
    #: Set by the runner: the latest intermediate image (gatys), for ``GET /api/jobs/{id}/intermediate``.
    intermediate: Callable[[], Any] | None = None

    def make_workdir(self) -> Path:
        """A private temporary folder for this job, inside the queue's folder when it has one.

        Removed when the job is forgotten or the server stops.
        """
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"atelier-job-{self.id}-", dir=self.root))
        return self.workdir

    def public(self) -> dict[str, Any]:
        """The job's state as JSON."""
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": round(self.progress, 4),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1), "stage": self.stage,
                "error": self.error, "command": self.command, "files": sorted(self.files),
                "has_intermediate": self.intermediate is not None and self.state == "running"}


class JobQueue:
    """``workers`` threads run jobs in order; at most ``limit`` jobs wait or run at once.

    Args:
        workers: jobs run at the same time (default: one per core; each heavy job uses a core's
            worth of torch threads at best on a CPU).
        limit: jobs waiting or running; :meth:`submit` beyond it raises :class:`QueueFullError`.
        history: finished jobs kept for polling and download; older ones are forgotten (and their
            temporary files removed).
        history_bytes: and at most this many bytes of their results (full-precision images: 24 MB
            at 2048 x 1536); the oldest are forgotten first.
        budget: bytes the running jobs may use together (default: :func:`memory_budget` at submit).
        root: the folder of the jobs' temporary folders (the server's own, removed when it stops).
    """

    def __init__(self, workers: int = 1, limit: int = 20, history: int = 50, history_bytes: int = 256 * 2**20,
                 budget: Callable[[], int] = memory_budget, root: Path | None = None) -> None:
        if workers < 1 or limit < 1:
            raise ValueError("workers and limit must be >= 1")
        self.limit = limit
        self.history = history
        self.history_bytes = history_bytes
        self.root = root
        self.budget = budget
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"atelier-job-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def active(self) -> list[Job]:
        """Jobs queued or running."""
        with self._lock:
            return [j for j in self._jobs.values() if j.state in ("queued", "running")]

    def submit(self, kind: str, run: Callable[[Job], Any], *, need_bytes: int = 0, command: str = "",
               files: dict[str, bytes] | None = None) -> Job:
        """Queue ``run(job)``; its return value becomes ``job.result``.

        Raises:
            QueueFullError: ``limit`` jobs are waiting or running.
            InsufficientMemoryError: ``need_bytes`` plus the running jobs' estimates exceed the budget.
        """
        job = Job(kind=kind, run=run, need_bytes=need_bytes, command=command, files=dict(files or {}), root=self.root)
        with self._lock:
            if self._closed:
                raise QueueFullError("the server is stopping; try again when it is back")
            active = [j for j in self._jobs.values() if j.state in ("queued", "running")]
            if len(active) >= self.limit:
                raise QueueFullError(f"the job queue is full ({len(active)} of {self.limit} jobs waiting or running); "
                                     "try again in a moment")
            if need_bytes:
                taken = sum(j.need_bytes for j in active)
                budget = self.budget()
                if need_bytes + taken > budget:
                    raise InsufficientMemoryError(
                        f"this job needs about {need_bytes / 2**30:.2f} GiB and the jobs already accepted "
                        f"{taken / 2**30:.2f} GiB, above the {budget / 2**30:.2f} GiB available; use a smaller "
                        "size, or wait for the running jobs")
            self._jobs[job.id] = job
            self._forget_old()
        self._pending.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None (unknown or forgotten)."""
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop.

        A queued job never starts, a running one stops at its next progress update (gatys keeps its
        best image so far).
        """
        job = self.get(job_id)
        if job is not None:
            job.cancel_requested.set()
        return job

    def close(self) -> None:
        """Cancel every job, stop the workers and remove every job's temporary files."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_requested.set()
        for _ in self._threads:
            self._pending.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        for job in jobs:
            _remove(job)

    def _forget_old(self) -> None:
        """Forget the oldest finished jobs beyond ``history`` jobs or ``history_bytes`` of results.

        Called with the lock held.
        """
        done = [j for j in self._jobs.values() if j.finished.is_set()]
        total = sum(_result_bytes(j.result) for j in done)
        for index, job in enumerate(done):
            if len(done) - index <= self.history and total <= self.history_bytes:
                break
            total -= _result_bytes(job.result)
            del self._jobs[job.id]
            _remove(job)

    def _work(self) -> None:
        for job in iter(self._pending.get, None):
            if job.cancel_requested.is_set():
                self._finish(job, "cancelled", error="cancelled before it started")
                continue
            job.state = "running"
            started = time.perf_counter()
            try:
                with observe(functools.partial(self._on_progress, job)):
                    job.result = job.run(job)
            except KeyboardInterrupt as stop:  # cancel (see _on_progress); gatys hands its best image so far
                job.result = getattr(stop, "image", None)
                self._finish(job, "cancelled", error="cancelled")
            except AtelierError as error:
                self._finish(job, "failed", error=str(error))
            except Exception as error:  # a failing job must not take the server down
                self._finish(job, "failed", error=f"internal error ({error.__class__.__name__}: {error}); "
                                                  "please report it")
            else:
                if job.cancel_requested.is_set() and getattr(job.result, "interrupted", False):
                    self._finish(job, "cancelled", error="cancelled")
                else:
                    job.progress, job.eta_s = 1.0, 0.0
                    self._finish(job, "done")
            job.stage = f"{job.stage} ({time.perf_counter() - started:.1f} s)".strip()

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()
        job.run = _finished  # drop the closure: its inputs (images, masks) are not kept with the history
        with self._lock:  # a waiter woken by `finished` sees the history already trimmed (get() takes the lock)
            job.finished.set()
            self._forget_old()

    @staticmethod
    def _on_progress(job: Job, bar: Progress, values: dict[str, float]) -> None:
        if job.cancel_requested.is_set():
            raise KeyboardInterrupt  # the loops stop on it as on Ctrl-C
        job.progress = min(1.0, bar.count / bar.total) if bar.total else 0.0
        eta = bar.eta()
        job.eta_s = eta if eta < float("inf") else None
        job.stage = bar.label.strip()


def _result_bytes(result: Any) -> int:
    """Memory held by a job's result: a tensor's bytes, a PIL image's pixels (3 bytes each)."""
    if hasattr(result, "nbytes"):
        return int(result.nbytes)
    if hasattr(result, "width") and hasattr(result, "height"):
        return int(result.width * result.height * 3)
    return 0


def _finished(job: Job) -> Any:
    raise RuntimeError("this job has already run")


def _remove(job: Job) -> None:
    if job.workdir is not None:
        shutil.rmtree(job.workdir, ignore_errors=True)

