"""U-GAT-IT's networks: attention (CAM) and adaptive layer-instance normalisation (AdaLIN).

Kim, Kim, Kang & Lee 2020, "U-GAT-IT: Unsupervised Generative Attentional Networks with
Adaptive Layer-Instance Normalization for Image-to-Image Translation" (ICLR):

* :class:`CAM` (sec. 2.1.1): an auxiliary classifier ``eta`` on the global average- and
  max-pooled features; its weights ``w`` re-weight the feature maps (``a = w * E``) so the
  network attends to the regions that tell the domains apart.
* :class:`AdaLIN` (sec. 2.1.1, eq. 1): ``gamma * (rho * IN(a) + (1 - rho) * LN(a)) + beta`` with
  ``rho`` learnt per channel and kept in [0, 1], ``gamma``/``beta`` from a small MLP on the
  attention features; :class:`LIN` is the same with learnt ``gamma``/``beta`` (the upsampling
  blocks).
* :class:`UGATITGenerator` (appendix A, table 4): encoder (7x7 conv, two stride-2 convs,
  ``blocks`` residual blocks), CAM, the gamma/beta MLP, ``blocks`` AdaLIN residual blocks, two
  nearest-upsample + conv + LIN stages, 7x7 conv and tanh. ``light`` (the authors' small-memory
  variant) average-pools the features before the MLP instead of flattening them.
* :class:`UGATITDiscriminator` (appendix A, table 5): spectrally normalised 4x4 convolutions with
  leaky ReLU, a CAM (its logits are the discriminator's auxiliary output) and a last 4x4
  convolution; 7 layers (global, 70 x 2^4 px receptive field) or 5 layers (local).

Networks take and return images in [0, 1] (atelier's convention), working in [-1, 1] inside.

Deviations from the paper and the authors' code:
    * The CAM's GAP and GMP logits come from one shared linear layer (the paper's single
      ``w_s`` in ``eta_s``; the authors' code has two separate layers).
    * Instance and layer statistics use the biased variance, so ``rho = 1`` is exactly
      ``nn.InstanceNorm2d`` and ``rho = 0`` exactly ``nn.LayerNorm`` over (C, H, W) (their code:
      the unbiased one). ``rho`` is clamped to [0, 1] in the forward pass as well as clipped
      after each optimizer step (:func:`clip_rho`).
    * Weights start from PyTorch's default initialisation, as in the authors' code.
    * The full (non-light) generator's MLP reads the features average-pooled to the training
      resolution / 4 (an identity at the training size), so it also runs at any input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import ImageTooSmallError, OptionError
from ..ops.layout import spatial_size
from ..ops.padding import pad_to_multiple
from .gan import STRIDE, patch_size, to_signed, to_unit
from .resize_conv import run_layers

__all__ = ["CAM", "LIN", "AdaLIN", "UGATITDiscriminator", "UGATITGenerator", "clip_rho"]


def _instance_stats(x: Tensor, eps: float) -> Tensor:
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + eps)


def _layer_stats(x: Tensor, eps: float) -> Tensor:
    var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + eps)


def _blend(x: Tensor, rho: Tensor, eps: float) -> Tensor:
    # Statistics in float32 (bf16 variances of large maps lose too many digits).
    wide = x.float()
    rho = rho.float().clamp(0, 1)
    return rho * _instance_stats(wide, eps) + (1 - rho) * _layer_stats(wide, eps)


class AdaLIN(nn.Module):
    """Adaptive layer-instance norm (eq. 1): ``x`` ``(B, C, H, W)``, ``gamma``/``beta`` ``(B, C)``.

    ``rho`` ``(1, C, 1, 1)`` starts at 0.9 (the authors' code) and acts clamped to [0, 1]:
    1 is instance norm, 0 is layer norm.
    """

    def __init__(self, channels: int, eps: float = 1e-5, rho: float = 0.9) -> None:
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, channels, 1, 1), rho))

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        """``x`` normalised by the ``rho`` blend of instance and layer norm, then ``* gamma + beta``."""
        out = _blend(x, self.rho, self.eps)
        return (out * gamma.float()[:, :, None, None] + beta.float()[:, :, None, None]).to(x.dtype)


class LIN(nn.Module):
    """Layer-instance norm with learnt ``rho`` (starts at 0: layer norm), ``gamma`` and ``beta``."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` normalised by the ``rho`` blend of instance and layer norm, with the learnt ``gamma`` and ``beta``."""
        return (_blend(x, self.rho, self.eps) * self.gamma + self.beta).to(x.dtype)


def clip_rho(module: nn.Module) -> None:
    """Clip every AdaLIN/LIN ``rho`` of ``module`` to [0, 1] in place (after an optimizer step)."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (AdaLIN, LIN)):
                layer.rho.clamp_(0, 1)


class CAM(nn.Module):
    """Class activation map attention (sec. 2.1.1).

    ``forward(x)`` with features ``x`` ``(B, C, H, W)`` returns ``(features, cam_logit, heatmap)``:
    the attention features ``(B, C, H, W)`` (a 1x1 convolution of ``[w * x, w * x]`` where ``w``
    are the classifier weights seen by GAP and GMP), the classifier logits ``(B, 2)`` (GAP, GMP)
    and the attention map ``(B, 1, H, W)`` (the channel sum, for visualisation).

    Args:
        channels: C.
        spectral: spectral normalisation of the layers (the discriminator's CAM).
        slope: negative slope of the activation after the 1x1 convolution (0 = ReLU: the
            generator; 0.2: the discriminator).
    """

    def __init__(self, channels: int, *, spectral: bool = False, slope: float = 0.0) -> None:
        super().__init__()
        fc = nn.Linear(channels, 1, bias=False)
        self.fc = spectral_norm(fc) if spectral else fc
        self.spectral = spectral
        self.mix = nn.Conv2d(2 * channels, channels, 1)
        self.slope = slope

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(attention features (B, C, H, W), cam_logit (B, 2), heatmap (B, 1, H, W))`` of features ``x``."""
        gap = F.adaptive_avg_pool2d(x, 1).flatten(1)
        gmp = F.adaptive_max_pool2d(x, 1).flatten(1)
        cam_logit = torch.cat([self.fc(gap), self.fc(gmp)], dim=1)
        # The (spectrally normalised) classifier weights, one per channel, re-weight the maps.
        fc_weight = self.fc.weight
        assert isinstance(fc_weight, Tensor)
        weight = fc_weight[0][None, :, None, None].to(x.dtype)
        attended = x * weight
        x = self.mix(torch.cat([attended, attended], dim=1))
        x = F.leaky_relu(x, self.slope) if self.slope else F.relu(x)
        return x, cam_logit, x.sum(dim=1, keepdim=True)


class ResnetBlock(nn.Module):
    """Encoder bottleneck block: two reflection-padded 3x3 convolutions with instance norm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class AdaLINBlock(nn.Module):
    """Decoder bottleneck block: two 3x3 convolutions, each followed by AdaLIN with the same gamma/beta."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=False)
        self.norm1 = AdaLIN(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False)
        self.norm2 = AdaLIN(channels)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(F.pad(x, (1,) * 4, mode="reflect")), gamma, beta))
        out = self.norm2(self.conv2(F.pad(out, (1,) * 4, mode="reflect")), gamma, beta)
        return x + out


class UGATITGenerator(nn.Module):
    """U-GAT-IT generator: image ``(B, 3, H, W)`` in [0, 1] -> translated image, same size, in [0, 1].

    Args:
        width: channels of the first layer (the paper: 64); the bottleneck has 4x that.
        blocks: residual blocks in the encoder and in the decoder each (the paper: 4).
        light: the small-memory variant: the gamma/beta MLP reads globally average-pooled
            features (C inputs) instead of the flattened map (C * (size / 4)^2 inputs).
        size: the training image size (the full variant's MLP input depends on it).
    """

    def __init__(self, *, width: int = 64, blocks: int = 4, light: bool = False, size: int = 256) -> None:
        super().__init__()
        if width < 1 or blocks < 0 or size < STRIDE or size % STRIDE:
            raise OptionError(f"a U-GAT-IT generator needs width >= 1, blocks >= 0 and a size that is a multiple "
                              f"of {STRIDE} (got {width}, {blocks}, {size})")
        self.width, self.blocks, self.light, self.size = width, blocks, light, size
        w, c = width, 4 * width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7, bias=False), nn.InstanceNorm2d(w),
                                   nn.ReLU(True)]
        for factor in (1, 2):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(w * factor, w * factor * 2, 3, stride=2, bias=False),
                       nn.InstanceNorm2d(w * factor * 2), nn.ReLU(True)]
        layers += [ResnetBlock(c) for _ in range(blocks)]
        self.encoder = nn.Sequential(*layers)
        self.cam = CAM(c)
        self.pooled = 1 if light else size // STRIDE
        self.mlp = nn.Sequential(nn.Linear(c * self.pooled**2, c, bias=False), nn.ReLU(True),
                                 nn.Linear(c, c, bias=False), nn.ReLU(True))
        self.gamma = nn.Linear(c, c, bias=False)
        self.beta = nn.Linear(c, c, bias=False)
        self.bottleneck = nn.ModuleList([AdaLINBlock(c) for _ in range(blocks)])
        up: list[nn.Module] = []
        for factor in (4, 2):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                   nn.Conv2d(w * factor, w * factor // 2, 3, bias=False), LIN(w * factor // 2), nn.ReLU(True)]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7, bias=False), nn.Tanh()]
        self.decoder = nn.Sequential(*up)

    def architecture(self) -> dict[str, int | bool]:
        """The constructor arguments (stored next to the weights)."""
        return {"width": self.width, "blocks": self.blocks, "light": self.light, "size": self.size}

    def translate(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(output (B, 3, H, W) in [0, 1], cam_logit (B, 2), heatmap (B, 1, H/4, W/4))``.

        Any size: reflection-padded to a multiple of 4, cropped back.
        """
        height, width = image.shape[-2:]
        x, _ = pad_to_multiple(image, STRIDE)
        features, cam_logit, heatmap = self.cam(self.encoder(to_signed(x)))
        pooled = F.adaptive_avg_pool2d(features, self.pooled)
        style = self.mlp(pooled.flatten(1))
        gamma, beta = self.gamma(style), self.beta(style)
        for block in self.bottleneck:
            features = block(features, gamma, beta)
        # run_layers: each upsampling and the convolution after it as one transposed convolution.
        output = to_unit(run_layers(list(self.decoder), features))[..., :height, :width]
        return output, cam_logit, heatmap

    def forward(self, image: Tensor) -> Tensor:
        """The translated image only (inference)."""
        return self.translate(image)[0]


class UGATITDiscriminator(nn.Module):
    """U-GAT-IT discriminator: image ``(B, 3, H, W)`` in [0, 1] -> ``(scores (B, 1, H', W'), cam_logit (B, 2))``.

    Args:
        width: channels of the first layer (the paper: 64), doubled per stride-2 layer.
        layers: 7 for the global discriminator, 5 for the local one (the paper); ``layers - 2``
            stride-2 convolutions.
    """

    def __init__(self, *, width: int = 64, layers: int = 7) -> None:
        super().__init__()
        if width < 1 or layers < 3:
            raise OptionError(f"a U-GAT-IT discriminator needs width >= 1 and layers >= 3 (got {width}, {layers})")
        self.width, self.layers = width, layers
        modules: list[nn.Module] = [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(3, width, 4, stride=2)),
                                    nn.LeakyReLU(0.2, True)]
        channels = width
        for _ in range(layers - 3):
            modules += [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(channels, channels * 2, 4, stride=2)),
                        nn.LeakyReLU(0.2, True)]
            channels *= 2
        modules += [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(channels, channels * 2, 4)),
                    nn.LeakyReLU(0.2, True)]
        channels *= 2
        self.features = nn.Sequential(*modules)
        self.cam = CAM(channels, spectral=True, slope=0.2)
        self.head = spectral_norm(nn.Conv2d(channels, 1, 4))

    @property
    def min_size(self) -> int:
        """The smallest input side with at least a 1x1 output (96 px for 7 layers, 24 for 5)."""
        size = 1
        while patch_size(size, self.layers - 2) < 1:
            size += 1
        return size

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(patch scores, cam_logit)`` of ``image`` in [0, 1]; ImageTooSmallError below ``min_size`` px a side."""
        if min(image.shape[-2:]) < self.min_size:
            raise ImageTooSmallError(f"the {self.layers}-layer U-GAT-IT discriminator needs images of at least "
                                     f"{self.min_size} px a side, got {spatial_size(image)}")
        features, cam_logit, _ = self.cam(self.features(to_signed(image)))
        scores = self.head(F.pad(features, (1,) * 4, mode="reflect"))
        return scores, cam_logit
