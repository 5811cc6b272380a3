"""3x3 convolutions by Winograd's minimal filtering, F(2x2, 3x3) (Lavin and Gray 2016).

A 3x3 convolution computes each 2x2 block of outputs from the 4x4 input tile around it with
36 multiply-adds per channel pair; F(2x2, 3x3) computes the same block with 16, as an element-wise
product of the tile and the filter in a transformed domain (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016, eq. 8):

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A,

with the tile ``d`` (4x4), the filter ``g`` (3x3) and the fixed matrices ``B^T`` (4x4), ``G``
(4x3), ``A^T`` (2x4) of sec. 4.1. Summed over input channels, the products become 16
matrix products ``(tiles, C_in) @ (C_in, C_out)``, one per transformed position, which run at the
CPU's matrix-product rate.

On a CPU whose bf16 convolutions already run at the arithmetic peak (about 225 GFLOP/s per
core on this project's machines), this is the one exact way left to spend less time on the
convolution itself: 2.25x fewer multiply-adds, paid for by the tile transforms, which only move
memory. It pays for the layers with many channels (:func:`winograd_pays`); the tiles go through
in bands of rows, so that each band's tiles and products stay in cache whatever the map's size.
F(4x4, 3x3) would save 4x, but its transforms (entries up to 8) raise bf16's rounding error about
tenfold (3e-2 relative against 2.3e-3 for the direct convolution on random maps), which this
project does not accept for a speed-up.

Both transforms are matrix products with float32 accumulation that round once to the products'
dtype, and their entries are 0 and ±1, so in float64 the result equals the direct convolution's
to 1e-15. In bf16 its error is about twice the direct convolution's own (4.7e-3 against 2.3e-3
relative, on random maps against float64); ``tests/ops/test_winograd.py`` bounds it.
:func:`conv3x3` chooses it where it pays: inference, and the input gradient of a network with
frozen weights (Gatys's image, the trainers' perceptual losses).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw
from .padding import reflect_conv3x3

__all__ = ["conv3x3", "winograd_conv3x3", "winograd_filter", "winograd_pays"]

#: G of F(2x2, 3x3) (Lavin and Gray 2016, sec. 4.1): the filter transform, 4x3.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
#: Bytes of transformed tiles per band of :func:`winograd_conv3x3`: 512 tiles at 512 channels in
#: bf16, 1024 at 256 (measured fastest at those sizes, docs/BENCHMARKS.md "Winograd"; a band's
#: buffers then take about 26 MB at most).
_BAND_BYTES = 8 << 20
#: B^T of F(2x2, 3x3): the input transform, 4x4.
_B_T = ((1.0, 0.0, -1.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (0.0, 1.0, 0.0, -1.0))
#: A^T of F(2x2, 3x3): the output transform, 2x4.
_A_T = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))


def winograd_pays(in_channels: int, out_channels: int) -> bool:
    """Whether :func:`winograd_conv3x3` beats the direct bf16 convolution on a CPU, by channel counts.

    The products' share of the work grows with the channels; the transforms' cost does not.
    Measured on this project's CPUs, one core, over VGG-19's layer shapes at 512 px
    (docs/BENCHMARKS.md, "Winograd"): 0.59 of the direct time at 512 -> 512 channels, 0.77 at
    256 -> 256, 0.82 at 128 -> 256, but 0.97 at 128 -> 128 and 1.1-1.5 below. The threshold is
    that measurement, not a law.
    """
    return min(in_channels, out_channels) >= 128 and max(in_channels, out_channels) >= 256


def winograd_filter(weight: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``G g G^T`` of every filter of ``weight`` ``(C_out, C_in, 3, 3)``, as ``(16, C_in, C_out)``.

    One product with ``G ⊗ G`` (16x9), in float64 for a float64 weight and float32 otherwise
    (G's entries are 0, ±1/2 and 1, so float32 is far finer than the bf16 result), rounded once to
    ``dtype`` (default: the weight's). About 15 ms for a 512 x 512 layer on one core; compute it once per weight
    and pass it to :func:`winograd_conv3x3` for every call.
    """
    if weight.ndim != 4 or weight.shape[-2:] != (3, 3):
        raise OptionError(f"weight must have shape (C_out, C_in, 3, 3), got {tuple(weight.shape)}")
    out_channels, in_channels = weight.shape[:2]
    compute = torch.float64 if weight.dtype == torch.float64 else torch.float32
    g = torch.tensor(_G, dtype=compute, device=weight.device)
    flat = weight.detach().transpose(0, 1).reshape(in_channels * out_channels, 9).to(compute)
    transformed = (torch.kron(g, g) @ flat.T).view(16, in_channels, out_channels)
    return transformed.to(dtype or weight.dtype)


def winograd_conv3x3(x: Tensor, filters: Tensor, bias: Tensor | None = None, *, padding: str = "zeros") -> Tensor:
    """``conv2d(pad(x, 1), weight, bias)`` by F(2x2, 3x3), with ``filters = winograd_filter(weight)``.

    Args:
        x: ``(B, C_in, H, W)``, best channels-last (the tiles are gathered along ``W`` and ``C``).
        filters: ``(16, C_in, C_out)`` from :func:`winograd_filter`, in the dtype the products
            should run in (bf16 on a CPU that computes it natively).
        bias: ``(C_out,)`` or None.
        padding: ``"zeros"`` (``Conv2d(padding=1)``) or ``"reflect"`` (``reflect_conv3x3``); sides
            must be at least 2 px for reflection.

    Returns ``(B, C_out, H, W)`` in channels-last layout and ``x``'s dtype.
    """
    check_bchw(x, "x")
    if filters.ndim != 3 or filters.shape[0] != 16 or filters.shape[1] != x.shape[1]:
        raise OptionError(f"filters must be (16, {x.shape[1]}, C_out) from winograd_filter, got {tuple(filters.shape)}")
    if padding not in ("zeros", "reflect"):
        raise OptionError(f"padding must be 'zeros' or 'reflect', not {padding!r}")
    batch, channels, height, width = x.shape
    tiles_y, tiles_x = (height + 1) // 2, (width + 1) // 2
    dtype = filters.dtype
    # The padded input as (B, 2 * tiles_y + 2, 2 * tiles_x + 2, C): one more row and column of
    # zeros on the far side when a side is odd (the extra outputs are cut off below).
    padded = x.new_zeros((batch, 2 * tiles_y + 2, 2 * tiles_x + 2, channels), dtype=dtype)
    source = x.permute(0, 2, 3, 1)
    padded[:, 1:height + 1, 1:width + 1] = source
    if padding == "reflect":
        padded[:, 1:height + 1, 0] = source[:, :, 1]
        padded[:, 1:height + 1, width + 1] = source[:, :, width - 2]
        padded[:, 0, :width + 2] = padded[:, 2, :width + 2]
        padded[:, height + 1, :width + 2] = padded[:, height - 1, :width + 2]
    input_transform, output_transform = _transforms(dtype, x.device)
    if bias is not None:
        bias = bias.to(dtype)
    out_channels = filters.shape[2]
    out = torch.empty((batch, 2 * tiles_y, 2 * tiles_x, out_channels), dtype=x.dtype, device=x.device)
    # Bands of tile rows of about _BAND_BYTES of transformed tiles (or products), so that a band's
    # buffers stay in cache and small: one pass over a whole 128x128 map ran at 0.85 of the direct
    # time, in bands at 0.6.
    tiles_per_band = _BAND_BYTES // (16 * max(channels, filters.shape[2]) * filters.element_size())
    band = max(1, tiles_per_band // tiles_x)
    for image in range(batch):
        for first in range(0, tiles_y, band):
            rows = min(band, tiles_y - first)
            source = padded[image, 2 * first:2 * (first + rows) + 2]
            out[image, 2 * first:2 * (first + rows)] = _band(
                source, rows, tiles_x, filters, bias, input_transform, output_transform)
    if out.shape[1] != height or out.shape[2] != width:
        out = out[:, :height, :width].contiguous()
    return out.permute(0, 3, 1, 2)


def _band(padded: Tensor, rows: int, columns: int, filters: Tensor, bias: Tensor | None,
          input_transform: Tensor, output_transform: Tensor) -> Tensor:
    """The outputs ``(2 * rows, 2 * columns, C_out)`` of ``rows`` x ``columns`` tiles.

    ``padded`` is ``(2 * rows + 2, W, C)``: the band's input rows with their one-row margins.
    """
    channels = padded.shape[-1]
    # The 16 entries of every 4x4 tile (tile (i, j) starts at row 2i and column 2j), each gathered
    # by one strided copy, as (16, tiles * C).
    tiles = padded.new_empty((16, rows, columns, channels))
    for k in range(16):
        row, column = divmod(k, 4)
        tiles[k] = padded[row:row + 2 * rows:2, column:column + 2 * columns:2]
    # B^T d B for every tile at once, as (B^T ⊗ B^T) vec(d): one matrix product with float32
    # accumulation and one rounding.
    transformed = (input_transform @ tiles.view(16, -1)).view(16, -1, channels)
    products = torch.bmm(transformed, filters)  # (16, tiles, C_out)
    if bias is not None:
        # Every output of a tile takes transformed position (1, 1) with coefficient 1 (column 1
        # of A^T is (1, 1)), so the bias added there reaches each output once.
        products[5] += bias
    # A^T m A for every tile, as (A^T ⊗ A^T) vec(m), then the 2x2 blocks interleaved into rows.
    blocks = (output_transform @ products.view(16, -1)).view(2, 2, rows, columns, -1)
    return blocks.permute(2, 0, 3, 1, 4).reshape(2 * rows, 2 * columns, -1)


def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """``B^T ⊗ B^T`` (16x16) and ``A^T ⊗ A^T`` (4x16) of F(2x2, 3x3) in ``dtype`` (entries 0, ±1: exact)."""
    b_t = torch.tensor(_B_T, dtype=dtype, device=device)
    a_t = torch.tensor(_A_T, dtype=dtype, device=device)
    return torch.kron(b_t, b_t), torch.kron(a_t, a_t)


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, padding: str = "zeros") -> Tensor:
    """A stored 3x3 convolution by the fastest exact route: :func:`winograd_conv3x3` where it pays.

    That is: on a CPU, in bf16 (``x`` in bf16, or CPU autocast to bf16 on), for channel counts
    where :func:`winograd_pays`, and with no gradient to record for the weights. A gradient for
    ``x`` alone (the optimisation methods' image) is recorded with zero padding: its backward pass
    is the transposed convolution, which is again a 3x3 convolution (of the flipped filters with
    input and output channels swapped), also by F(2x2, 3x3). Otherwise the direct convolution
    (``padding="zeros"``: ``conv2d(x, weight, bias, padding=1)``; ``"reflect"``:
    :func:`~atelier.ops.padding.reflect_conv3x3`). The transformed filters are computed once per
    weight and kept on it (recomputed when the weight changes in place). ``ATELIER_WINOGRAD=0`` in
    the environment turns the Winograd route off (the direct convolution everywhere: to compare).
    """
    route = _winograd_route(x, weight, bias, padding) if os.environ.get("ATELIER_WINOGRAD", "1") != "0" else None
    if route == "forward":
        return winograd_conv3x3(x.to(torch.bfloat16), _cached_filters(weight, False), bias, padding=padding)
    if route == "input_gradient":
        return _WinogradWithInputGradient.apply(
            x.to(torch.bfloat16), _cached_filters(weight, False), _cached_filters(weight, True), bias)
    if padding == "reflect":
        return reflect_conv3x3(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=1)


def _winograd_route(x: Tensor, weight: Tensor, bias: Tensor | None, padding: str) -> str | None:
    """``"forward"``, ``"input_gradient"`` or None (the direct convolution); see :func:`conv3x3`."""
    if x.device.type != "cpu" or weight.shape[-2:] != (3, 3) or x.ndim != 4 or min(x.shape[-2:]) < 2:
        return None
    bf16 = x.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    if not bf16 or not winograd_pays(weight.shape[1], weight.shape[0]):
        return None
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad
                                           or (bias is not None and bias.requires_grad)):
        return "forward"
    if weight.requires_grad or (bias is not None and bias.requires_grad) or padding != "zeros":
        return None
    return "input_gradient"


class _WinogradWithInputGradient(torch.autograd.Function):
    """F(2x2, 3x3) with zero padding, differentiable in its input only (frozen weights)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, filters: Tensor, transposed_filters: Tensor,
                bias: Tensor | None) -> Tensor:
        ctx.transposed_filters = transposed_filters
        return winograd_conv3x3(x, filters, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        # The adjoint of a zero-padded 3x3 convolution: the same with flipped, transposed filters.
        filters = ctx.transposed_filters
        return winograd_conv3x3(grad.to(filters.dtype), filters), None, None, None


def _cached_filters(weight: Tensor, transposed: bool) -> Tensor:
    """bf16 :func:`winograd_filter` of ``weight`` (``transposed``: of its adjoint).

    Kept on ``weight`` itself until the weight changes in place (its version counter moves).
    """
    cache: dict[bool, tuple[int, Tensor]] = weight.__dict__.setdefault("_atelier_winograd", {})
    cached = cache.get(transposed)
    if cached is not None and cached[0] == weight._version:
        return cached[1]
    source = weight.detach().flip(-2, -1).transpose(0, 1) if transposed else weight
    filters = winograd_filter(source, torch.bfloat16)
    cache[transposed] = (weight._version, filters)
    return filters
