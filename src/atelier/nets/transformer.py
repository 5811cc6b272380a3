"""The image transformation network of the per-style fast methods.

Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution" (ECCV), supplementary table 1: a 9x9 convolution, two stride-2
convolutions, five residual blocks, two upsampling stages and a 9x9 output convolution, with
reflection padding; instance normalisation instead of batch norm (Ulyanov et al. 2016) and
nearest-neighbour upsampling followed by a convolution instead of fractionally strided
convolutions (Odena et al. 2016, which avoids checkerboard artefacts).

Every normalisation layer is a :class:`ConditionalInstanceNorm2d`: with one style it is the
ordinary affine instance norm of Johnson et al.; with N styles it holds one (gamma, beta) per
style (Dumoulin, Shlens & Kudlur 2017, "A Learned Representation for Artistic Style", eq. 5)
and mixes them with style weights, which is how several styles are blended at inference.

``width`` scales every layer (32 = the paper's 32/64/128 channels); ``width`` 8 or 16 with
fewer blocks are the small fast variants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.layout import spatial_size
from ..ops.masks import resize_mask
from ..ops.padding import pad_to_multiple, upsample_reflect_conv3x3

__all__ = ["ConditionalInstanceNorm2d", "TransformerNet", "is_style_parameter", "style_weight_matrix"]

#: Total stride of the network: inputs are padded to a multiple of it.
STRIDE = 4


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with per-style affine parameters ``weight``/``bias`` of shape ``(S, C)``.

    ``forward(x, w)`` with style weights ``w`` ``(B, S)`` computes
    ``IN(x) * (w @ gamma) + (w @ beta)``: a one-hot row selects one style (Dumoulin et al.
    2017, eq. 5), a convex combination blends styles (their sec. 4.2).
    """

    #: Statistics ``(mean, var)``, each ``(1, C, 1, 1)`` float32, used instead of the map's own:
    #: tiled inference normalises every tile with the whole image's (see
    #: :func:`atelier.nets.multimodal.tiled_subnet`). None: the map's own (the paper's IN).
    frozen: tuple[Tensor, Tensor] | None = None
    #: Called with the float32 input map before it is normalised (statistics passes); None: off.
    probe: Callable[[Tensor], None] | None = None

    def __init__(self, channels: int, styles: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(styles, channels))
        self.bias = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: Tensor, style_weights: Tensor) -> Tensor:
        """Instance-normalise ``x`` ``(B, C, H, W)`` with the ``style_weights`` mix of the per-style affine parameters.

        ``style_weights`` is ``(B, S)``, or ``(B, S, h, w)`` per pixel (resized to ``x``; spatial
        blending of styles, Dumoulin et al. 2017, fig. 7).
        """
        if style_weights.dim() == 4:
            maps = resize_mask(style_weights.to(self.weight), spatial_size(x))
            gamma = torch.einsum("bshw,sc->bchw", maps, self.weight)
            beta = torch.einsum("bshw,sc->bchw", maps, self.bias)
        else:
            gamma = (style_weights.to(self.weight) @ self.weight)[:, :, None, None]
            beta = (style_weights.to(self.bias) @ self.bias)[:, :, None, None]
        # Statistics in float32 (the variance of a 512 px map loses too many digits in bf16);
        # gamma and beta folded into one scale and shift per channel.
        wide = x.float()
        if self.probe is not None:
            self.probe(wide)
        if self.frozen is not None:
            mean, var = self.frozen
        else:
            var, mean = torch.var_mean(wide, dim=(2, 3), keepdim=True, correction=0)
        scale = gamma * torch.rsqrt(var + self.eps)
        shift = beta - mean * scale
        if style_weights.dim() == 4:  # per-pixel scale and shift: already full maps
            return (wide * scale + shift).to(x.dtype)
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


class ConvLayer(nn.Module):
    """Reflection pad, convolution, conditional instance norm, optional ReLU.

    ``upsample`` 2 doubles the resolution (nearest) before the convolution; with a 3x3 kernel
    both run as one transposed convolution (:func:`~atelier.ops.padding.upsample_reflect_conv3x3`,
    same values, 2.25x fewer multiply-adds).
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, upsample: int = 1,
                 styles: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)
        self.norm = ConditionalInstanceNorm2d(cout, styles)
        self.relu = relu

    def forward(self, x: Tensor, style_weights: Tensor) -> Tensor:
        if self.upsample == 2 and self.conv.kernel_size == (3, 3) and self.conv.stride == (1, 1):
            x = upsample_reflect_conv3x3(x, self.conv.weight, self.conv.bias)
        else:
            if self.upsample > 1:
                x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
            x = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        x = self.norm(x, style_weights)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """Two 3x3 conv layers with a skip connection (Johnson et al. 2016, supp. fig. 1).

    Without the paper's cropping, since the convolutions are padded.
    """

    def __init__(self, channels: int, styles: int = 1) -> None:
        super().__init__()
        self.first = ConvLayer(channels, channels, 3, styles=styles)
        self.second = ConvLayer(channels, channels, 3, styles=styles, relu=False)

    def forward(self, x: Tensor, style_weights: Tensor) -> Tensor:
        return x + self.second(self.first(x, style_weights), style_weights)


class TransformerNet(nn.Module):
    """Image ``(B, 3, H, W)`` in [0, 1] -> stylized image of the same size in [0, 1].

    Args:
        width: channels of the first layer (the paper: 32); the others are 2x and 4x that.
        blocks: residual blocks at 1/4 resolution (the paper: 5).
        styles: number of styles (1 = Johnson et al.; more = conditional instance norm).
    """

    #: The shortest side the network runs on (the output layer reflection-pads by 4 px).
    MIN_SIDE = 5

    def __init__(self, *, width: int = 32, blocks: int = 5, styles: int = 1) -> None:
        super().__init__()
        if width < 1 or blocks < 0 or styles < 1:
            raise OptionError(f"a transformer net needs width >= 1, blocks >= 0, styles >= 1 "
                              f"(got {width}, {blocks}, {styles})")
        self.width, self.blocks, self.styles = width, blocks, styles
        w = width
        self.down = nn.ModuleList([
            ConvLayer(3, w, 9, styles=styles),
            ConvLayer(w, 2 * w, 3, stride=2, styles=styles),
            ConvLayer(2 * w, 4 * w, 3, stride=2, styles=styles),
        ])
        self.residual = nn.ModuleList([ResidualBlock(4 * w, styles) for _ in range(blocks)])
        self.up = nn.ModuleList([
            ConvLayer(4 * w, 2 * w, 3, upsample=2, styles=styles),
            ConvLayer(2 * w, w, 3, upsample=2, styles=styles),
        ])
        self.output = nn.Conv2d(w, 3, 9)

    def architecture(self) -> dict[str, int]:
        """The constructor arguments (stored next to the weights)."""
        return {"width": self.width, "blocks": self.blocks, "styles": self.styles}

    def forward(self, image: Tensor, style_weights: Tensor | Sequence[float] | None = None) -> Tensor:
        """Stylize ``image`` of any size (reflection-padded to a multiple of 4, cropped back).

        ``style_weights`` is ``(S,)`` (same for the batch), ``(B, S)``, or ``(B, S, H, W)``
        per-pixel maps; None for a single-style net.
        """
        batch, _, height, width = image.shape
        weights = style_weight_matrix(style_weights, self.styles, batch, image.device)
        x, pad = pad_to_multiple(image, STRIDE)
        if weights.dim() == 4:
            weights = F.pad(resize_mask(weights, (height, width)), pad, mode="replicate")
        return self.body(x, weights)[..., :height, :width]

    def body(self, x: Tensor, style_weights: Tensor) -> Tensor:
        """The network on ``x`` whose sides are multiples of :data:`STRIDE`, with validated ``style_weights``.

        This is what :class:`~atelier.nets.onnx.OnnxTransformer` exports.
        """
        for layer in self.down:
            x = layer(x, style_weights)
        for block in self.residual:
            x = block(x, style_weights)
        for layer in self.up:
            x = layer(x, style_weights)
        x = self.output(F.pad(x, (4, 4, 4, 4), mode="reflect"))
        return torch.sigmoid(x)

    def extract_style(self, index: int) -> TransformerNet:
        """A single-style net equal to this one with one-hot weights for style ``index``."""
        if not 0 <= index < self.styles:
            raise OptionError(f"style index {index} out of range: this network has {self.styles} styles")
        single = TransformerNet(width=self.width, blocks=self.blocks, styles=1)
        state = {k: v[index : index + 1] if is_style_parameter(k) else v for k, v in self.state_dict().items()}
        single.load_state_dict(state)
        return single


def is_style_parameter(name: str) -> bool:
    """Whether the parameter ``name`` is a per-style table (a row per style: gamma or beta)."""
    return name.endswith(("norm.weight", "norm.bias"))


def style_weight_matrix(weights: Tensor | Sequence[float] | None, styles: int, batch: int,
                        device: torch.device | str = "cpu") -> Tensor:
    """Style weights as a validated ``(batch, styles)`` float tensor (or ``(batch, styles, H, W)`` maps).

    None means the only style of a single-style net; a vector ``(styles,)`` applies to the
    whole batch. Weights must be finite and >= 0 with a positive sum (per pixel for maps);
    they are used as given (callers normalise, see :func:`atelier.api.normalize_weights`).
    """
    if weights is None:
        if styles != 1:
            raise OptionError(f"this network holds {styles} styles: give style weights (one per style)")
        return torch.ones(batch, 1, device=device)
    matrix = torch.as_tensor(weights, dtype=torch.float32, device=device)
    if matrix.dim() == 1:
        matrix = matrix.expand(batch, -1)
    elif matrix.dim() == 4 and matrix.shape[0] == 1:
        matrix = matrix.expand(batch, -1, -1, -1)
    if matrix.dim() not in (2, 4) or tuple(matrix.shape[:2]) != (batch, styles):
        raise OptionError(f"got style weights of shape {tuple(matrix.shape)} for a network of {styles} styles "
                          f"and a batch of {batch}; give one weight per style")
    if not torch.isfinite(matrix).all() or (matrix < 0).any() or (matrix.sum(1) <= 0).any():
        raise OptionError("style weights must be finite, >= 0 and not all 0")
    return matrix
