r"""Edge-aware smoothing that makes a stylized image a local affine recolouring of the photo.

He, Sun, Tang 2013, "Guided Image Filtering" (TPAMI; ECCV 2010), sec. 3.5, eq. 19–21 (colour
guide): in every :math:`(2r+1) \times (2r+1)` window :math:`w_k` the output is modelled as an
affine function of the guide's colour, :math:`q_i = a_k^\top I_i + b_k`, fitted to the input
:math:`p` by ridge regression,

.. math::

    a_k = (\Sigma_k + \epsilon U)^{-1} \Big(\frac{1}{|w|} \sum_{i \in w_k} I_i p_i - \mu_k \bar p_k\Big),
    \qquad b_k = \bar p_k - a_k^\top \mu_k,

and the coefficients of all windows covering a pixel are averaged,
:math:`q_i = \bar a_i^\top I_i + \bar b_i`. With the content photo as the guide :math:`I` and
the stylized image as :math:`p` (one regression per output channel, so :math:`a_k` is a
:math:`3 \times 3` colour matrix), what survives is exactly the part of the stylization that
is locally an affine function of the photo's colours: painterly strokes and texture that do
not follow the photo's edges are removed, colour and tone are kept. This is the locally affine
colour model behind the matting Laplacian of :mod:`atelier.ops.matting` (Levin et al. 2008,
eq. 2; Luan et al. 2017, eq. 2), applied as a one-shot filter, and the "fast" photorealistic
smoothing step of Li et al. 2018, "A Closed-form Solution to Photorealistic Image
Stylization" (ECCV, sec. 3.3, FastPhotoStyle's ``GIFSmoothing``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw

__all__ = ["box_filter", "guided_filter", "photo_smooth"]


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Sum over the ``(2r+1) x (2r+1)`` window around each pixel, clipped at the borders.

    Two cumulative sums and differences (He et al. 2013, sec. 3.3: ``O(N)`` whatever the
    radius); a radius larger than the image gives the sum of the whole image everywhere.

    Args:
        x: ``(B, C, H, W)``.
        radius: ``r >= 0``.

    Returns:
        ``(B, C, H, W)``, the window sums (divide by ``box_filter(ones)`` for means).
    """
    check_bchw(x, "x")
    h, w = x.shape[-2:]
    out = x
    for dim, size in ((-2, h), (-1, w)):
        cumulative = F.pad(out.cumsum(dim), (0, 0, 1, 0) if dim == -2 else (1, 0))
        index = torch.arange(size, device=x.device)
        upper = (index + radius + 1).clamp(max=size)
        lower = (index - radius).clamp(min=0)
        out = cumulative.index_select(dim, upper) - cumulative.index_select(dim, lower)
    return out


def guided_filter(source: Tensor, guide: Tensor, radius: int, eps: float) -> Tensor:
    r"""Guided filter of ``source`` with a colour ``guide`` (He et al. 2013, eq. 19–21).

    Args:
        source: ``(B, C, H, W)``, the image to filter (the input :math:`p`), any ``C``.
        guide: ``(B, 3, H, W)``, the guide :math:`I` whose edges are kept.
        radius: window radius ``r``; windows of ``(2r+1)^2`` pixels, clipped at the borders.
        eps: ridge :math:`\epsilon` on the guide's colour covariance (in [0, 1] colour units
            squared): small values fit the local affine model closely, large values shrink
            :math:`a` to zero and the output to the local mean of ``source``.

    Returns:
        ``(B, C, H, W)`` in ``source``'s dtype (computed in float64), not clamped.
    """
    check_bchw(source, "source")
    check_bchw(guide, "guide", channels=3)
    if source.shape[0] != guide.shape[0] or source.shape[-2:] != guide.shape[-2:]:
        raise OptionError(
            f"source {tuple(source.shape)} and guide {tuple(guide.shape)} must have the same batch and size"
        )
    if radius < 0 or int(radius) != radius:
        raise OptionError(f"radius must be a non-negative integer, got {radius}")
    if not eps > 0:
        raise OptionError(f"eps must be > 0, got {eps}")
    # float64: the covariances are differences of means (E[II^T] - mu mu^T) and lose all
    # their digits in float32 when eps is small.
    p = source.detach().double()
    guide_ = guide.detach().double()
    b, c, h, w = p.shape
    count = box_filter(torch.ones(1, 1, h, w, dtype=torch.float64, device=p.device), radius)

    def mean(x: Tensor) -> Tensor:
        return box_filter(x, radius) / count

    mu = mean(guide_)  # (B, 3, H, W)
    mu_p = mean(p)  # (B, C, H, W)
    # Guide covariance (B, H, W, 3, 3) and guide/source cross-covariance (B, H, W, 3, C).
    ii = (guide_[:, :, None] * guide_[:, None]).reshape(b, 9, h, w)
    sigma = (mean(ii).reshape(b, 3, 3, h, w) - mu[:, :, None] * mu[:, None]).permute(0, 3, 4, 1, 2)
    ip = (guide_[:, :, None] * p[:, None]).reshape(b, 3 * c, h, w)
    cross = (mean(ip).reshape(b, 3, c, h, w) - mu[:, :, None] * mu_p[:, None]).permute(0, 3, 4, 1, 2)
    eye = torch.eye(3, dtype=torch.float64, device=p.device)
    # a_k (B, H, W, 3, C): a batched 3x3 solve (Sigma_k + eps U is symmetric positive definite).
    a = torch.linalg.solve(sigma + eps * eye, cross)
    offset = mu_p - torch.einsum("bhwjc,bjhw->bchw", a, mu)  # b_k, (B, C, H, W)
    mean_a = mean(a.permute(0, 3, 4, 1, 2).reshape(b, 3 * c, h, w)).reshape(b, 3, c, h, w)
    out = torch.einsum("bjchw,bjhw->bchw", mean_a, guide_) + mean(offset)
    return out.to(source.dtype)


def photo_smooth(stylized: Tensor, content: Tensor, radius: int = 35, eps: float = 1e-4) -> Tensor:
    r"""Remove painterly residue from a stylized image, keeping the content photo's edges.

    A guided filter (:func:`guided_filter`) of ``stylized`` with ``content`` as the colour
    guide: every :math:`(2r+1)^2` window of the result is an affine recolouring of the photo
    (He et al. 2013, eq. 19–21), so edges, texture and detail come from the photo and colour
    and tone from the stylization. Works after any method (Gatys, AdaIN, WCT, ...).

    Defaults: ``radius=35`` is the radius of FastPhotoStyle's guided-filter smoothing (Li et
    al. 2018) for 512–1024 px images, wide enough that a window holds several colours of the
    photo, so the fitted colour matrix is well determined and strokes smaller than the window
    cannot be reproduced by it; scale it with the image size (a radius beyond the image makes
    one global affine colour transfer). ``eps=1e-4`` (a colour standard deviation of 0.01, 2.5
    grey levels) sits just above 8-bit quantisation and JPEG noise, so flat regions of the
    photo are not given amplified noise, yet it is far below the colour variance of any
    textured window, so there the affine fit stays strict. He et al. use 1e-6 where the
    output must follow the guide closely (feathering) and 0.1²–0.4² for plain edge-preserving
    smoothing, which here would shrink the colour matrix and wash out the stylization.

    Args:
        stylized: ``(B, 3, H, W)`` in [0, 1], the output of a style transfer.
        content: ``(B, 3, H, W)`` (or ``(1, 3, H, W)``, broadcast) in [0, 1], the photo.
        radius: window radius in pixels.
        eps: ridge on the photo's local colour covariance.

    Returns:
        ``(B, 3, H, W)`` clamped to [0, 1], in ``stylized``'s dtype. Not differentiable
        (a post-process).
    """
    check_bchw(stylized, "stylized", channels=3)
    check_bchw(content, "content", channels=3)
    if content.shape[-2:] != stylized.shape[-2:]:
        raise OptionError(
            f"stylized is {stylized.shape[-1]}x{stylized.shape[-2]} px but content is "
            f"{content.shape[-1]}x{content.shape[-2]} px; resize the content to the output's size"
        )
    if content.shape[0] == 1 and stylized.shape[0] > 1:
        content = content.expand(stylized.shape[0], -1, -1, -1)
    return guided_filter(stylized, content.to(stylized.device), radius, eps).clamp(0, 1)
