"""VGG-19 feature encoder with named layers (Simonyan & Zisserman 2015).

The encoder takes RGB images in ``[0, 1]`` of shape ``(B, 3, H, W)``, applies the
preprocessing of its weight source (see :mod:`atelier.encoders.weights`), runs only up to
the deepest requested layer, and returns a ``{layer name: feature}`` dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ImageTooSmallError, OptionError, UnknownNameError, suggest
from ..ops.winograd import conv3x3

__all__ = ["LAYER_NAMES", "VGG19_WIDTHS", "Preprocessing", "VGGEncoder", "conv_names"]

#: Output channels of the conv layers of each of the five VGG-19 blocks.
VGG19_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)
#: Number of conv layers in each block of VGG-19.
VGG19_DEPTHS: tuple[int, ...] = (2, 2, 4, 4, 4)


def _layer_names(depths: Sequence[int]) -> list[str]:
    names: list[str] = []
    for block, depth in enumerate(depths, start=1):
        for i in range(1, depth + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


#: Every layer of VGG-19 in forward order: conv1_1, relu1_1, ..., pool5.
LAYER_NAMES: tuple[str, ...] = tuple(_layer_names(VGG19_DEPTHS))


def conv_names(depths: Sequence[int] = VGG19_DEPTHS) -> list[str]:
    """Names of the conv layers (``conv1_1`` ... ``conv5_4``) in forward order."""
    return [n for n in _layer_names(depths) if n.startswith("conv")]


@dataclass(frozen=True)
class Preprocessing:
    """How a weight source expects its input, applied to RGB images in ``[0, 1]``.

    ``x' = (flip(x) * scale - mean) / std`` where ``flip`` reverses RGB to BGR when ``bgr``.
    """

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, image: Tensor) -> Tensor:
        """Convert RGB images ``(B, 3, H, W)`` in [0, 1] to this weight source's input (BGR flip, scale, mean/std)."""
        if self.bgr:
            image = image.flip(1)
        mean = image.new_tensor(self.mean).view(1, 3, 1, 1)
        std = image.new_tensor(self.std).view(1, 3, 1, 1)
        return (image * self.scale - mean) / std


class _VGGConv(nn.Conv2d):
    """A zero-padded 3x3 convolution run by :func:`~atelier.ops.winograd.conv3x3`.

    That is Winograd's F(2x2, 3x3) for the wide layers in bf16 on a CPU (1.7x faster at 512
    channels), the direct convolution elsewhere; an ``nn.Conv2d`` so that the weights' keys stay.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``conv2d(x, weight, bias, padding=1)``."""
        return conv3x3(x, self.weight, self.bias)


class VGGEncoder(nn.Module):
    """VGG-19 with named layers that stops at the deepest requested layer.

    Args:
        convs: ``{conv name: (weight (C_out, C_in, 3, 3), bias (C_out,))}`` for all 16 convs.
        preprocessing: the input transform of the weight source.
        pooling: ``"max"`` (the network as trained) or ``"avg"`` (Gatys et al. 2016, sec. 2,
            report slightly better gradient flow and results with average pooling).
        source: a short description of where the weights came from (shown in errors/cards).
    """

    def __init__(
        self,
        convs: dict[str, tuple[Tensor, Tensor]],
        preprocessing: Preprocessing,
        *,
        pooling: str = "max",
        source: str = "",
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise OptionError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        self.preprocessing = preprocessing
        self.pooling = pooling
        self.source = source
        self.convs = nn.ModuleDict()
        for name in conv_names():
            weight, bias = convs[name]
            conv = _VGGConv(weight.shape[1], weight.shape[0], 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)  # type: ignore[union-attr]  # built with a bias
            self.convs[name] = conv
        self._widths = tuple(int(convs[f"conv{b}_1"][0].shape[0]) for b in range(1, 6))
        self.requires_grad_(False)
        self.eval()

    @property
    def widths(self) -> tuple[int, ...]:
        """Output channels of each block."""
        return self._widths

    def channels(self, layer: str) -> int:
        """Number of channels of ``layer``'s output."""
        self.check_layers([layer])
        block = int(layer[4])
        return self.widths[block - 1]

    @staticmethod
    def check_layers(layers: Iterable[str]) -> None:
        """Raise :class:`UnknownNameError` for a layer name VGG-19 does not have."""
        for layer in layers:
            if layer not in LAYER_NAMES:
                raise UnknownNameError(
                    f"unknown VGG-19 layer {layer!r}{suggest(layer, LAYER_NAMES)} "
                    f"(names look like conv4_2, relu3_1, pool2)"
                )

    @staticmethod
    def downsampling(layer: str) -> int:
        """Spatial stride of ``layer`` relative to the input (1, 2, 4, 8, 16 or 32)."""
        index = LAYER_NAMES.index(layer)
        return 2 ** sum(1 for n in LAYER_NAMES[:index + 1] if n.startswith("pool"))

    @staticmethod
    def min_input_size(layers: Iterable[str]) -> int:
        """Smallest input side for which every layer in ``layers`` has at least 1x1 output."""
        return max(VGGEncoder.downsampling(layer) for layer in layers)

    def forward(self, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Features of ``image`` (RGB in [0, 1], ``(B, 3, H, W)``) at ``layers``.

        Returns a dict ``{layer: (B, C, H / s, W / s)}``; computation stops at the deepest
        requested layer.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise OptionError(f"encoder input must have shape (B, 3, H, W), got {tuple(image.shape)}")
        self.check_layers(layers)
        wanted = set(layers)
        deepest = max(LAYER_NAMES.index(layer) for layer in wanted)
        need = self.min_input_size(layers)
        if min(image.shape[-2:]) < need:
            raise ImageTooSmallError(
                f"image of {image.shape[-1]}x{image.shape[-2]} px is too small for layer "
                f"{LAYER_NAMES[deepest]}: each side must be at least {need} px"
            )
        x = self.preprocessing(image)
        out: dict[str, Tensor] = {}
        # Without autograd the ReLU can overwrite the convolution's output (a fresh buffer per
        # layer costs about as much as the ReLU itself), unless that output was asked for.
        inplace = not torch.is_grad_enabled()
        previous = ""
        for name in LAYER_NAMES[: deepest + 1]:
            if name.startswith("conv"):
                x = self.convs[name](x)
            elif name.startswith("relu"):
                x = F.relu(x, inplace=inplace and previous not in wanted)
            elif self.pooling == "max":
                x = F.max_pool2d(x, 2, 2, ceil_mode=False)
            else:
                x = F.avg_pool2d(x, 2, 2, ceil_mode=False)
            if name in wanted:
                out[name] = x
            previous = name
        return out
