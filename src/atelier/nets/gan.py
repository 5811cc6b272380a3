"""CycleGAN's networks and adversarial helpers.

Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (ICCV):

* :class:`ResnetGenerator` (sec. 4 and appendix 7.2, after Johnson et al. 2016): ``c7s1-64,
  d128, d256, R256 x 9, u128, u64, c7s1-3`` with reflection padding and instance norm;
  ``width`` scales every layer (64 = the paper), ``blocks`` is 6 at 128 px and 9 at 256 px.
* :class:`PatchDiscriminator` (appendix 7.2, after Isola et al. 2017): the 70x70 PatchGAN
  ``C64-C128-C256-C512`` with 4x4 convolutions, leaky ReLU 0.2 and no norm on the first
  layer, then a 1-channel convolution: one real/fake score per overlapping 70x70 patch.
* :func:`lsgan_loss` (sec. 4, "training details"): least-squares GAN (Mao et al. 2017)
  instead of the negative log likelihood.
* :class:`ImagePool` (sec. 4, after Shrivastava et al. 2017): the discriminators see a
  history of 50 generated images rather than only the latest ones.

Networks take and return images in [0, 1] (atelier's convention) and work in [-1, 1]
inside, as the paper's code does. Every network accepts any size: the generator pads to a
multiple of 4 by reflection and crops back.

Deviations from the paper: none in the architecture; the weights start from N(0, 0.02) like
the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ImageTooSmallError, OptionError
from ..ops.layout import spatial_size
from ..ops.padding import pad_to_multiple

__all__ = ["STRIDE", "ImagePool", "MultiScaleDiscriminator", "PatchDiscriminator", "ResnetGenerator", "init_weights",
           "log_loss", "lsgan_loss", "patch_size"]

#: Total stride of the generators: inputs are padded to a multiple of it.
STRIDE = 4


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Convolution and linear weights from N(0, ``std``), biases 0 (the authors' ``normal`` init)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def to_signed(image: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1], the range the networks work in."""
    return image * 2 - 1


def to_unit(image: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1]."""
    return (image + 1) / 2


class ResidualBlock(nn.Module):
    """``R256``: two reflection-padded 3x3 convolutions with instance norm, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN generator: image ``(B, 3, H, W)`` in [0, 1] -> translated image, same size, in [0, 1].

    Args:
        width: channels of the first layer (the paper: 64); the others are 2x and 4x that.
        blocks: residual blocks at 1/4 resolution (the paper: 9 at 256 px, 6 at 128 px).
    """

    def __init__(self, *, width: int = 64, blocks: int = 9) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise OptionError(f"a ResNet generator needs width >= 1 and blocks >= 0 (got {width}, {blocks})")
        self.width, self.blocks = width, blocks
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
        for factor in (1, 2):  # d128, d256: stride-2 3x3 convolutions
            layers += [nn.Conv2d(w * factor, w * factor * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(w * factor * 2), nn.ReLU(True)]
        layers += [ResidualBlock(4 * w) for _ in range(blocks)]
        for factor in (4, 2):  # u128, u64: fractionally strided 3x3 convolutions
            layers += [nn.ConvTranspose2d(w * factor, w * factor // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(w * factor // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def architecture(self) -> dict[str, int]:
        """The constructor arguments (stored next to the weights)."""
        return {"width": self.width, "blocks": self.blocks}

    def forward(self, image: Tensor) -> Tensor:
        """Translate ``image``; any size (reflection-padded to a multiple of 4, cropped back)."""
        height, width = image.shape[-2:]
        x, _ = pad_to_multiple(image, STRIDE)
        return to_unit(self.net(to_signed(x)))[..., :height, :width]


def patch_size(size: int, downsamples: int, tail: int = 2) -> int:
    """Output side of a PatchGAN-style stack on an input side ``size``.

    The stack is ``downsamples`` 4x4 stride-2 convolutions with padding 1 (each floor-halves), then
    ``tail`` stride-1 4x4 convolutions with padding 1 (each removes one).
    """
    for _ in range(downsamples):
        size //= 2
    return size - tail


class PatchDiscriminator(nn.Module):
    """The 70x70 PatchGAN: image ``(B, 3, H, W)`` in [0, 1] -> real/fake scores ``(B, 1, H', W')``.

    Args:
        width: channels of the first layer (the paper: 64), doubled per layer up to 8x.
        layers: stride-2 layers (3 = the 70x70 receptive field of the paper; 2 = 34x34,
            4 = 142x142).
    """

    def __init__(self, *, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise OptionError(f"a PatchGAN needs width >= 1 and layers >= 1 (got {width}, {layers})")
        self.width, self.layers = width, layers
        modules: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = width
        for index in range(1, layers + 1):
            out = width * min(2**index, 8)
            stride = 2 if index < layers else 1  # C512 keeps the resolution
            modules += [nn.Conv2d(channels, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out),
                        nn.LeakyReLU(0.2, True)]
            channels = out
        modules.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*modules)
        init_weights(self)

    @property
    def min_size(self) -> int:
        """The smallest input side with at least a 1x1 output (24 px for the 70x70 PatchGAN)."""
        size = 1
        while patch_size(size, self.layers) < 1:
            size += 1
        return size

    def forward(self, image: Tensor) -> Tensor:
        """Score map ``(B, 1, h, w)`` of ``image`` in [0, 1]; refuses images smaller than :attr:`min_size`."""
        if min(image.shape[-2:]) < self.min_size:
            raise ImageTooSmallError(f"the PatchGAN with {self.layers} layers needs images of at least "
                                     f"{self.min_size} px a side, got {spatial_size(image)}")
        return self.net(to_signed(image))


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs on the image and on 2x, 4x, ... average-pooled copies of it.

    Chen et al. 2021 (IEContraAST, sec. 3.2 and their code) judge a stylization against the
    whole painting collection with three discriminators at three scales, so that both the
    brush-stroke scale and the larger layout count; the coarser scales see downsampled images
    (avg-pool 3x3, stride 2, as their ``MultiDiscriminator`` does).

    Args:
        scales: number of discriminators (3 in Chen et al.).
        width, layers: of each :class:`PatchDiscriminator`.

    ``forward`` returns one score map per scale; images smaller than a scale's PatchGAN needs
    skip that scale (the finest always runs, and refuses too small an image).
    """

    def __init__(self, *, scales: int = 3, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        if scales < 1:
            raise OptionError(f"a multi-scale discriminator needs scales >= 1, got {scales}")
        self._nets = [PatchDiscriminator(width=width, layers=layers) for _ in range(scales)]
        self.scales = nn.ModuleList(self._nets)  # registers them; ``_nets`` is the same list, typed

    def forward(self, image: Tensor) -> list[Tensor]:
        """One score map per scale, finest first; stops at the first scale whose input is too small."""
        scores = []
        for index, net in enumerate(self._nets):
            if index and min(image.shape[-2:]) < net.min_size:
                break
            scores.append(net(image))
            image = F.avg_pool2d(image, 3, stride=2, padding=1, count_include_pad=False)
        return scores


def lsgan_loss(scores: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss (Mao et al. 2017; CycleGAN sec. 4).

    The mean of ``(D(x) - 1)^2`` for ``real`` targets, of ``D(x)^2`` for fake ones. The generator
    minimises it with ``real=True`` on its fakes; the discriminator uses both (CycleGAN halves their sum).
    """
    target = 1.0 if real else 0.0
    return F.mse_loss(scores.float(), torch.full_like(scores.float(), target))


def log_loss(scores: Tensor, real: bool) -> Tensor:
    """The original GAN log-loss (Goodfellow et al. 2014) against real or fake targets.

    Sigmoid cross-entropy on the scores as logits, as the collection-trained GANs of Sanakoyeu et al.
    2018 and Kotovenko et al. 2019 use it (non-saturating for the generator with ``real=True``).
    """
    target = torch.full_like(scores.float(), 1.0 if real else 0.0)
    return F.binary_cross_entropy_with_logits(scores.float(), target)


class ImagePool:
    """A buffer of up to ``size`` generated images (Shrivastava et al. 2017; CycleGAN sec. 4).

    :meth:`query` stores every new image while the pool fills; once full, each new image is,
    with probability 1/2, swapped for a random stored one (the stored one is returned and the
    new one takes its place) and otherwise returned as is. Random draws come from torch's
    default generator, so a seeded run (and a resumed one: the trainer checkpoints that
    generator and :meth:`state_dict`) is deterministic. ``size`` 0 disables the pool.
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise OptionError(f"the image pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []

    def __len__(self) -> int:
        """The number of images stored in the pool."""
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """``images`` ``(B, C, H, W)`` (detached) -> a batch of the same shape for the discriminator."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()).item() < 0.5:
                index = int(torch.randint(len(self.images), ()).item())
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Tensor]:
        """The stored images as one tensor ``(N, C, H, W)`` (absent while empty)."""
        return {"images": torch.cat(self.images)} if self.images else {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        stored = state.get("images")
        self.images = [] if stored is None else [image[None].clone() for image in stored]
