"""A domain judge for unpaired translation: does a translated image look like the target domain?

The judge is independent of the translation model (a GAN's own discriminator is no referee of its
generator): logistic regression on frozen encoder statistics, the per-channel mean and standard
deviation of relu1_1 ... relu4_1 (the "style" statistics of AdaIN, Huang & Belongie 2017, eq. 8;
1920 numbers per image with VGG-19), fitted on training images of the two domains only. It then
reports the share of held-out (translated) images it classifies as a domain. It sees colour and
texture statistics (snow, foliage, sky, light), not semantics, so read its score next to the images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.vgg import VGGEncoder
from ..errors import OptionError

__all__ = ["DOMAIN_LAYERS", "DomainJudge"]

#: Layers whose mean/std statistics the judge reads.
DOMAIN_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


class DomainJudge:
    """Binary domain classifier (A = 0, B = 1) on an encoder's mean/std statistics.

    >>> judge = DomainJudge(load_vgg19(), size=128)  # doctest: +SKIP
    >>> judge.fit(judge.features(summer_images), judge.features(winter_images))  # doctest: +SKIP
    >>> judge.share_b(judge.features(translated))  # share judged winter  # doctest: +SKIP

    Args:
        encoder: a VGG-style encoder (``encoder(image, layers) -> {layer: (B, C, H, W)}``).
        size: images are resized to ``size`` x ``size`` px before encoding (statistics at one scale).
        layers: the layers whose per-channel mean and standard deviation are the features.
    """

    def __init__(self, encoder: VGGEncoder, *, size: int = 128, layers: Sequence[str] = DOMAIN_LAYERS) -> None:
        if size < 16:
            raise OptionError(f"the judge's size must be at least 16 px, got {size}")
        self.encoder = encoder
        self.size = size
        self.layers = tuple(layers)
        self.weight: Tensor | None = None
        self.bias = torch.zeros(())
        self.center = self.scale = torch.zeros(0)

    def features(self, images: Tensor | Iterable[Tensor]) -> Tensor:
        """``(N, features)`` statistics of images ``(B, 3, H, W)`` in [0, 1].

        ``images`` is a tensor or an iterable of them, of any sizes.
        """
        batches = [images] if isinstance(images, Tensor) else list(images)
        if not batches:
            raise OptionError("the judge needs at least one image")
        rows = []
        for batch in batches:
            square = F.interpolate(batch.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False)
            with torch.no_grad():
                maps = self.encoder(square, self.layers)
            stats = []
            for layer in self.layers:
                std, mean = torch.std_mean(maps[layer].float(), dim=(2, 3))
                stats += [mean, std]
            rows.append(torch.cat(stats, dim=1))
        return torch.cat(rows)

    def fit(self, domain_a: Tensor, domain_b: Tensor, *, decay: float = 1e-2) -> float:
        """Fit on features of domain A (label 0) and domain B (label 1); returns the training accuracy.

        Standardised features, balanced classes (each sample weighs 1 / its class size), an L2
        penalty ``decay * |w|^2``, L-BFGS to convergence (the loss is convex).
        """
        if len(domain_a) < 2 or len(domain_b) < 2:
            raise OptionError(f"the judge needs at least 2 images per domain, got {len(domain_a)} and {len(domain_b)}")
        x = torch.cat([domain_a, domain_b]).float()
        y = torch.cat([torch.zeros(len(domain_a)), torch.ones(len(domain_b))])
        self.center, self.scale = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - self.center) / self.scale
        weight = torch.zeros(x.shape[1], requires_grad=True)
        bias = torch.zeros((), requires_grad=True)
        sample = torch.where(y == 1, 0.5 / len(domain_b), 0.5 / len(domain_a))
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            logits = x @ weight + bias
            loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * sample).sum()
            loss = loss + decay * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return float(((self.predict(torch.cat([domain_a, domain_b])) > 0.5).float() == y).float().mean())

    def predict(self, features: Tensor) -> Tensor:
        """Probability of domain B for each row of ``features``."""
        if self.weight is None:
            raise OptionError("the judge is not fitted yet: call fit() with features of both domains first")
        if features.shape[-1] != self.weight.shape[0]:
            raise OptionError(f"features have {features.shape[-1]} columns, the judge was fitted on "
                              f"{self.weight.shape[0]}")
        return torch.sigmoid(((features.float() - self.center) / self.scale) @ self.weight + self.bias)

    def share_b(self, features: Tensor) -> float:
        """The share of rows classified as domain B (probability above 0.5)."""
        return float((self.predict(features) > 0.5).float().mean())
