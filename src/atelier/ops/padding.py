"""Padding: images to a multiple of a network's stride, and reflection-padded 3x3 convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_bchw

__all__ = ["pad_to_multiple", "reflect_conv3x3"]


def pad_to_multiple(image: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad ``image`` ``(B, C, H, W)`` on the right and bottom so both sides are multiples of ``multiple``.

    Returns the padded image and the ``F.pad`` tuple (to pad masks alike).

    Reflection padding continues the picture without a seam; when the pad is not smaller than
    the image (reflection needs that), the edge pixels are replicated instead.
    """
    check_bchw(image, "image")
    height, width = image.shape[-2:]
    pad = (0, -width % multiple, 0, -height % multiple)
    if not any(pad):
        return image, pad
    return F.pad(image, pad, mode="reflect" if max(pad) < min(height, width) else "replicate"), pad


def reflect_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``conv2d(reflection_pad(x, 1), weight, bias)`` without the padded copy of ``x``.

    ``x`` is ``(B, C_in, H, W)``, ``weight`` ``(C_out, C_in, 3, 3)``; returns ``(B, C_out, H, W)``.
    The interior of a reflection-padded convolution equals that of a zero-padded one; only the
    outermost rows and columns differ. So this runs the zero-padded convolution (padding inside
    the oneDNN kernel, no copy) and recomputes the four one-pixel borders from three-row
    (three-column) reflected strips. The padded copy it avoids cost as much as a sixth of the
    convolution at 64 channels, and under CPU autocast ``reflection_pad2d`` runs in float32, so
    the copy also cast bf16 activations to float32 and back (see docs/BENCHMARKS.md). Same values as
    the padded convolution (same products; the border sums may round differently in the last bit);
    differentiable. Sides under 2 px (which reflection cannot pad) take the padded path.
    """
    check_bchw(x, "x")
    height, width = x.shape[-2:]
    if weight.shape[-2:] != (3, 3) or min(height, width) < 2:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias)
    out = F.conv2d(x, weight, bias, padding=1)
    # Rows -1 and H reflect rows 1 and H-2; each strip is padded by reflection in the other direction.
    rows = torch.tensor([1, 0, 1, height - 2, height - 1, height - 2], device=x.device)
    strips = x.index_select(2, rows)
    strips = F.pad(strips, (1, 1, 0, 0), mode="reflect").to(x.dtype)
    border = F.conv2d(torch.cat([strips[:, :, :3], strips[:, :, 3:]]), weight, bias)  # (2B, C_out, 1, W)
    batch = x.shape[0]
    out[:, :, :1] = border[:batch]
    out[:, :, -1:] = border[batch:]
    columns = torch.tensor([1, 0, 1, width - 2, width - 1, width - 2], device=x.device)
    strips = x.index_select(3, columns)
    strips = F.pad(strips, (0, 0, 1, 1), mode="reflect").to(x.dtype)
    border = F.conv2d(torch.cat([strips[..., :3], strips[..., 3:]]), weight, bias)  # (2B, C_out, H, 1)
    out[..., :1] = border[:batch]
    out[..., -1:] = border[batch:]
    return out
