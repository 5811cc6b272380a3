"""Quality metrics: structure kept from the content, statistics taken from the style."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.vgg import VGGEncoder
from ..io.images import resize_longest
from ..nets.linear import LinearTransform
from ..ops._checks import check_bchw
from ..ops.color import luminance
from ..ops.gram import gram_matrix
from ..ops.layout import spatial_size
from ..ops.wct import covariance

__all__ = [
    "STATISTICS",
    "STATISTICS_SIZE",
    "STYLE_LAYERS",
    "StyleStatistics",
    "compressed_covariance_error",
    "covariance_error",
    "gram_distance",
    "identify_style",
    "ssim",
    "stride_grid",
    "style_distance",
    "style_statistics",
]

#: Layers of the style statistics compared by :func:`gram_distance` (Gatys et al. 2016).
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: The statistics :func:`style_distance` compares by default, each with equal weight.
STATISTICS = ("mean", "std", "gram")
#: Longest side, px, at which :func:`style_statistics` looks at an image by default.
STATISTICS_SIZE = 256


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def psnr(output: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of ``output`` (clamped to [0, 1]) against ``target``.

    Images in [0, 1]: ``10 log10(1 / MSE)`` (MSE floored at 1e-12).
    """
    mse = float(torch.mean((output.float().clamp(0, 1) - target.float()) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


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
        raise ValueError(f"ssim needs images of at least {window}x{window} px, got {spatial_size(a)}")
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


@dataclass(frozen=True)
class StyleStatistics:
    """Style statistics of one image at each encoder layer (see :func:`style_statistics`).

    Attributes:
        mean: ``{layer: (C,)}`` per-channel mean of the features over positions.
        std: ``{layer: (C,)}`` per-channel standard deviation over positions (population).
        gram: ``{layer: (C, C)}`` Gram matrix ``F F^T / (C H W)`` (Gatys et al. 2016, eq. 3).
    """

    mean: dict[str, Tensor]
    std: dict[str, Tensor]
    gram: dict[str, Tensor]

    @property
    def layers(self) -> tuple[str, ...]:
        """The encoder layers the statistics were taken at."""
        return tuple(self.gram)


@torch.no_grad()
def style_statistics(
    encoder: VGGEncoder, image: Tensor, *, layers: Sequence[str] = STYLE_LAYERS, size: int | None = STATISTICS_SIZE
) -> StyleStatistics:
    """The AdaIN statistics and the Gram matrices of one image ``(1, 3, H, W)`` in [0, 1] at ``layers``.

    The AdaIN statistics are the per-channel mean and std (Huang & Belongie 2017, eq. 8); the Gram
    matrices are those of Gatys et al. 2016, eq. 3.

    The image is first resized (antialiased bilinear, aspect kept) so its longest side is ``size``
    px (None keeps it): the statistics of a 512 px output and a 2000 px painting then describe
    the same scale of texture, and the cost does not grow with the input.
    """
    check_bchw(image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"style_statistics takes one image (1, 3, H, W), got a batch of {image.shape[0]}")
    if size is not None:
        image = resize_longest(image.float(), size)
    features = encoder(image.float(), list(layers))
    mean, std, gram = {}, {}, {}
    for layer in layers:
        f = features[layer].float()
        s, m = torch.std_mean(f[0].flatten(1), dim=1, correction=0)
        mean[layer], std[layer], gram[layer] = m, s, gram_matrix(f)[0]
    return StyleStatistics(mean=mean, std=std, gram=gram)


def style_distance(image: StyleStatistics, style: StyleStatistics, statistics: Sequence[str] = STATISTICS) -> float:
    """The relative distance of ``image``'s style statistics to ``style``'s (lower = closer).

    ``d = 1 / (L |S|) * sum_{l in layers} sum_{s in statistics} ||s_l(image) - s_l(style)|| / ||s_l(style)||``

    with the Euclidean norm of the mean and std vectors and the Frobenius norm of the Gram
    matrices; every layer and every statistic weighs the same whatever its magnitude. Relative
    to ``style`` (not symmetric). With ``statistics=("gram",)`` and unresized images this is
    :func:`gram_distance`.
    """
    if not statistics:
        raise ValueError("style_distance needs at least one statistic")
    total = 0.0
    for name in statistics:
        ours, theirs = getattr(image, name), getattr(style, name)
        for layer in style.layers:
            total += float(torch.linalg.norm(ours[layer] - theirs[layer])
                           / torch.linalg.norm(theirs[layer]).clamp_min(1e-12))
    return total / (len(statistics) * len(style.layers))


def identify_style(image: StyleStatistics, candidates: Sequence[StyleStatistics],
                   statistics: Sequence[str] = STATISTICS) -> tuple[int, list[float]]:
    """The index of the candidate style nearest to ``image`` and the distances to every candidate.

    Distances are :func:`style_distance`; on a tie the first candidate wins.
    """
    if not candidates:
        raise ValueError("identify_style needs at least one candidate style")
    distances = [style_distance(image, candidate, statistics) for candidate in candidates]
    return min(range(len(distances)), key=distances.__getitem__), distances


def stride_grid(image: Tensor, period: int = 8) -> float:
    """How much of an image's fine detail repeats with a network's stride: the grid index.

    The luminance's high-pass residual (minus a ``period + 1`` px box blur) is averaged over all
    ``period x period`` cells position by position; a pattern tied to the stride (a decoder that
    paints each relu4_1 cell as a block: ``period`` 8) survives that average, image content does
    not. Returns the mean magnitude of the averaged cell over the mean magnitude of the residual:
    about 0.05-0.1 for photos, 0.2-0.3 for a visible 8 px grid.

    Args:
        image: ``(1, 3, H, W)`` or ``(1, 1, H, W)`` in [0, 1], each side at least ``2 * period``.
        period: the cell size in px (8 for relu4_1 decoders, 4 for relu3_1, 2 for a checkerboard).
    """
    check_bchw(image, "image")
    if min(image.shape[-2:]) < 2 * period:
        raise ValueError(f"stride_grid needs at least {2 * period} px a side, got {spatial_size(image)}")
    y = (luminance(image) if image.shape[1] == 3 else image)[:1].double()
    low, high = period // 2, period - period // 2  # a (period + 1)-px box keeps the size
    blur = F.avg_pool2d(F.pad(y, (low, high, low, high), mode="replicate"), period + 1, stride=1)
    residual = (y - blur)[0, 0]
    h, w = (residual.shape[0] // period) * period, (residual.shape[1] // period) * period
    cells = residual[:h, :w].reshape(h // period, period, w // period, period).mean((0, 2))
    return float(cells.abs().mean() / residual.abs().mean().clamp_min(1e-12))


def covariance_error(output: Tensor, content: Tensor, style: Tensor) -> float:
    """``||cov(out) - cov(s)||_F / ||cov(c) - cov(s)||_F``, averaged over the batch.

    How much of the covariance gap between content and style features a transform leaves
    (0 = WCT's exact match, 1 = none closed, e.g. the identity). Features ``(B, C, H, W)``; for T,
    its compressed space (:func:`compressed_covariance_error`).
    """
    cov = [covariance(x.detach().float())[1] for x in (output, content, style)]
    remaining = torch.linalg.matrix_norm(cov[0] - cov[2])
    gap = torch.linalg.matrix_norm(cov[1] - cov[2]).clamp_min(1e-12)
    return float((remaining / gap).mean())


def compressed_covariance_error(transform: LinearTransform, content: Tensor, style: Tensor) -> float:
    """:func:`covariance_error` of ``T`` in its compressed space, item by item; features at T's layer.

    Li et al. 2019, eq. 5: T should map the covariance of ``C(F_c)`` to that of ``C(F_s)``.
    """
    with torch.no_grad():
        errors = []
        for i in range(len(content)):
            c, s = content[i : i + 1].float(), style[i : i + 1].float()
            transformed = transform.transform_compressed(c, transform.style_code(s))
            errors.append(covariance_error(transformed, transform.compressed_content(c), transform.compressed_style(s)))
    return sum(errors) / len(errors)
