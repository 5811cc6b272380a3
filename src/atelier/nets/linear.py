"""The learned linear transformation of Linear Style Transfer (Li, Liu, Kautz, Yang 2019).

Two small CNNs read the (centred) content and style features; each ends in the covariance of
its 32-channel output and a fully connected layer, giving ``32 x 32`` matrices whose product
is the transformation ``T`` (sec. 3, fig. 2). ``T`` acts on a 32-channel compression of the
content features, which is then expanded back and given the style's mean (eq. 3–6):

``F_cs = U(T · C(F_c - mu_c)) + mu_s``.

The CNNs have three 3x3 convolutions (relu3_1: 256-128-64-32, relu4_1: 512-256-128-32), as in
the authors' code. Features are divided by ``input_scale`` on entry and multiplied back on exit
(the caffe VGG-19's raw relu4_1 values reach hundreds; the papers' VGG is normalised).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import OptionError
from ..ops.stats import mean_std

__all__ = ["CovarianceEncoder", "LinearTransform"]

#: Scale of the fully connected layers' initial weights relative to PyTorch's default, so that an
#: untrained ``T`` is near the identity (their bias is set to the identity matrix).
FC_INIT_SCALE = 0.01


def _weighted_mean(features: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return features.mean((2, 3), keepdim=True)
    return mean_std(features, mask=mask)[0]


class CovarianceEncoder(nn.Module):
    """Features ``(B, C, H, W)`` -> a ``(B, k, k)`` matrix: CNN, covariance, fully connected."""

    def __init__(self, channels: int, matrix_size: int = 32) -> None:
        super().__init__()
        hidden = (channels // 2, channels // 4)
        self.convs = nn.Sequential(
            nn.Conv2d(channels, hidden[0], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden[0], hidden[1], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden[1], matrix_size, 3, padding=1),
        )
        self.fc = nn.Linear(matrix_size * matrix_size, matrix_size * matrix_size)
        self.matrix_size = matrix_size
        with torch.no_grad():
            self.fc.weight.mul_(FC_INIT_SCALE)
            self.fc.bias.copy_(torch.eye(matrix_size).flatten())

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """The ``(B, k, k)`` matrix: convolutions, covariance (over ``mask``'s region when given), fully connected."""
        y = self.convs(features).float().flatten(2)  # (B, k, HW)
        if mask is None:
            cov = y @ y.transpose(1, 2) / y.shape[-1]
        else:  # covariance over the region (spatial control)
            w = nn.functional.interpolate(mask.float(), size=features.shape[-2:], mode="area").flatten(2)
            cov = (y * w) @ y.transpose(1, 2) / w.sum(-1, keepdim=True).clamp_min(1e-8)
        k = self.matrix_size
        return self.fc(cov.reshape(len(cov), k * k)).reshape(-1, k, k)


class LinearTransform(nn.Module):
    """Content and style features at one layer -> transformed content features (Li et al. 2019).

    Args:
        channels: feature channels at the layer (256 at relu3_1, 512 at relu4_1 in VGG-19).
        matrix_size: side of ``T`` (32 in the paper).
        input_scale: divisor of the features (see the module docstring).
    """

    input_scale: Tensor  # a buffer: the divisor of the input features

    def __init__(self, channels: int, matrix_size: int = 32, input_scale: float = 1.0) -> None:
        super().__init__()
        if channels < 4 or matrix_size < 1:
            raise OptionError(f"need channels >= 4 and matrix_size >= 1, got {channels} and {matrix_size}")
        self.register_buffer("input_scale", torch.tensor(float(input_scale)))
        self.content_net = CovarianceEncoder(channels, matrix_size)
        self.style_net = CovarianceEncoder(channels, matrix_size)
        self.compress = nn.Conv2d(channels, matrix_size, 1)
        self.uncompress = nn.Conv2d(matrix_size, channels, 1)

    def fit_compression(self, content: Tensor) -> float:
        """Initialise the compression from the principal components of ``content``; returns the share of variance kept.

        The compression is set to the principal components of the (centred) ``content`` features
        and the expansion to its transpose, so that with ``T`` near the identity the untrained
        module passes the content's main structure through.

        A data-dependent initialisation (the paper trains these 1x1 convolutions from random
        weights over far more steps than a CPU run has).
        """
        x = content.float() / self.input_scale
        x = (x - x.mean((2, 3), keepdim=True)).transpose(0, 1).flatten(1)  # (C, B*H*W)
        values, vectors = torch.linalg.eigh(x @ x.T / x.shape[1])
        k = min(self.compress.out_channels, len(values))
        basis = vectors[:, -k:].flip(1)  # (C, k), largest first
        with torch.no_grad():
            for conv in (self.compress, self.uncompress):
                conv.weight.zero_()
                conv.bias.zero_()  # type: ignore[union-attr]  # built with a bias
            self.compress.weight[:k] = basis.T[..., None, None]
            self.uncompress.weight[:, :k] = basis[..., None, None]
        return float(values[-k:].sum() / values.sum().clamp_min(1e-12))

    def style_code(self, style: Tensor) -> tuple[Tensor, Tensor]:
        """``(style matrix (B, k, k), style mean (B, C, 1, 1))``, reusable over many contents."""
        style = style / self.input_scale.to(style.dtype)
        mean = style.mean((2, 3), keepdim=True)
        return self.style_net(style - mean), mean

    def transform_compressed(self, content: Tensor, code: tuple[Tensor, Tensor],
                             content_mask: Tensor | None = None) -> Tensor:
        """``T · C(F_c - mu_c)``: the transformed content in the compressed space, ``(B, k, H, W)``."""
        content = content / self.input_scale.to(content.dtype)
        centred = content - _weighted_mean(content, content_mask)
        matrix = code[0] @ self.content_net(centred, content_mask)  # T = S · C
        b, _, h, w = content.shape
        compressed = self.compress(centred).float().flatten(2)
        return (matrix @ compressed).reshape(b, -1, h, w)

    def compressed_style(self, style: Tensor) -> Tensor:
        """``C(F_s - mu_s)``: the style in the compressed space, ``(B, k, H', W')``.

        Its covariance is the one ``T`` should map the content's compressed covariance to (eq. 5).
        """
        style = style / self.input_scale.to(style.dtype)
        return self.compress(style - style.mean((2, 3), keepdim=True)).float()

    def compressed_content(self, content: Tensor) -> Tensor:
        """``C(F_c - mu_c)``, ``(B, k, H, W)``."""
        return self.compressed_style(content)

    def expand(self, transformed: Tensor, code: tuple[Tensor, Tensor]) -> Tensor:
        """``U(transformed) + mu_s``: a :meth:`transform_compressed` result back in the layer's space (eq. 6).

        The result is in the features' units.
        """
        return (self.uncompress(transformed) + code[1]) * self.input_scale.to(transformed.dtype)

    def transfer(self, content: Tensor, code: tuple[Tensor, Tensor], content_mask: Tensor | None = None) -> Tensor:
        """Transformed content features given a :meth:`style_code`.

        ``content_mask`` restricts the content statistics to a region; the transform still applies
        everywhere.
        """
        return self.expand(self.transform_compressed(content, code, content_mask).to(content.dtype), code)

    def forward(self, content: Tensor, style: Tensor, content_mask: Tensor | None = None) -> Tensor:
        """``content`` features transformed to ``style``: :meth:`transfer` with the :meth:`style_code` of ``style``."""
        return self.transfer(content, self.style_code(style), content_mask)
