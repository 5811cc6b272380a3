"""Networks of content-style disentanglement (Kotovenko, Sanakoyeu, Lang & Ommer 2019).

"Content and Style Disentanglement for Artistic Style Transfer" (ICCV), sec. 3:

* content encoder ``E_c``: the encoder of the style-aware content loss
  (:class:`atelier.nets.style_aware.ImageEncoder`, instance-normalised, so it keeps layout and
  drops the image's own style statistics);
* style encoder ``E_s``: strided convolutions *without* instance norm (the statistics it must
  see), global average pooling and a linear layer to a style code of ``code_dim`` numbers;
* decoder ``D``: residual blocks whose normalisation is adaptive instance norm with scale and
  shift predicted from the style code (Huang & Belongie 2017, eq. 8, as in MUNIT), then the
  upsampling path of the style-aware generator.

Images are in [0, 1]. Any size: inputs are reflection-padded to a multiple of 16 and cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.padding import pad_to_multiple
from .gan import init_weights, to_signed
from .style_aware import STRIDE, ImageEncoder, UpBlock

__all__ = ["AdaINResidualBlock", "DisentangledGenerator", "StyleEncoder"]


class StyleEncoder(nn.Module):
    """``E_s``: image ``(B, 3, H, W)`` in [0, 1] -> style code ``(B, code_dim)``.

    Four 4x4 stride-2 convolutions with leaky ReLU (no normalisation: the style lies in the
    statistics a normalisation would remove), global average pooling, a linear layer.
    """

    def __init__(self, width: int, code_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
            channels = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, code_dim)

    def forward(self, image: Tensor) -> Tensor:
        """The style code ``(B, code_dim)`` of ``image`` ``(B, 3, H, W)``."""
        return self.head(self.body(to_signed(image)).mean(dim=(2, 3)))


class AdaINResidualBlock(nn.Module):
    """Two 3x3 convolutions with AdaIN (scale and shift from the style code), plus the input.

    ``(B, C, h, w), (B, code_dim) -> (B, C, h, w)``.
    """

    def __init__(self, channels: int, code_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.affine = nn.Linear(code_dim, 4 * channels)  # gamma1, beta1, gamma2, beta2

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        """``x`` plus its two AdaIN-conditioned convolutions."""
        gamma1, beta1, gamma2, beta2 = self.affine(code)[:, :, None, None].chunk(4, dim=1)
        h = F.relu(F.instance_norm(self.conv1(x)) * (1 + gamma1) + beta1)
        return x + F.instance_norm(self.conv2(h)) * (1 + gamma2) + beta2


class DisentangledGenerator(nn.Module):
    """``G(x, s) = D(E_c(x), s)`` with the style encoder ``E_s`` that makes ``s`` from a painting.

    Args:
        width: channels of the first content-encoder layer (the deepest has 8x).
        blocks: AdaIN residual blocks of the decoder (at least 1: they carry the style).
        code_dim: length of the style code.
    """

    average_code: Tensor  # a buffer: the running mean of the collection's style codes

    #: Smallest input side: the 1/16 map must keep 2x2 pixels for instance norm.
    MIN_SIDE = 2 * STRIDE

    def __init__(self, *, width: int = 32, blocks: int = 4, code_dim: int = 128) -> None:
        super().__init__()
        if width < 1 or blocks < 1 or code_dim < 1:
            raise OptionError(f"the disentangled generator needs width, blocks and code_dim >= 1 "
                              f"(got {width}, {blocks}, {code_dim})")
        self.width, self.blocks, self.code_dim = width, blocks, code_dim
        self.content_encoder = ImageEncoder(width)
        self.style_encoder = StyleEncoder(width, code_dim)
        self.style_blocks = nn.ModuleList([AdaINResidualBlock(8 * width, code_dim) for _ in range(blocks)])
        self.up = nn.Sequential(
            UpBlock(8 * width, 8 * width), UpBlock(8 * width, 4 * width), UpBlock(4 * width, 2 * width),
            UpBlock(2 * width, width), nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid())
        #: Running mean of the style codes of the training paintings: the collection's average style.
        self.register_buffer("average_code", torch.zeros(code_dim))
        init_weights(self)
        # The style encoder keeps PyTorch's default (Kaiming-uniform) init: with N(0, 0.02) weights its
        # codes start near 1e-4, the AdaIN scales ignore them and the triplet's margin cannot be met.
        for layer in self.style_encoder.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.reset_parameters()

    def _inner(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        height, width = image.shape[-2:]
        inner = (max(height, self.MIN_SIDE), max(width, self.MIN_SIDE))
        if inner != (height, width):
            image = F.interpolate(image, size=inner, mode="bilinear", align_corners=False)
        return image, inner

    def content(self, image: Tensor) -> Tensor:
        """``E_c(x)`` ``(B, 8w, ceil(H/16), ceil(W/16))`` (reflection-padded to a multiple of 16)."""
        return self.content_encoder(pad_to_multiple(self._inner(image)[0], STRIDE)[0])

    def style(self, image: Tensor) -> Tensor:
        """``E_s(y)`` ``(B, code_dim)``."""
        return self.style_encoder(image)

    def decode(self, content: Tensor, code: Tensor) -> Tensor:
        """``D(c, s)`` in [0, 1], 16x the size of ``content``; ``code`` ``(B, code_dim)`` or ``(code_dim,)``."""
        if code.dim() == 1:
            code = code[None].expand(content.shape[0], -1)
        x = content
        for block in self.style_blocks:
            x = block(x, code)
        return self.up(x)

    def forward(self, image: Tensor, code: Tensor) -> Tensor:
        """Stylize ``image`` with style ``code``: any size, output of the same size."""
        height, width = image.shape[-2:]
        _, inner = self._inner(image)
        output = self.decode(self.content(image), code)[..., :inner[0], :inner[1]]
        if inner != (height, width):
            output = F.interpolate(output, size=(height, width), mode="bilinear", align_corners=False)
        return output
