"""Encoder features of fixed crops, computed once: a training data source that skips the encoder.

Some losses read only the frozen encoder's features of their inputs, never the pixels (Linear
Style Transfer's transform trained in feature space against the whitening–colouring teacher,
:mod:`atelier.methods.lst`). Encoding the same kind of crop again every step is then most of a
CPU step's cost. :class:`FeaturePool` draws a fixed set of random crops from an image source
once, encodes them once, and serves random batches of their features (with horizontal flips
done on the features), so a step costs only the trained network and its loss.

The trade: a finite pool of crops (``crops_per_image`` per image on average) instead of fresh
random crops each step, so use it for a transform that reads feature statistics, not for a
network that must learn pixel detail. A task opts in through
:meth:`~atelier.train.task.TrainingTask.cached_layer`; the config's ``feature_cache`` sets
the pool size (0 = off).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..progress import Progress
from .data import ImageSource

__all__ = ["FeaturePool"]

#: Crops encoded per call while filling the pool.
FILL_BATCH = 8


class FeaturePool:
    """``len(source) * crops_per_image`` random crops of ``source``, encoded once by ``encode``.

    Args:
        source: the image source whose crops are encoded (its ``batch`` draws them).
        encode: ``images (B, 3, S, S) -> features (B, C, h, w)`` (no gradients needed).
        crops_per_image: pool size per image of the source (at least one crop in all).
        seed: seeds the crops drawn, so a resumed run rebuilds the same pool.
        dtype: storage type of the features (bf16 halves the memory of float32).
        progress: show a progress line while encoding.
        what: names the source in the progress line.
    """

    def __init__(self, source: ImageSource, encode: Callable[[Tensor], Tensor], *, crops_per_image: float,
                 seed: int, dtype: torch.dtype = torch.bfloat16, progress: bool = True, what: str = "images") -> None:
        if crops_per_image <= 0:
            raise ValueError(f"crops_per_image must be > 0, got {crops_per_image}")
        self.source = source
        count = max(1, round(len(source) * crops_per_image))
        rng = random.Random(seed)
        bar = Progress(count, label=f"encode {what} ", unit="crop", enabled=progress)
        chunks: list[Tensor] = []
        done = 0
        with torch.no_grad():
            while done < count:
                size = min(FILL_BATCH, count - done)
                chunks.append(encode(source.batch(size, rng)).to(dtype))
                done += size
                bar.update(done)
        bar.close()
        self.features = torch.cat(chunks)

    @property
    def skipped(self) -> set[Path]:
        """Unreadable files of the underlying source."""
        return self.source.skipped

    def __len__(self) -> int:
        """The number of images in the source (not of pool entries)."""
        return len(self.source)

    @property
    def nbytes(self) -> int:
        """Memory held by the pool."""
        return self.features.numel() * self.features.element_size()

    def batch(self, size: int, rng: random.Random) -> Tensor:
        """``(size, C, h, w)`` features of random pool entries, each flipped left-right with probability 1/2.

        The encoder is nearly equivariant to flips, so a flipped feature map stands in for the
        features of the flipped crop.
        """
        picks = [rng.randrange(len(self.features)) for _ in range(size)]
        flips = [rng.random() < 0.5 for _ in range(size)]
        items = [self.features[i].flip(-1) if flip else self.features[i] for i, flip in zip(picks, flips)]
        return torch.stack(items).float()

    def fixed(self, count: int, size: int) -> Tensor:
        """Images for samples and evaluation: those of the underlying source (pixels, not features)."""
        return self.source.fixed(count, size)
