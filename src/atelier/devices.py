"""Choosing the device and the numeric precision, shared by inference and training."""

from __future__ import annotations

import torch

from .errors import OptionError

__all__ = ["resolve_device", "resolve_precision"]


def resolve_device(device: str | torch.device) -> str:
    """Validate a device string; ``"auto"`` picks CUDA when available."""
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise OptionError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return device


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
