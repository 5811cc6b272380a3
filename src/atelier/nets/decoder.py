"""Decoders that invert the VGG-19 encoder from one of its ``reluN_1`` layers back to RGB.

The layout mirrors VGG-19 (Simonyan & Zisserman 2015) as in the AdaIN decoder (Huang &
Belongie 2017, sec. 6): 3x3 convolutions with reflection padding (fewer border artefacts
than zero padding), ReLU, nearest-neighbour upsampling where VGG pools, and a last
convolution to RGB without activation.

Upsampling is nearest-neighbour (the papers') or bilinear: a decoder trained briefly with
nearest upsampling leaves a grid with the period of the encoder's stride (8 px from relu4_1;
its high-pass energy at that phase is about 4x a photo's), since each feature cell is painted
as a block that the few trained convolutions cannot yet blend; resize-convolution with a
smooth kernel has no such block structure (Odena, Dumoulin, Olah 2016, "Deconvolution and
checkerboard artifacts"). The mode is architecture, not weights: it is written in the weights
file's header (``upsample``) and applied when the file is loaded (:meth:`VGGDecoder.apply_header`).

Deviation (relu5_1): Li et al. 2017 (Universal Style Transfer) mirror all four 512-channel
convolutions of block 4. This decoder keeps one 512-channel convolution per block-5 level and
then reuses the relu4_1 layout, which halves the parameters (5.9 M, 12 MB in fp16) so the
shipped file stays small and trains in CPU hours.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..encoders.vgg import VGG19_DEPTHS, VGG19_WIDTHS
from ..errors import OptionError, UnknownNameError, suggest
from ..ops.winograd import conv3x3
from .resize_conv import run_layers
from .spec import WeightsSpec

__all__ = [
    "ADAIN_DECODER",
    "DECODER_LAYERS",
    "UPSAMPLE_MODES",
    "WCT_DECODERS",
    "VGGDecoder",
    "decoder_block",
    "fit_linear_decoder",
]

#: Layers a decoder can start from, shallowest first.
DECODER_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: How a decoder upsamples where VGG pools.
UPSAMPLE_MODES = ("nearest", "bilinear")

#: The relu4_1 decoder AdaIN trains; EFDM decodes with it too.
ADAIN_DECODER = WeightsSpec("adain_decoder", config="configs/adain.yaml", what="relu4_1 decoder",
                            layer="relu4_1")
#: WCT's reconstruction decoders, one per layer (Li et al. 2017); LST decodes with them too.
WCT_DECODERS = WeightsSpec("wct_decoder_{layer}", config="configs/wct.yaml", what="{layer} decoder")


def decoder_block(layer: str) -> int:
    """The VGG block (1–5) of a ``reluN_1`` decoder layer; :class:`UnknownNameError` otherwise."""
    if layer not in DECODER_LAYERS:
        raise UnknownNameError(
            f"no decoder for layer {layer!r}{suggest(layer, DECODER_LAYERS)} (decoders exist for "
            f"{', '.join(DECODER_LAYERS)})"
        )
    return int(layer[4])


class _ReflectConv(nn.Sequential):
    """Reflection padding + 3x3 convolution (+ ReLU).

    The modules stay (their names are the weights files' keys), but the forward pass is
    :func:`~atelier.ops.winograd.conv3x3` with reflection: the same values without the padded copy
    (:func:`~atelier.ops.padding.reflect_conv3x3`), by Winograd's F(2x2, 3x3) for the wide layers
    in bf16 inference.
    """

    def __init__(self, c_in: int, c_out: int, relu: bool = True):
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``relu(conv(reflection_pad(x)))`` (no ReLU for the last layer)."""
        conv = self[1]
        assert isinstance(conv, nn.Conv2d)
        x = conv3x3(x, conv.weight, conv.bias, padding="reflect")
        return torch.relu_(x) if len(self) > 2 else x


class VGGDecoder(nn.Module):
    """Maps ``(B, C_l, H / s, W / s)`` features of ``layer`` to RGB ``(B, 3, H, W)``.

    Args:
        layer: ``relu1_1`` ... ``relu5_1``.
        widths: channel widths of the encoder's five blocks (the real VGG-19's by default;
            tests pass the narrow widths of the random encoder).
        upsample: ``nearest`` (the papers') or ``bilinear`` (see the module docstring).
        input_scale: the features are divided by this first (kept in the weights file as the
            buffer ``input_scale``). Raw caffe VGG features reach hundreds; scaling them to about
            1, as the papers' normalised VGG does, lets default initialisation and Adam work:
            a relu1_1 decoder on raw features was still at 6.6 dB PSNR after 600 steps, while a
            least-squares fit of the same single convolution reaches 40 dB.

    The output is not clamped: losses see the raw values, callers clamp images for display.
    """

    input_scale: Tensor  # a buffer: the divisor of the input features

    def __init__(self, layer: str = "relu4_1", widths: tuple[int, ...] = VGG19_WIDTHS,
                 input_scale: float = 1.0, upsample: str = "nearest") -> None:
        super().__init__()
        if not input_scale > 0:
            raise OptionError(f"input_scale must be > 0, got {input_scale}")
        if upsample not in UPSAMPLE_MODES:
            raise OptionError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, not {upsample!r}")
        self.register_buffer("input_scale", torch.tensor(float(input_scale)))
        if len(widths) != 5 or min(widths) < 1:
            raise OptionError(f"widths must be 5 positive channel counts, got {widths}")
        self.layer = layer
        self.widths = tuple(int(w) for w in widths)
        block = decoder_block(layer)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        if block == 5:
            stages["block5"] = nn.Sequential(_ReflectConv(widths[4], widths[3]), nn.Upsample(scale_factor=2))
            block = 4
        for b in range(block, 1, -1):
            # From relu{b}_1: invert conv{b}_1 (width b-1 -> b), unpool, then the rest of block b-1.
            layers: list[nn.Module] = [_ReflectConv(widths[b - 1], widths[b - 2]), nn.Upsample(scale_factor=2)]
            layers += [_ReflectConv(widths[b - 2], widths[b - 2]) for _ in range(VGG19_DEPTHS[b - 2] - 1)]
            stages[f"block{b}"] = nn.Sequential(*layers)
        stages["to_rgb"] = _ReflectConv(widths[0], 3, relu=False)
        self.stages = nn.Sequential(stages)
        self.set_upsample(upsample)

    @property
    def upsample(self) -> str:
        """The upsampling mode, ``nearest`` or ``bilinear``."""
        return self._upsample

    def set_upsample(self, mode: str) -> None:
        """Switch every upsampling layer to ``mode`` (one of :data:`UPSAMPLE_MODES`)."""
        if mode not in UPSAMPLE_MODES:
            raise OptionError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, not {mode!r}")
        self._upsample = mode
        for module in self.modules():
            if isinstance(module, nn.Upsample):
                module.mode = mode
                module.align_corners = False if mode == "bilinear" else None

    def header(self) -> dict[str, str]:
        """Architecture entries for a weights file's header (read back by :meth:`apply_header`)."""
        return {"upsample": self.upsample}

    def apply_header(self, header: dict[str, str]) -> None:
        """Set the architecture a weights file's header records.

        Files without ``upsample`` were trained with nearest-neighbour upsampling.
        """
        self.set_upsample(header.get("upsample", "nearest"))

    @property
    def in_channels(self) -> int:
        """Channels of the features this decoder takes."""
        return self.widths[decoder_block(self.layer) - 1]

    @property
    def scale(self) -> int:
        """Upsampling factor from the features to the image."""
        return 2 ** (decoder_block(self.layer) - 1)

    def forward(self, features: Tensor) -> Tensor:
        """Decode ``(B, in_channels, H, W)`` features of this decoder's layer; OptionError for other shapes."""
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise OptionError(
                f"decoder for {self.layer} takes (B, {self.in_channels}, H, W) features, got {tuple(features.shape)}"
            )
        return self.decode(features / self.input_scale.to(features.dtype))

    def decode(self, x: Tensor, at_upsample: Callable[[Tensor], Tensor] | None = None,
               fuse: bool = True) -> Tensor:
        """Run the layers on ``x`` (already divided by ``input_scale``).

        With ``fuse``, a nearest 2x upsampling and the convolution after it run as one transposed
        convolution (:func:`~atelier.nets.resize_conv.run_layers`: those convolutions cost 2.25x
        fewer multiply-adds); ``at_upsample`` is applied where the decoder upsamples, as there.
        """
        # The stages' modules in order (to_rgb is one module): an upsampling that ends block 5
        # is followed by block 4's first convolution.
        layers = [m for stage in self.stages for m in (stage.children() if type(stage) is nn.Sequential else (stage,))]
        return run_layers(layers, x, at_upsample=at_upsample, fuse=fuse)

    def extra_repr(self) -> str:
        """The layer, stage widths and upsampling mode, shown by ``print(module)``."""
        return f"layer={self.layer}, widths={self.widths}, upsample={self.upsample}"


def fit_linear_decoder(decoder: VGGDecoder, features: Tensor, images: Tensor, ridge: float = 1e-6) -> float:
    """Set a relu1_1 decoder (one 3x3 convolution) to the least-squares inverse of ``features``.

    The decoder is linear, so the minimiser of the pixel loss is the solution of the normal
    equations over all 3x3 feature patches (with a small ridge); gradient descent approaches it
    slowly because the patch covariance is ill-conditioned. Returns the fit's PSNR in dB.

    Args:
        decoder: a ``relu1_1`` :class:`VGGDecoder`, changed in place.
        features: ``(B, C, H, W)`` relu1_1 features of ``images``.
        images: ``(B, 3, H, W)`` in [0, 1].
        ridge: Tikhonov term relative to the mean diagonal of the normal matrix.
    """
    if decoder.layer != "relu1_1":
        raise OptionError(f"only the linear relu1_1 decoder has a closed form, not {decoder.layer}")
    conv = decoder.get_submodule("stages.to_rgb.1")
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None
    x = features.double() / float(decoder.input_scale)
    patches = torch.nn.functional.unfold(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), 3)
    a = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], dim=1)
    y = images.double().permute(0, 2, 3, 1).reshape(-1, 3)
    normal = a.T @ a
    normal += torch.eye(len(normal), dtype=normal.dtype) * ridge * normal.diagonal().mean()
    solution = torch.linalg.solve(normal, a.T @ y)
    with torch.no_grad():
        conv.weight.copy_(solution[:-1].T.reshape(conv.weight.shape).to(conv.weight.dtype))
        conv.bias.copy_(solution[-1].to(conv.bias.dtype))
    mse = float(((a @ solution - y) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-12))
