"""Running a fully convolutional network on overlapping tiles, to bound memory.

Each tile is extended by a halo of context on every side; only its core goes into the output,
so tiles meet without seams wherever the halo covers the network's receptive field (68 px for
VGG-19 up to relu4_1, a few feature pixels for the decoders).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..errors import OptionError

__all__ = ["tiled"]


def tiled(fn: Callable[[Tensor], Tensor], x: Tensor, *, scale: float, tile: int, halo: int) -> Tensor:
    """``fn(x)`` computed tile by tile.

    Args:
        fn: maps ``(B, C, h, w)`` to ``(B, C', floor(h * scale), floor(w * scale))``.
        x: ``(B, C, H, W)``.
        scale: output size per input pixel (1/8 for an encoder to relu4_1, 8 for its decoder).
        tile: core size of a tile in input pixels; with ``halo``, a multiple of ``1 / scale``
            when ``scale < 1`` so that tiles align with the output grid.
        halo: context added on each side of a tile, in input pixels.

    Returns:
        ``(B, C', floor(H * scale), floor(W * scale))``, equal to ``fn(x)`` up to border
        effects that the halo keeps outside the cores.
    """
    if x.ndim != 4:
        raise OptionError(f"tiled input must be (B, C, H, W), got {tuple(x.shape)}")
    stride = round(1 / scale) if scale < 1 else 1
    if tile < stride or tile % stride or halo % stride:
        raise OptionError(f"tile ({tile}) and halo ({halo}) must be multiples of {stride}")
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    out_h, out_w = int(height * scale), int(width * scale)
    out: Tensor | None = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            t0, l0 = max(0, top - halo), max(0, left - halo)
            b0, r0 = min(height, top + tile + halo), min(width, left + tile + halo)
            y = fn(x[..., t0:b0, l0:r0])
            oy, ox = int(top * scale), int(left * scale)
            ch = min(int(min(tile, height - top) * scale), out_h - oy)
            cw = min(int(min(tile, width - left) * scale), out_w - ox)
            cy, cx = int((top - t0) * scale), int((left - l0) * scale)
            if out is None:
                out = y.new_empty(*y.shape[:2], out_h, out_w)
            out[..., oy : oy + ch, ox : ox + cw] = y[..., cy : cy + ch, cx : cx + cw]
    assert out is not None
    return out
