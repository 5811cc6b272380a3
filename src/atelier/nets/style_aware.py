"""The encoder-decoder generator of the style-aware content loss (and its building blocks).

Sanakoyeu, Kotovenko, Lang & Ommer 2018, "A Style-Aware Content Loss for Real-time HD Style
Transfer" (ECCV), sec. 3 and the authors' code (``adaptive-style-transfer``, module.py):

* encoder ``E``: a 3x3 convolution of ``w`` channels, then four 3x3 stride-2 convolutions of
  ``w, 2w, 4w, 8w`` channels (the paper: ``w = 32``, so 256 channels at 1/16 resolution), each
  with instance norm and ReLU;
* decoder ``D``: ``blocks`` residual blocks at 1/16 resolution (the paper: 9), four nearest
  2x upsamplings each followed by a 3x3 convolution with instance norm and ReLU (``8w, 4w, 2w,
  w`` channels), and a 7x7 convolution to RGB through a sigmoid.

:class:`ConvBlock`, :class:`UpBlock` and :class:`ImageEncoder` are shared with the
content-style disentanglement networks of the same group (Kotovenko et al. 2019), which use
the same encoder and decoder layout.

Networks take and return images in [0, 1]. Deviation from the authors' code: every
convolution pads by reflection to keep the size ("same"), and inputs are padded by
reflection to a multiple of 16 and cropped back, instead of one 15-pixel reflection pad and
unpadded ("valid") convolutions, so any input size gives the same output size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.layout import spatial_size
from ..ops.padding import pad_to_multiple
from .gan import ResidualBlock, init_weights, to_signed
from .resize_conv import run_layers

__all__ = ["STRIDE", "ConvBlock", "ImageEncoder", "StyleAwareGenerator", "UpBlock", "at_least", "back_to_size"]

#: Total stride of the encoder (four stride-2 convolutions).
STRIDE = 16


class ConvBlock(nn.Sequential):
    """Reflection pad, ``k x k`` convolution, instance norm, ReLU (the paper's ``conv`` blocks)."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(channels_in, channels_out, kernel, stride),
                         nn.InstanceNorm2d(channels_out), nn.ReLU(True))


class UpBlock(nn.Module):
    """Nearest 2x upsampling, then a :class:`ConvBlock` (resize-convolution: no checkerboard)."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")  # no weights: the files' keys are unchanged
        self.conv = ConvBlock(channels_in, channels_out)

    def forward(self, x: Tensor) -> Tensor:
        """Upsample 2x (nearest), then convolve (as one transposed convolution, run_layers)."""
        return run_layers([self.up, self.conv], x)


class ImageEncoder(nn.Sequential):
    """``E``: image ``(B, 3, H, W)`` in [0, 1] -> ``(B, 8w, H/16, W/16)`` (H, W multiples of 16)."""

    def __init__(self, width: int) -> None:
        super().__init__(ConvBlock(3, width), ConvBlock(width, width, stride=2),
                         ConvBlock(width, 2 * width, stride=2), ConvBlock(2 * width, 4 * width, stride=2),
                         ConvBlock(4 * width, 8 * width, stride=2))

    def forward(self, image: Tensor) -> Tensor:
        """Encode ``image`` in [0, 1] (worked on in [-1, 1])."""
        return super().forward(to_signed(image))


def at_least(image: Tensor, min_side: int) -> tuple[Tensor, tuple[int, int]]:
    """``image`` upscaled (bilinear) so each side is at least ``min_side`` px, and that size.

    The collection generators' down path needs ``min_side``; smaller inputs run upscaled and
    :func:`back_to_size` returns their result to the input's size.
    """
    height, width = image.shape[-2:]
    inner = (max(height, min_side), max(width, min_side))
    if inner != (height, width):
        image = F.interpolate(image, size=inner, mode="bilinear", align_corners=False)
    return image, inner


def back_to_size(output: Tensor, inner: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """A generator's ``output`` cropped to the ``inner`` size it ran at, then resized to ``size``."""
    output = output[..., : inner[0], : inner[1]]
    if inner != size:
        output = F.interpolate(output, size=size, mode="bilinear", align_corners=False)
    return output


class StyleAwareGenerator(nn.Module):
    """``G = D o E``: photo ``(B, 3, H, W)`` in [0, 1] -> stylized image, same size, in [0, 1].

    Args:
        width: channels of the first encoder layer (the paper: 32); the deepest has 8x.
        blocks: residual blocks of the decoder (the paper: 9).
    """

    #: Smallest input side: the 1/16 map must keep 2x2 pixels for instance norm.
    MIN_SIDE = 2 * STRIDE

    def __init__(self, *, width: int = 32, blocks: int = 9) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise OptionError(f"the style-aware generator needs width >= 1 and blocks >= 0 (got {width}, {blocks})")
        self.width, self.blocks = width, blocks
        self.encoder = ImageEncoder(width)
        self.decoder = nn.Sequential(
            *[ResidualBlock(8 * width) for _ in range(blocks)],
            UpBlock(8 * width, 8 * width), UpBlock(8 * width, 4 * width), UpBlock(4 * width, 2 * width),
            UpBlock(2 * width, width), nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid())
        init_weights(self)

    def encode(self, image: Tensor) -> Tensor:
        """``E(x)`` ``(B, 8w, ceil(H/16), ceil(W/16))``, the space of the style-aware content loss.

        Sec. 3.2; ``image`` is reflection-padded to a multiple of 16 first.
        """
        return self.encoder(pad_to_multiple(at_least(image, self.MIN_SIDE)[0], STRIDE)[0])

    def decode(self, features: Tensor) -> Tensor:
        """``D(z)`` in [0, 1], 16x the size of ``features``."""
        return self.decoder(features)

    def forward(self, image: Tensor) -> Tensor:
        """Stylize ``image``: any size, output of the same size.

        Inputs below :attr:`MIN_SIDE` are upscaled for the network and the result resized back.
        """
        _, inner = at_least(image, self.MIN_SIDE)
        return back_to_size(self.decode(self.encode(image)), inner, spatial_size(image))
