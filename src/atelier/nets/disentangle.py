"""Networks of content-style disentanglement (Kotovenko, Sanakoyeu, Lang & Ommer 2019).

"Content and Style Disentanglement for Artistic Style Transfer" (ICCV), sec. 3:

* content encoder ``E_c``: the encoder of the style-aware content loss
  (:class:`atelier.nets.style_aware.ImageEncoder`, instance-normalised, so it keeps layout and
  drops the image's own style statistics);
* style encoder ``E_s``: strided convolutions *without* instance norm (the statistics it must
  see), global average pooling and a linear layer to a style code of ``code_dim`` numbers, put
  on the unit sphere (so the fixpoint triplet loss's margin has a fixed scale, and the encoder
  cannot meet it by inflating every code; see :func:`unit_code`);
* decoder ``D``: residual blocks whose normalisation is adaptive instance norm with scale and
  shift predicted from the style code (Huang & Belongie 2017, eq. 8, as in MUNIT), then an
  upsampling path normalised by layer norm, not instance norm: instance norm there would remove
  again every per-channel shift and most of the scaling the code just set (MUNIT, Huang et al.
  2018, sec. B, uses layer norm in its decoder for the same reason).

Images are in [0, 1]. Any size: inputs are reflection-padded to a multiple of 16 and cropped back.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.layout import spatial_size
from ..ops.padding import pad_to_multiple
from .gan import init_weights, to_signed
from .resize_conv import run_layers
from .style_aware import STRIDE, ImageEncoder, at_least, back_to_size

__all__ = ["AdaINResidualBlock", "DisentangledGenerator", "LayerNormUpBlock", "StyleEncoder", "unit_code"]


def unit_code(code: Tensor) -> Tensor:
    """``code / |code|``: a style code ``(..., code_dim)`` on the unit sphere.

    Codes live on the sphere so that distances between them lie in [0, 2] whatever the
    encoder's weights: the triplet margin then means the same thing all through training, and a
    blend of codes (interpolation, the collection's average) is brought back to the sphere
    before it conditions the decoder.
    """
    return F.normalize(code.float(), dim=-1).to(code.dtype)


class StyleEncoder(nn.Module):
    """``E_s``: image ``(B, 3, H, W)`` in [0, 1] -> style code ``(B, code_dim)`` of unit length.

    Four 4x4 stride-2 convolutions with leaky ReLU (no normalisation: the style lies in the
    statistics a normalisation would remove), global average pooling, a linear layer, then
    :func:`unit_code`.
    """

    center: Tensor  # a buffer: the running mean of the paintings' raw codes, subtracted before the sphere

    #: Weight of the newest batch in the running mean of raw codes (a fast one: the mean only has
    #: to follow the encoder's slow drift).
    CENTER_MOMENTUM = 0.1

    def __init__(self, width: int, code_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
            channels = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, code_dim)
        self.register_buffer("center", torch.zeros(code_dim))

    def raw(self, image: Tensor) -> Tensor:
        """The uncentred code ``(B, code_dim)`` of ``image`` ``(B, 3, H, W)`` (pooled features, linear layer)."""
        return self.head(self.body(to_signed(image)).mean(dim=(2, 3)))

    def forward(self, image: Tensor) -> Tensor:
        """The unit style code ``(B, code_dim)`` of ``image``: its raw code minus :attr:`center`, on the sphere.

        Why centred: globally pooled features of every image share one large component
        (measured at init: the codes of ten paintings 0.03 apart on the sphere, out of 2), so
        unit codes would start all alike, and the fixpoint triplet loss, whose pulls and pushes
        then cancel over a batch, could not separate them.
        """
        return unit_code(self.raw(image) - self.center)

    def follow(self, raw: Tensor) -> None:
        """Move :attr:`center` toward the mean of ``raw`` codes ``(B, code_dim)`` (training: the paintings').

        The training task calls it once a step, after every code of the step was taken, so all
        codes of one step share one centre; the first call sets the centre outright.
        """
        with torch.no_grad():
            mean = raw.detach().float().mean(0)
            if self.center.any():
                self.center.lerp_(mean, self.CENTER_MOMENTUM)
            else:
                self.center.copy_(mean)


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


class LayerNormUpBlock(nn.Sequential):
    """Nearest 2x upsampling, 3x3 convolution, layer norm, ReLU: ``(B, C_in, h, w) -> (B, C_out, 2h, 2w)``.

    The style-aware generator's up block with layer norm (``GroupNorm`` of one group: one mean
    and variance over channels and pixels) in place of instance norm, so the per-channel
    statistics the AdaIN blocks set from the style code reach the output (as MUNIT's decoder).
    """

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.ReflectionPad2d(1),
                         nn.Conv2d(channels_in, channels_out, 3), nn.GroupNorm(1, channels_out), nn.ReLU(True))

    def forward(self, x: Tensor) -> Tensor:
        """The layers in order, the upsampling and convolution as one transposed convolution (run_layers)."""
        return run_layers(list(self), x)


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
            LayerNormUpBlock(8 * width, 8 * width), LayerNormUpBlock(8 * width, 4 * width),
            LayerNormUpBlock(4 * width, 2 * width), LayerNormUpBlock(2 * width, width),
            nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid())
        #: Running mean of the style codes of the training paintings: the collection's average style.
        self.register_buffer("average_code", torch.zeros(code_dim))
        init_weights(self)
        # The style encoder and the code-to-AdaIN layers keep PyTorch's default (Kaiming-uniform)
        # init: with N(0, 0.02) weights the AdaIN scales start near 1e-2 times the code, so the decoder
        # starts blind to the code and the triplet loss has no gradient to pull it out (measured: the
        # first shipped network, trained so, changed its output by 0.0008 between paintings).
        affines: list[nn.Module] = [cast(AdaINResidualBlock, block).affine for block in self.style_blocks]
        for part in (self.style_encoder, *affines):
            for layer in part.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    layer.reset_parameters()

    def content(self, image: Tensor) -> Tensor:
        """``E_c(x)`` ``(B, 8w, ceil(H/16), ceil(W/16))`` (reflection-padded to a multiple of 16)."""
        return self.content_encoder(pad_to_multiple(at_least(image, self.MIN_SIDE)[0], STRIDE)[0])

    def style(self, image: Tensor) -> Tensor:
        """``E_s(y)`` ``(B, code_dim)``."""
        return self.style_encoder(image)

    def decode(self, content: Tensor, code: Tensor) -> Tensor:
        """``D(c, s)`` in [0, 1], 16x the size of ``content``; ``code`` ``(B, code_dim)`` or ``(code_dim,)``.

        The code is put back on the unit sphere first (a blend or an average of unit codes is
        shorter), then scaled by ``sqrt(code_dim)`` so its entries are of order one for the
        AdaIN layers.
        """
        if code.dim() == 1:
            code = code[None].expand(content.shape[0], -1)
        code = unit_code(code) * self.code_dim ** 0.5
        x = content
        for block in self.style_blocks:
            x = block(x, code)
        return self.up(x)

    def forward(self, image: Tensor, code: Tensor) -> Tensor:
        """Stylize ``image`` with style ``code``: any size, output of the same size."""
        _, inner = at_least(image, self.MIN_SIDE)
        return back_to_size(self.decode(self.content(image), code), inner, spatial_size(image))
