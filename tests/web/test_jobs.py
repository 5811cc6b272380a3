"""The bounded job queue: limits, memory check, progress, cancel, failures, clean-up."""

from __future__ import annotations

import threading
import time

import pytest

from atelier.errors import OptionError
from atelier.progress import Progress, observe
from atelier.web.jobs import InsufficientMemoryError, JobQueue, QueueFullError


def _wait(job, timeout=10.0):
    assert job.finished.wait(timeout), f"job still {job.state}"
    return job


def test_observe_sees_every_update_even_of_a_silent_bar_and_only_on_its_thread():
    seen = []
    bar = Progress(4, enabled=False)
    with observe(lambda b, values: seen.append((b.count, values))):
        bar.update(1, loss=2.0)
        other = threading.Thread(target=lambda: bar.update(2))
        other.start()
        other.join()
    bar.update(3)
    assert seen == [(1, {"loss": 2.0})]


def test_a_running_job_reports_progress_and_stops_at_cancel():
    queue = JobQueue(workers=1, limit=2)
    started = threading.Event()

    def run(job):
        bar = Progress(1000, enabled=False)
        for step in range(1, 1001):
            bar.update(step)
            started.set()
            time.sleep(0.005)
        return "finished"

    job = queue.submit("loop", run)
    assert started.wait(5)
    time.sleep(0.1)
    assert 0 < job.progress < 1 and job.state == "running"
    queue.cancel(job.id)
    assert _wait(job).state == "cancelled" and job.result is None
    queue.close()


def test_the_queue_is_bounded_and_a_failing_job_does_not_stop_the_workers():
    queue = JobQueue(workers=1, limit=2)
    gate = threading.Event()
    first = queue.submit("wait", lambda job: gate.wait(5))
    second = queue.submit("fail", lambda job: (_ for _ in ()).throw(OptionError("bad option value")))
    with pytest.raises(QueueFullError, match="2 of 2 jobs"):
        queue.submit("third", lambda job: 1)
    gate.set()
    assert _wait(first).state == "done"
    assert _wait(second).state == "failed" and second.error == "bad option value"
    crash = _wait(queue.submit("crash", lambda job: 1 / 0))
    assert crash.state == "failed" and "ZeroDivisionError" in crash.error
    assert _wait(queue.submit("after", lambda job: 42)).result == 42
    queue.close()


def test_a_job_above_the_memory_budget_is_refused_with_the_numbers():
    queue = JobQueue(workers=1, limit=4, budget=lambda: 2**30)
    with pytest.raises(InsufficientMemoryError, match=r"needs about 1.50 GiB .* above the 1.00 GiB available"):
        queue.submit("big", lambda job: 1, need_bytes=3 * 2**29)
    assert _wait(queue.submit("small", lambda job: 1, need_bytes=2**20)).state == "done"
    queue.close()


def test_close_cancels_queued_jobs_and_removes_their_folders():
    queue = JobQueue(workers=1, limit=4)
    gate = threading.Event()
    folders = []

    def run(job):
        folders.append(job.make_workdir())
        (folders[-1] / "part.png").write_bytes(b"x")
        gate.wait(5)

    running = queue.submit("first", run)
    waiting = queue.submit("second", lambda job: 1)
    while not folders:
        time.sleep(0.01)
    closing = threading.Thread(target=queue.close)
    closing.start()
    assert waiting.cancel_requested.wait(5)  # close() cancels first, then lets the running job end
    gate.set()
    closing.join(10)
    assert running.state == "done" and waiting.state == "cancelled"
    assert not folders[0].exists()


def test_the_history_is_bounded_in_jobs_and_in_bytes_of_results():
    import torch

    queue = JobQueue(workers=1, limit=8, history=3, history_bytes=2 * 4 * 1000)
    small = [_wait(queue.submit("small", lambda job: 1)) for _ in range(4)]
    assert queue.get(small[0].id) is None and all(queue.get(j.id) for j in small[1:])  # at most 3 kept
    big = [_wait(queue.submit("big", lambda job: torch.zeros(1000))) for _ in range(3)]  # 4000 bytes each
    assert queue.get(big[0].id) is None and queue.get(big[1].id) and queue.get(big[2].id)  # 8000 bytes kept
    queue.close()
