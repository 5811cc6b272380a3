"""Ruder et al.'s temporal loss: stay close to the previous output where it can be carried here."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .perceptual import LossTerm

__all__ = ["TemporalLoss"]


class TemporalLoss(LossTerm):
    """``weight * (1/D) * sum_k c_k (x_k - w_k)^2`` (Ruder, Dosovitskiy, Brox 2016, eq. 5).

    ``w`` is the previous output frame warped onto this frame by the optical flow and ``c`` its
    per-pixel reliability (0 at occlusions and motion boundaries); ``D = C * H * W``. A pixel-space
    term: it asks for no encoder layer.
    """

    name = "temporal"

    def __init__(self, warped: Tensor, mask: Tensor, weight: float):
        super().__init__()
        self.warped = warped.detach().float()
        self.mask = mask.detach().float()
        self.weight = weight

    def forward(self, features: Mapping[str, Tensor], image: Tensor) -> Tensor:
        """The weighted mean squared difference to the warped previous output on the reliable pixels."""
        warped = self.warped.to(image.device)
        mask = self.mask.to(image.device)
        return self.weight * (mask * (image - warped).pow(2)).mean()
