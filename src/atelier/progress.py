"""A dependency-free progress line: iteration, losses, rate and ETA, on stderr."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Progress", "format_duration", "observe"]

#: The observer of the Progress bars updated on this thread (see :func:`observe`).
_observers = threading.local()
Observer = Callable[["Progress", dict[str, float]], None]


@contextmanager
def observe(callback: Observer) -> Iterator[None]:
    """Call ``callback(progress, values)`` on every :meth:`Progress.update` of this thread in the block.

    The callback runs whether or not the bar prints anything.
    This is how a caller that did not create the bar (the web server's job queue) follows a
    long run. The callback may raise ``KeyboardInterrupt`` to stop the run the way Ctrl-C does:
    the optimisation loop then returns its best image so far and a video leaves no file.
    """
    previous = getattr(_observers, "callback", None)
    _observers.callback = callback
    try:
        yield
    finally:
        _observers.callback = previous


def format_duration(seconds: float) -> str:
    """``75.2 -> '1m15s'``; ``3700 -> '1h01m'``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Reports ``label it/total  loss ...  rate  ETA``.

    On a terminal the line is redrawn in place; otherwise (logs, CI) a line is printed at
    most every ``interval`` seconds and at the end. ``enabled=False`` prints nothing.
    """

    def __init__(self, total: int, *, label: str = "", unit: str = "it", enabled: bool = True,
                 stream: TextIO | None = None, interval: float = 5.0):
        self.total = total
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.count = 0
        self.start = time.perf_counter()
        self._base_count, self._base_time = 0, self.start
        self._last_print = -float("inf")
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def rebase(self, count: int | None = None) -> None:
        """Measure the rate from now on, optionally moving progress to ``count`` first.

        E.g. when a multi-scale run moves to a larger size.
        """
        if count is not None:
            self.count = count
        self._base_count, self._base_time = self.count, time.perf_counter()

    def seconds_per_step(self) -> float:
        """Average seconds per step since the last :meth:`rebase` (``inf`` before a step)."""
        steps = self.count - self._base_count
        return (time.perf_counter() - self._base_time) / steps if steps > 0 else float("inf")

    def eta(self) -> float:
        """Seconds left at the current rate (``inf`` before the first step)."""
        return self.seconds_per_step() * (self.total - self.count)

    def update(self, count: int, **values: float) -> None:
        """Set progress to ``count`` of ``total`` and show ``values`` (losses)."""
        self.count = count
        observer = getattr(_observers, "callback", None)
        if observer is not None:
            observer(self, values)
        if not self.enabled:
            return
        now = time.perf_counter()
        done = count >= self.total
        if not (self._tty or done or now - self._last_print >= self.interval):
            return
        self._last_print = now
        per_step = self.seconds_per_step()
        rate = f"{per_step:.2f} s/{self.unit}" if per_step < float("inf") else ""
        shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        eta = "" if done or per_step == float("inf") else f" ETA {format_duration(self.eta())}"
        line = f"{self.label}{count}/{self.total} {self.unit} {shown} {rate}{eta}".rstrip()
        if self._tty:
            self.stream.write("\r\033[K" + line + ("\n" if done else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, message: str = "") -> None:
        """End the line (on a terminal) and print ``message`` if given."""
        if not self.enabled:
            return
        if self._tty and self.count < self.total:
            self.stream.write("\n")
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()
