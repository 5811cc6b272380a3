"""Padding: images to a multiple of a network's stride, and reflection-padded 3x3 convolutions.

The convolutions also come fused with a nearest 2x upsampling, as one transposed convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_bchw

__all__ = ["pad_to_multiple", "reflect_conv3x3", "upsample_reflect_conv3x3"]


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


#: Which of a 3x3 kernel's taps (columns) fall on which of the four taps (rows) of the equivalent
#: stride-2 transposed convolution's kernel, along one axis (see :func:`upsample_reflect_conv3x3`).
_UPSAMPLE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def upsample_reflect_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``conv2d(reflection_pad(upsample_nearest_2x(x), 1), weight, bias)`` as one transposed convolution.

    ``x`` is ``(B, C_in, H, W)``, ``weight`` ``(C_out, C_in, 3, 3)``; returns ``(B, C_out, 2H, 2W)``.
    The decoders' resize-convolution (Odena, Dumoulin, Olah 2016) without the upsampled copy and
    with 2.25x fewer multiply-adds: after a nearest 2x upsampling, the three taps of a 3x3 kernel
    fall on only two source pixels per output pixel, along each axis. An even output row 2i reads
    source rows i-1 (tap 0) and i (taps 1 and 2); an odd row 2i+1 reads i (taps 0 and 1) and i+1
    (tap 2). That is a stride-2 transposed convolution with padding 1 whose 4-tap kernel is
    ``(w2, w1 + w2, w0 + w1, w0)`` per axis, 16 instead of 36 products per source pixel and
    output channel. Reflecting the upsampled map by one pixel repeats its edge, which is the
    source map's edge row, so the source is padded by replication and the result cropped.
    Measured with bf16 channels-last maps on this project's CPU: 2–3x faster than upsampling and
    then convolving (docs/BENCHMARKS.md). Same values up to rounding (the kernel's sums are taken
    before the products); differentiable.
    """
    check_bchw(x, "x")
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"weight must be (C_out, C_in, 3, 3), got {tuple(weight.shape)}")
    taps = torch.tensor(_UPSAMPLE_TAPS, dtype=weight.dtype, device=weight.device)
    # (C_out, C_in, 3, 3) -> the transposed convolution's (C_in, C_out, 4, 4).
    kernel = torch.einsum("at,bu,oitu->ioab", taps, taps, weight)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv_transpose2d(padded, kernel, bias, stride=2, padding=1)[..., 2:-2, 2:-2]
