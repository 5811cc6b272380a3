"""Choosing the device and the numeric precision, shared by inference and training."""

from __future__ import annotations

import torch

from .errors import OptionError

__all__ = ["SEED_RANGE", "check_seed", "resolve_device", "resolve_precision"]


def resolve_device(device: str | torch.device) -> str:
    """Validate a device string (cpu, cuda, cuda:N, mps or auto) against what this machine has.

    ``"auto"`` picks CUDA when available.

    Raises:
        OptionError: an unknown device, or one this machine does not have.
    """
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise OptionError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    if parsed.type == "cpu" and parsed.index not in (None, 0):
        raise OptionError(f"device {device!r}: there is one CPU device; use --device cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise OptionError(f"device {device!r} asked for, but PyTorch sees {count} CUDA GPU(s) "
                              f"(cuda:0 to cuda:{count - 1}); pick one of those")
    if parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise OptionError(f"device {device!r} asked for, but PyTorch sees no Apple MPS GPU; use --device cpu")
        if parsed.index not in (None, 0):
            raise OptionError(f"device {device!r}: there is one MPS device; use --device mps")
    return device


#: The seeds ``torch.manual_seed`` accepts.
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(seed: object) -> int | None:
    """Validate a random seed: None or a whole number within :data:`SEED_RANGE`.

    Raises:
        OptionError: not a whole number, or out of range.
    """
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise OptionError(f"seed must be a whole number, got {seed!r}")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise OptionError(f"seed {seed} is out of range; use a whole number from 0 to {SEED_RANGE[1]}")
    return seed


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` where the device computes bfloat16 natively, else ``"fp32"``."""
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"
