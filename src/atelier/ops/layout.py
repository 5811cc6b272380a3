"""Memory layout and shape of (B, C, H, W) tensors."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["channels_last", "spatial_size"]


def spatial_size(x: Tensor) -> tuple[int, int]:
    """``(H, W)`` of a ``(..., H, W)`` tensor."""
    return int(x.shape[-2]), int(x.shape[-1])


def channels_last(x: Tensor) -> Tensor:
    """``x`` in channels-last memory with the canonical strides ``(H*W*C, 1, W*C, C)``.

    oneDNN convolutions are about 1.5x faster, and max pooling about 20x, on channels-last
    bf16 activations than on NCHW ones. ``Tensor.contiguous(memory_format=torch.channels_last)``
    is not enough: an image made by permuting an ``(H, W, 3)`` array has strides
    ``(3, 1, 3W, 3)``; PyTorch calls that channels-last (the batch stride of a size-1 dimension
    does not count), returns it unchanged, and the convolution, which reads the batch stride,
    then falls back to NCHW for the whole network. A copy with fresh strides avoids that.
    """
    if x.ndim != 4:
        return x
    _, channels, height, width = x.shape
    if x.stride() == (channels * height * width, 1, width * channels, channels):
        return x
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
