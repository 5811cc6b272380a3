"""Style-attentional networks (Park & Lee 2019).

Paper: "Arbitrary Style Transfer with Style-Attentional Networks", CVPR.

A SANet module (sec. 3.2, eq. 1–3) lets every content position attend over all style
positions: with ``F̄`` the mean–variance normalised features,

``F_cs = F_c + W_out · Σ_j softmax_j(f(F̄_c)_i^T g(F̄_s)_j) h(F_s)_j``,

``f, g, h, W_out`` being 1x1 convolutions. Two modules run at relu4_1 and relu5_1; the relu5_1
output is upsampled, added and merged by a 3x3 convolution (eq. 4) before the decoder.

Initialisation (a deviation that changes no equation): ``W_out`` starts at zero and the merge
convolution at the identity, so an untrained transform passes the content features through.
:meth:`SANetTransform.start_as_soft_swap` is the start training uses by default: the same
equations with ``f, g, h`` at the identity, which already transfers the style (a soft 1x1 style
swap). The paper trains 160k steps from random weights; a CPU run here has a few hundred, too few
for the identity start to learn to use the style at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.attention import attend
from ..ops.layout import spatial_size
from ..ops.masks import resize_mask
from ..ops.stats import instance_normalize
from ..ops.winograd import conv3x3

__all__ = ["SOFT_SWAP_WEIGHT", "SANet", "SANetTransform"]

#: Weight of the attended style features against the content's in :meth:`SANetTransform.start_as_soft_swap`.
SOFT_SWAP_WEIGHT = 3.0


class SANet(nn.Module):
    """One style-attentional module on ``channels``-channel features (eq. 1–3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # built with a bias

    def adds_nothing(self) -> bool:
        """Whether ``W_out`` is zero (weight and bias) and no gradient is recorded for it.

        The module then returns its content unchanged whatever the style, so :meth:`forward` skips
        the attention (and callers may skip the style's features). The soft-swap start keeps the
        relu5_1 module so (:meth:`SANetTransform.start_as_soft_swap`), and the shipped transforms
        were trained with the transform fixed.
        """
        out = self.out
        assert out.bias is not None  # built with a bias
        if torch.is_grad_enabled() and (out.weight.requires_grad or out.bias.requires_grad):
            return False  # a zero W_out still has a gradient: training must run the attention
        return not (bool(out.weight.any()) or bool(out.bias.any()))

    def forward(self, content: Tensor, style: Tensor | None, temperature: float = 1.0,
                content_mask: Tensor | None = None) -> Tensor:
        """``content`` ``(B, C, H, W)`` with ``style`` ``(B, C, H', W')`` -> ``(B, C, H, W)``.

        ``content_mask`` restricts the content normalisation statistics to a region. ``style`` may
        be None when the module :meth:`adds_nothing`; the content comes back as it is.
        """
        if self.adds_nothing():
            return content
        if style is None:
            raise OptionError("this SANet module attends to the style: style features are required")
        if content_mask is not None:
            content_mask = resize_mask(content_mask, spatial_size(content))
        query = self.f(instance_normalize(content, mask=content_mask))
        key = self.g(instance_normalize(style))
        attended = attend(query.float(), key.float(), self.h(style).float(), temperature).to(content.dtype)
        return content + self.out(attended)


class SANetTransform(nn.Module):
    """SANet modules at relu4_1 and relu5_1, upsampled, added and merged (eq. 4).

    Args:
        channels: channels at relu4_1 and relu5_1 (512 in VGG-19).
        scales: divisors of the relu4_1 and relu5_1 features on entry; the output is in relu4_1
            units times ``scales[0]`` again (the decoder divides by its own input scale).
    """

    scales: Tensor  # a buffer: the divisors of the relu4_1 and relu5_1 features

    def __init__(self, channels: int = 512, scales: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__()
        self.register_buffer("scales", torch.tensor([float(s) for s in scales]))
        self.sanet4_1 = SANet(channels)
        self.sanet5_1 = SANet(channels)
        conv = nn.Conv2d(channels, channels, 3)
        self.merge = nn.Sequential(nn.ReflectionPad2d(1), conv)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(channels)
            conv.bias.zero_()  # type: ignore[union-attr]  # built with a bias

    @torch.no_grad()
    def start_as_soft_swap(self, weight: float = SOFT_SWAP_WEIGHT) -> None:
        """Set the weights to a closed-form style transfer: a start for training (not in the paper).

        ``f``, ``g`` and ``h`` become identities, so each content position attends to the style
        positions whose normalised features resemble its own and takes their raw style features.
        The scores are dot products over all channels of unit-variance features, hundreds apart,
        so the softmax is nearly a hard nearest neighbour: a 1x1 style swap (Chen & Schmidt 2016)
        in normalised space. The relu4_1 module adds ``weight`` times that to the content; the
        relu5_1 module's output convolution stays at zero (its 4x coarser matches blurred the
        result), and the merge divides by ``1 + weight``. Decoded by AdaIN's relu4_1 decoder
        this already carries each painting's colours and strokes (docs/BENCHMARKS.md, SANet).
        """
        for module, out_weight in ((self.sanet4_1, weight), (self.sanet5_1, 0.0)):
            identity = torch.eye(module.f.in_channels)[:, :, None, None]
            for conv in (module.f, module.g, module.h):
                conv.weight.copy_(identity)
                conv.bias.zero_()  # type: ignore[union-attr]  # built with a bias
            module.out.weight.copy_(identity * out_weight)
            module.out.bias.zero_()  # type: ignore[union-attr]
        merge = self.merge[1]
        assert isinstance(merge, nn.Conv2d)
        merge.weight.zero_()
        merge.weight[:, :, 1, 1] = torch.eye(merge.in_channels) / (1 + weight)
        merge.bias.zero_()  # type: ignore[union-attr]  # built with a bias

    def needs_style_relu5_1(self) -> bool:
        """Whether :meth:`attend` reads the style's relu5_1 features (not when that module adds nothing).

        Without them the style is encoded up to relu4_1 only, and the relu5_1 attention is not
        computed: 0.1 s less per 512 px image on two CPU threads for the shipped networks
        (docs/BENCHMARKS.md), with the same output.
        """
        return not self.sanet5_1.adds_nothing()

    def attend(self, content: tuple[Tensor, Tensor], style: tuple[Tensor, Tensor | None], temperature: float = 1.0,
               content_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The two modules' outputs (relu4_1, relu5_1 resolution), before the merge, in scaled units.

        ``style[1]`` may be None when not :meth:`needs_style_relu5_1`.
        """
        s4, s5 = self.scales.to(content[0].dtype).unbind()
        return (self.sanet4_1(content[0] / s4, style[0] / s4, temperature, content_mask),
                self.sanet5_1(content[1] / s5, None if style[1] is None else style[1] / s5, temperature,
                              content_mask))

    def merge_features(self, attended: tuple[Tensor, Tensor]) -> Tensor:
        """Merge (blends of) the two outputs of :meth:`attend` into relu4_1 features for the decoder."""
        upsampled = F.interpolate(attended[1], size=attended[0].shape[-2:], mode="nearest")
        # The merge's pad + 3x3 convolution without the padded copy (ops.winograd.conv3x3: Winograd's
        # F(2x2, 3x3) in bf16 inference); the modules stay for the weights' keys.
        conv = self.merge[1]
        assert isinstance(conv, nn.Conv2d)
        merged = conv3x3(attended[0] + upsampled, conv.weight, conv.bias, padding="reflect")
        return merged * self.scales[0].to(attended[0].dtype)

    def forward(self, content: tuple[Tensor, Tensor], style: tuple[Tensor, Tensor],
                temperature: float = 1.0) -> Tensor:
        """``content`` and ``style`` are (relu4_1, relu5_1) feature pairs."""
        return self.merge_features(self.attend(content, style, temperature))
