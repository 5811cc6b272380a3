"""Quality metrics: structure kept from the content, statistics taken from the style."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.vgg import VGGEncoder
from ..ops._checks import check_bchw
from ..ops.color import luminance
from ..ops.gram import gram_matrix

__all__ = ["gram_distance", "ssim"]

#: Layers of the style statistics compared by :func:`gram_distance` (Gatys et al. 2016).
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: Tensor, b: Tensor, *, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean structural similarity of the luminance of two images (Wang et al. 2004, eq. 13).

    Gaussian window (11 px, sigma 1.5), constants ``C1 = (0.01)^2``, ``C2 = (0.03)^2`` for
    data in [0, 1]; valid positions only (no padding). Colour images are compared on their
    luminance (Y of YIQ), so a pure recolouring keeps a high score.

    Args:
        a: ``(B, 1 or 3, H, W)`` in [0, 1], each side at least ``window``.
        b: the other image, of ``a``'s shape.
        window: side of the Gaussian window, px.
        sigma: its standard deviation, px.

    Returns:
        ``(B,)`` scores in [-1, 1]; 1 for identical images.
    """
    check_bchw(a, "a")
    check_bchw(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"ssim needs images of at least {window}x{window} px, got {tuple(a.shape[-2:])}")
    x = (luminance(a) if a.shape[1] == 3 else a).double()
    y = (luminance(b) if b.shape[1] == 3 else b).double()
    w = _gaussian_window(window, sigma, x.dtype).to(x.device)
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.mean((1, 2, 3)).to(a.dtype)


@torch.no_grad()
def gram_distance(
    encoder: VGGEncoder, image: Tensor, style: Tensor, layers: Sequence[str] = STYLE_LAYERS
) -> float:
    """Relative Gram distance ``mean_l ||G_l(x) - G_l(s)||_F / ||G_l(s)||_F`` (lower = closer style).

    Gram matrices as in Gatys et al. 2016 (eq. 3, normalised by ``C * H * W``), so images of
    different sizes compare; each layer counts equally whatever its magnitude.
    """
    ours = encoder(image, layers)
    theirs = encoder(style, layers)
    distances = []
    for layer in layers:
        g, t = gram_matrix(ours[layer].float()), gram_matrix(theirs[layer].float())
        distances.append(float(torch.linalg.norm(g - t) / torch.linalg.norm(t).clamp_min(1e-12)))
    return sum(distances) / len(distances)
