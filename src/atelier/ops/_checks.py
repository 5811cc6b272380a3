"""Shape checks shared by the ops (kornia-style: fail early with the expected shape)."""

from __future__ import annotations

from torch import Tensor

from ..errors import OptionError


def check_bchw(x: Tensor, name: str = "input", channels: int | None = None) -> None:
    """Raise :class:`OptionError` unless ``x`` is ``(B, C, H, W)`` (with ``C == channels``)."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise OptionError(f"{name} must have shape {want}, got {tuple(x.shape)}")
