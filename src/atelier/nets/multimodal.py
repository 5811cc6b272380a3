"""The hierarchical network of multimodal transfer: style, enhance and refine subnets.

Wang, Oxholm, Zhang & Wang 2017, "Multimodal Transfer: A Hierarchical Deep Convolutional
Neural Network for Fast Artistic Style Transfer" (CVPR), sec. 3.1 and fig. 2:

* **style subnet** at a quarter of the output size (the paper: 256 px for a 1024 px output):
  an *RGB block* on the colour image and an *L block* on its luminance (each a 9x9
  convolution, two stride-2 convolutions and three residual blocks), concatenated, then a
  *conv block* (three residual blocks, two resize-convolutions, a 3x3 output convolution);
* **enhance subnet** at half the output size (512 px): the style subnet's output upsampled 2x,
  then a 9x9 convolution, three stride-2 convolutions, six residual blocks, three
  resize-convolutions and a 9x9 output convolution;
* **refine subnet** at the full size (1024 px): the enhance output upsampled 2x, a 9x9
  convolution, two stride-2 convolutions, three residual blocks, two resize-convolutions and
  a 3x3 output convolution whose result is *added* to its input (it only adds detail).

Every stage upsamples the previous stage's output (bilinear) and the hierarchical loss
(:mod:`atelier.methods.multimodal`) scores each stage at its own scale, which is what keeps
brush strokes their painted size at 1024 px and above.

Widths: ``width`` is the first layer's channels of the enhance and refine subnets (the paper:
32, so 32/64/128/256 in the enhance subnet); the style subnet's RGB and L blocks use
``width / 2`` (the paper: 16/32/64 each, 128 after concatenation). The CPU-trained network
in ``atelier/pretrained`` uses ``width`` 16, half the paper's, and a residual enhance subnet.

Layers are the conv/instance-norm/ReLU blocks of :mod:`atelier.nets.transformer` (reflection
padding, resize-convolution upsampling) with one style.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.padding import pad_to_multiple
from .tiling import tiled
from .transformer import ConditionalInstanceNorm2d, ConvLayer, ResidualBlock

__all__ = ["EnhanceSubnet", "MultimodalNet", "RefineSubnet", "StyleSubnet", "stage_sizes", "tiled_subnet"]

#: ITU-R BT.601 luma weights, the luminance the L block sees (the paper: "luminance channel").
LUMA = (0.299, 0.587, 0.114)
#: Stages of the network, coarse to fine (the names of the losses and of the sample columns).
STAGES = ("style", "enhance", "refine")


def stage_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Output size of each stage for a final ``height`` x ``width``: a quarter, a half, full.

    Odd sides round up, so each stage is at most twice the previous one and the last is
    exactly the requested size.
    """
    half = (-(-height // 2), -(-width // 2))
    quarter = (-(-half[0] // 2), -(-half[1] // 2))
    return [quarter, half, (height, width)]


def _run(layers: nn.ModuleList, x: Tensor, ones: Tensor) -> Tensor:
    for layer in layers:
        x = layer(x, ones)
    return x


class _Subnet(nn.Module):
    """A subnet: pads its input to a multiple of its stride, runs, crops back."""

    stride = 1
    #: Context around a tile, px: at least the subnet's receptive-field radius (a multiple of
    #: ``stride``), so a tile's core sees what it sees in the whole image.
    halo = 0

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        x, _ = pad_to_multiple(image, self.stride)
        ones = x.new_ones(x.shape[0], 1, dtype=torch.float32)
        return self.body(x, ones)[..., :height, :width]

    def body(self, x: Tensor, ones: Tensor) -> Tensor:
        raise NotImplementedError


class StyleSubnet(_Subnet):
    """RGB block + L block -> conv block (Wang et al. 2017, sec. 3.1, fig. 2 left); output in [0, 1]."""

    luma: Tensor  # a buffer: the luminance weights of R, G and B

    stride = 4

    def __init__(self, width: int) -> None:
        super().__init__()
        w = max(1, width // 2)

        def block(cin: int) -> nn.ModuleList:
            return nn.ModuleList([ConvLayer(cin, w, 9), ConvLayer(w, 2 * w, 3, stride=2),
                                  ConvLayer(2 * w, 4 * w, 3, stride=2), *[ResidualBlock(4 * w) for _ in range(3)]])

        self.rgb = block(3)
        self.luminance = block(1)
        self.conv = nn.ModuleList([*[ResidualBlock(8 * w) for _ in range(3)],
                                   ConvLayer(8 * w, 4 * w, 3, upsample=2), ConvLayer(4 * w, 2 * w, 3, upsample=2)])
        self.output = nn.Conv2d(2 * w, 3, 3)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def body(self, x: Tensor, ones: Tensor) -> Tensor:
        """The RGB and luminance blocks, concatenated, then the joint block."""
        # Luminance as its own modality: the L block learns the strokes' texture apart from colour.
        gray = (x * self.luma.to(x.dtype)).sum(1, keepdim=True)
        y = torch.cat([_run(self.rgb, x, ones), _run(self.luminance, gray, ones)], 1)
        y = _run(self.conv, y, ones)
        return torch.sigmoid(self.output(F.pad(y, (1,) * 4, mode="reflect")))


class EnhanceSubnet(_Subnet):
    """Three downsamplings, six residual blocks, three upsamplings (sec. 3.1, fig. 2 middle).

    Args:
        width: first-layer channels (the paper: 32).
        residual: add the output to the input, as the refine subnet does, instead of the
            paper's sigmoid image (a deviation, see :class:`MultimodalNet`).
    """

    stride = 8
    #: Receptive-field radius 118 px: 9x9 (4), three stride-2 3x3 (1 + 2 + 4), twelve 3x3 at 1/8 (96),
    #: three resize-convolutions (4 + 2 + 1), the 9x9 output (4).
    halo = 128

    def __init__(self, width: int, residual: bool = False) -> None:
        super().__init__()
        w = width
        self.residual = residual
        self.layers = nn.ModuleList([
            ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, stride=2), ConvLayer(2 * w, 4 * w, 3, stride=2),
            ConvLayer(4 * w, 8 * w, 3, stride=2), *[ResidualBlock(8 * w) for _ in range(6)],
            ConvLayer(8 * w, 4 * w, 3, upsample=2), ConvLayer(4 * w, 2 * w, 3, upsample=2),
            ConvLayer(2 * w, w, 3, upsample=2),
        ])
        self.output = nn.Conv2d(w, 3, 9)

    def body(self, x: Tensor, ones: Tensor) -> Tensor:
        """The enhanced image: in [0, 1] (the paper), or the input plus a residual."""
        y = self.output(F.pad(_run(self.layers, x, ones), (4,) * 4, mode="reflect"))
        return x + y if self.residual else torch.sigmoid(y)


class RefineSubnet(_Subnet):
    """Two downsamplings, three residual blocks, two upsamplings; adds its output to its input.

    Sec. 3.1, fig. 2 right: the refine subnet corrects details of the upsampled image.
    """

    stride = 4
    #: Receptive-field radius 35 px: 9x9 (4), two stride-2 3x3 (1 + 2), six 3x3 at 1/4 (24), two
    #: resize-convolutions (2 + 1), the 3x3 output (1).
    halo = 48

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.layers = nn.ModuleList([
            ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, stride=2), ConvLayer(2 * w, 4 * w, 3, stride=2),
            *[ResidualBlock(4 * w) for _ in range(3)],
            ConvLayer(4 * w, 2 * w, 3, upsample=2), ConvLayer(2 * w, w, 3, upsample=2),
        ])
        self.output = nn.Conv2d(w, 3, 3)

    def body(self, x: Tensor, ones: Tensor) -> Tensor:
        """The input plus the predicted residual."""
        y = _run(self.layers, x, ones)
        return x + self.output(F.pad(y, (1,) * 4, mode="reflect"))


class MultimodalNet(nn.Module):
    """Image ``(B, 3, H, W)`` in [0, 1] -> the three stages' outputs, a quarter, half and full size.

    Args:
        width: first-layer channels of the enhance and refine subnets (the paper: 32); the style
            subnet's RGB and L blocks start at ``width / 2``.
        enhance_residual: the enhance subnet adds a residual to its (upsampled) input instead of
            drawing the whole image (a deviation from the paper, off by default): it starts as
            the style subnet's result upsampled and only learns what to add, where the paper's
            enhance subnet must first learn to reproduce its input through a 1/8-size
            bottleneck, which a short CPU schedule never reaches (it painted the painting's
            texture over the photo and lost it).
    """

    #: The shortest side the network runs on: the style subnet sees a quarter of it, and its
    #: 9x9 convolution reflection-pads by 4 px.
    MIN_SIDE = 20

    def __init__(self, *, width: int = 32, enhance_residual: bool = False) -> None:
        super().__init__()
        if width < 2:
            raise OptionError(f"a multimodal network needs width >= 2, got {width}")
        self.width = width
        self.enhance_residual = enhance_residual
        self.style = StyleSubnet(width)
        self.enhance = EnhanceSubnet(width, residual=enhance_residual)
        self.refine = RefineSubnet(width)

    def architecture(self) -> dict[str, int]:
        """The constructor arguments (stored next to the weights)."""
        return {"width": self.width, "enhance_residual": int(self.enhance_residual)}

    def stages(self, image: Tensor, tile: int = 0, *, detach: bool = False) -> list[Tensor]:
        """Outputs of the style, enhance and refine subnets at :func:`stage_sizes` of ``image``.

        The style subnet sees the input shrunk to a quarter (antialiased bilinear, as the
        paper's bilinear downsampling layer); each later stage sees the previous output
        upsampled (bilinear) to its size. ``tile`` > 0 (a multiple of 16 px) runs the enhance
        and refine subnets on tiles of about that size (:func:`tiled_subnet`: the same result
        in less memory); 0 runs them whole. ``detach`` (training only) stops each stage's
        gradients at its input, so a subnet learns from its own stage's loss alone.
        """
        height, width = image.shape[-2:]
        if min(height, width) < self.MIN_SIDE:
            raise OptionError(f"the multimodal network needs sides of at least {self.MIN_SIDE} px, "
                              f"got {width}x{height}")
        sizes = stage_sizes(height, width)
        x = F.interpolate(image, size=sizes[0], mode="bilinear", align_corners=False, antialias=True)
        outputs = [self.style(x)]
        for size, subnet, part in zip(sizes[1:], (self.enhance, self.refine), (tile // 2, tile)):
            previous = outputs[-1].detach() if detach else outputs[-1]
            x = F.interpolate(previous, size=size, mode="bilinear", align_corners=False)
            outputs.append(tiled_subnet(subnet, x, part) if tile else subnet(x))
        return outputs

    def forward(self, image: Tensor, tile: int = 0) -> Tensor:
        """The refine subnet's output, the size of ``image``; ``tile`` as in :meth:`stages`.

        Not clamped: the refine subnet adds a residual; callers clamp to [0, 1].
        """
        return self.stages(image, tile)[-1]


class _Probed(Exception):
    """Stops a statistics pass once the probed layer has seen its input."""


def tiled_subnet(subnet: _Subnet, image: Tensor, tile: int) -> Tensor:
    """``subnet(image)`` computed on tiles of ``tile`` px (rounded to the subnet's stride).

    Equal to the whole-image result up to float rounding, in memory bounded by the tile size.

    Instance norm needs each layer's statistics over the whole map, so the normalisation layers
    are fixed one at a time: for layer ``k``, every tile (with :attr:`_Subnet.halo` px of
    context) runs up to layer ``k`` with layers ``1..k-1`` already normalised by their
    whole-image statistics, and the sums over the tiles' cores give layer ``k``'s mean and
    variance. A last pass computes the tiles with every layer fixed. With the halo covering the
    receptive field, each core sees exactly what it sees in the whole image, so the sums, and
    the output, are the whole image's. About ``layers / 2`` times the compute of one pass.
    """
    stride = subnet.stride
    height, width = image.shape[-2:]
    x, _ = pad_to_multiple(image, stride)
    tile = max(stride, tile // stride * stride)
    if max(x.shape[-2:]) <= tile + subnet.halo:  # a tile with its halo would hold (nearly) the whole image
        return subnet(image)
    ones = x.new_ones(x.shape[0], 1, dtype=torch.float32)
    norms = [m for m in subnet.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    boxes = [(top, left) for top in range(0, x.shape[-2], tile) for left in range(0, x.shape[-1], tile)]
    try:
        for norm in norms:
            total = squares = None
            count = 0

            def probe(pre: Tensor, core: tuple[int, int, int, int], size: tuple[int, int]) -> None:
                nonlocal total, squares, count
                step = size[0] // pre.shape[-2]  # this layer's stride in the tile
                top, left, bottom, right = (c // step for c in core)
                part = pre[..., top:bottom, left:right].double()  # float64 sums: millions of pixels
                sums, sums2 = part.sum((2, 3), keepdim=True), (part * part).sum((2, 3), keepdim=True)
                total = sums if total is None else total + sums
                squares = sums2 if squares is None else squares + sums2
                count += part.shape[-2] * part.shape[-1]
                raise _Probed

            for top, left in boxes:
                t0, l0 = max(0, top - subnet.halo), max(0, left - subnet.halo)
                b0, r0 = min(x.shape[-2], top + tile + subnet.halo), min(x.shape[-1], left + tile + subnet.halo)
                core = (top - t0, left - l0, min(top + tile, b0) - t0, min(left + tile, r0) - l0)
                norm.probe = lambda pre, c=core, z=(b0 - t0, r0 - l0): probe(pre, c, z)
                try:
                    subnet.body(x[..., t0:b0, l0:r0], ones)
                except _Probed:
                    pass
            norm.probe = None
            assert total is not None and squares is not None
            mean = total / count
            norm.frozen = (mean.float(), (squares / count - mean * mean).clamp_min(0).float())
        out = tiled(lambda part: subnet.body(part, ones[: part.shape[0]]), x, scale=1, tile=tile, halo=subnet.halo)
    finally:
        for norm in norms:
            norm.probe = norm.frozen = None
    return out[..., :height, :width]
