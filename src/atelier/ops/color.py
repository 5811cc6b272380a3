"""Colour-space conversions and colour transfer for colour preservation.

Gatys, Ecker, Bethge, Hertzmann, Shechtman 2017, "Controlling Perceptual Factors in Neural
Style Transfer", sec. 5: (a) luminance-only transfer in YIQ, (b) matching the style's colour
mean and covariance to the content's before transfer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_bchw
from .layout import spatial_size
from .linalg import symmetric_power
from .wct import covariance

__all__ = ["luminance", "match_color", "region_color_transfer", "rgb_to_yiq", "transfer_luminance", "yiq_to_rgb"]

# NTSC YIQ (FCC 1953 coefficients).
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(image: Tensor) -> Tensor:
    """RGB ``(B, 3, H, W)`` in [0, 1] to YIQ ``(B, 3, H, W)``."""
    check_bchw(image, "image", channels=3)
    matrix = _RGB_TO_YIQ.to(image)
    return torch.einsum("ij,bjhw->bihw", matrix, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    """YIQ ``(B, 3, H, W)`` to RGB ``(B, 3, H, W)`` (not clamped)."""
    check_bchw(image, "image", channels=3)
    matrix = torch.linalg.inv(_RGB_TO_YIQ.double()).to(image)
    return torch.einsum("ij,bjhw->bihw", matrix, image)


def luminance(image: Tensor) -> Tensor:
    """Luminance Y of an RGB image, ``(B, 1, H, W)``."""
    return rgb_to_yiq(image)[:, :1]


def transfer_luminance(stylized: Tensor, content: Tensor) -> Tensor:
    """Keep the luminance of ``stylized`` and the chroma (I, Q) of ``content`` (sec. 5.1).

    Both ``(B, 3, H, W)`` of the same size. Returns RGB clamped to [0, 1].
    """
    if stylized.shape != content.shape:
        raise ValueError(f"shapes differ: {tuple(stylized.shape)} vs {tuple(content.shape)}")
    yiq = torch.cat([rgb_to_yiq(stylized)[:, :1], rgb_to_yiq(content)[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def _weighted_moments(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mean ``(B, 3, 1)`` and population covariance ``(B, 3, 3)`` of flattened pixels ``x`` ``(B, 3, N)``."""
    if mask is not None:
        check_bchw(mask, "mask", channels=1)
        if mask.shape[-1] * mask.shape[-2] != x.shape[-1]:
            raise ValueError(f"mask {spatial_size(mask)} does not match the image it weights")
        mask = mask.reshape(mask.shape[0], 1, -1, 1)
    return covariance(x.unsqueeze(-1), mask, dtype=torch.float64, correction=0)


def match_color(
    source: Tensor,
    reference: Tensor,
    eps: float = 1e-5,
    *,
    source_mask: Tensor | None = None,
    reference_mask: Tensor | None = None,
) -> Tensor:
    r"""Affine colour transfer: give ``source`` the RGB mean and covariance of ``reference``.

    ``x' = \Sigma_r^{1/2} \Sigma_s^{-1/2} (x - \mu_s) + \mu_r`` with symmetric matrix square
    roots (the "Image Analogies" variant of Gatys et al. 2017, sec. 5.2, eq. 7–8).

    Args:
        source: ``(B, 3, H, W)`` in [0, 1], the image to recolour (the style).
        reference: ``(B, 3, H', W')`` whose colour statistics are wanted (the content).
        eps: floor on eigenvalues, so flat images do not blow up.
        source_mask: optional ``(B or 1, 1, H, W)`` weights on ``source``; its statistics are
            then those of the masked region (region-to-region transfer, as for the semantic
            labels of Luan et al. 2017). The transform is applied to all of ``source``;
            callers blend regions with the masks.
        reference_mask: the same for ``reference``, at its size.

    Returns:
        ``(B, 3, H, W)`` clamped to [0, 1].
    """
    check_bchw(source, "source", channels=3)
    check_bchw(reference, "reference", channels=3)
    x = source.double().flatten(2)
    r = reference.double().flatten(2)
    mu_x, cov_x = _weighted_moments(x, source_mask)
    mu_r, cov_r = _weighted_moments(r, reference_mask)
    xc = x - mu_x
    inv_sqrt_x = symmetric_power(cov_x, -0.5, eps)
    sqrt_r = symmetric_power(cov_r, 0.5, eps)
    out = sqrt_r @ inv_sqrt_x @ xc + mu_r
    return out.reshape(source.shape).to(source.dtype).clamp(0, 1)


def region_color_transfer(content: Tensor, style: Tensor, content_masks: Tensor, style_masks: Tensor) -> Tensor:
    """Recolour each region of ``content`` to the colour mean and covariance of its style region.

    A start point for the segmented Gram optimisation: the colours the style loss would take
    hundreds of L-BFGS steps to reach are there from step 0, so the steps go to local
    statistics instead. Regions are blended with the (soft) content masks.
    """
    # A larger eigenvalue floor than match_color's default: small flat regions would
    # otherwise amplify JPEG noise by their inverse standard deviation.
    eps = 1e-3
    out = torch.zeros_like(content)
    for k in range(content_masks.shape[1]):
        cm, sm = content_masks[:, k : k + 1], style_masks[:, k : k + 1]
        recoloured = match_color(content, style, eps, source_mask=cm, reference_mask=sm)
        out = out + cm * recoloured
    return out / content_masks.sum(1, keepdim=True).clamp_min(1e-8)
