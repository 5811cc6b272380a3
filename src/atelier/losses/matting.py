"""The photorealism regularizer of Deep Photo Style Transfer (Luan et al. 2017) as a loss term."""

from __future__ import annotations

from torch import Tensor

from ..ops.matting import laplacian_to_torch, matting_energy, matting_laplacian
from .perceptual import LossTerm

__all__ = ["MattingLoss"]


class MattingLoss(LossTerm):
    """Photorealism regularization ``weight * sum_c V_c^T M V_c`` (Luan et al. 2017, eq. 2)."""

    name = "photo"

    def __init__(self, content: Tensor, weight: float, eps: float = 1e-7):
        super().__init__()
        self.laplacian = matting_laplacian(content, eps=eps)
        self.weight = weight

    def forward(self, features, image: Tensor) -> Tensor:
        """``weight`` times the matting Laplacian energy of ``image`` (Luan et al. 2017, eq. 2)."""
        if image.device.type != "cpu" and not isinstance(self.laplacian, Tensor):
            # On a GPU, keep the sparse products there instead of copying the image every step.
            self.laplacian = laplacian_to_torch(self.laplacian, image.device)
        return self.weight * matting_energy(image.float(), self.laplacian)
