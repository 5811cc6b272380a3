"""The memory bound every method keeps: how much a run may use, and the one refusal above it."""

from __future__ import annotations

import os

from ..errors import ImageTooLargeError, OptionError

__all__ = ["MAX_FRAME_BATCH", "check_fits", "frames_per_batch", "generator_bytes", "memory_budget"]

#: Most video frames stylized in one network call (beyond it a CPU gains nothing and latency grows).
MAX_FRAME_BATCH = 8


def memory_budget() -> int:
    """Bytes a stylization may use: ``$ATELIER_MEMORY_GB`` or 70% of the memory available now.

    Raises:
        OptionError: ``ATELIER_MEMORY_GB`` is not a positive number.
    """
    if "ATELIER_MEMORY_GB" in os.environ:
        value = os.environ["ATELIER_MEMORY_GB"]
        try:
            gigabytes = float(value)
        except ValueError:
            gigabytes = -1.0
        if not gigabytes > 0:
            raise OptionError(f"ATELIER_MEMORY_GB must be a positive number of GiB, got {value!r}")
        return int(gigabytes * 2**30)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * 0.7)
    except OSError:
        pass
    return 8 * 2**30


def check_fits(need: float, *, width: int, height: int, what: str, remedy: str = "use a smaller --size") -> None:
    """Refuse, before any work and with the numbers, a run whose estimate is above the budget.

    Args:
        need: the estimated peak bytes.
        width: the output's width in px (named in the message).
        height: the output's height in px.
        what: what needs the memory ("this generator", "adain's feature maps").
        remedy: what the user can change.

    Raises:
        ImageTooLargeError: ``need`` is above :func:`memory_budget`.
    """
    budget = memory_budget()
    if need > budget:
        raise ImageTooLargeError(
            f"{width}x{height} px needs about {need / 2**30:.1f} GiB for {what}, above the "
            f"{budget / 2**30:.1f} GiB available; {remedy} (or set ATELIER_MEMORY_GB)")


def frames_per_batch(per_frame: float | None, *, limit: int = MAX_FRAME_BATCH) -> int:
    """How many video frames one network call may take: half the budget over one frame's peak bytes.

    Half, because the decoded frames ahead, the outputs being blended and the encoder's buffers
    live beside the batch. 1 when ``per_frame`` is None (a method that runs frames one at a time)
    or one frame alone takes half the budget (its own check then refuses it or tiles).

    Args:
        per_frame: estimated peak bytes of stylizing one frame, or None.
        limit: the most frames per call.
    """
    if per_frame is None or per_frame <= 0:
        return 1
    return max(1, min(limit, int(memory_budget() / 2 // per_frame)))


def generator_bytes(height: int, width: int, channels: int) -> int:
    """Peak bytes of a fully convolutional generator at ``height`` x ``width`` px.

    Its live float32 maps at full resolution: the input, the last full-resolution convolution's
    input and output (``channels`` each, after the last upsampling) and the output; deeper
    stages are smaller. The estimate of the collection networks (style-aware, disentanglement).
    """
    return height * width * 4 * (2 * channels + 6)
