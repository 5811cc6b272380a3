"""Losses of the feed-forward methods on VGG features: feature MSE and mean/std matching.

The papers use a "normalised" VGG-19 whose filters are rescaled to unit mean activation
(Gatys et al. 2016, sec. 2); atelier's default weights are the raw caffe ones, whose mean
activations differ twentyfold between layers. Features are therefore divided by a per-block
scale before the losses, so the papers' loss weights keep their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..ops.gram import gram_matrix
from ..ops.stats import mean_std
from ..ops.wct import covariance

__all__ = ["CAFFE_FEATURE_SCALES", "covariance_loss", "feature_mse", "gram_loss", "gram_loss_to", "layer_scale",
           "mean_std_loss"]

#: Mean activation of relu1_1 ... relu5_1 of the bundled (caffe) VGG-19 on photos and
#: paintings in [0, 1] (12 images of ../shared/data at 256 px, measured 2026-11-23).
CAFFE_FEATURE_SCALES: tuple[float, ...] = (25.0, 140.0, 150.0, 540.0, 47.0)


def layer_scale(layer: str, scales: Sequence[float]) -> float:
    """The scale of ``layer``'s block (``relu3_1`` -> ``scales[2]``)."""
    return float(scales[int(layer[4]) - 1])


def feature_mse(output: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """``mean((output - target)^2) / scale^2`` in float32."""
    return torch.mean((output.float() - target.float()) ** 2) / scale**2


def mean_std_loss(
    output: Mapping[str, Tensor], style: Mapping[str, Tensor], layers: Sequence[str], scales: Sequence[float],
) -> Tensor:
    """Style loss of Huang & Belongie 2017 (eq. 13): distances of the feature means and stds.

    ``sum_l ||mu(phi_l(g)) - mu(phi_l(s))||^2 + ||sigma(phi_l(g)) - sigma(phi_l(s))||^2`` (means
    over batch and channels, as in their code).
    """
    total = output[layers[0]].new_zeros((), dtype=torch.float32)
    for layer in layers:
        scale = layer_scale(layer, scales)
        mean_o, std_o = mean_std(output[layer], dtype=torch.float32)
        mean_s, std_s = mean_std(style[layer], dtype=torch.float32)
        total = total + feature_mse(mean_o, mean_s, scale) + feature_mse(std_o, std_s, scale)
    return total


def gram_loss(
    output: Mapping[str, Tensor], style: Mapping[str, Tensor], layers: Sequence[str], scales: Sequence[float],
) -> Tensor:
    """Gram-matrix style loss (the style loss of Linear Style Transfer), batch item by batch item.

    ``sum_l mean((G(phi_l(g)) - G(phi_l(s)))^2)`` of Gram matrices (Gatys et al. 2016, eq. 4–5) of
    scaled features.
    """
    targets = {layer: gram_matrix(style[layer].float() / layer_scale(layer, scales)) for layer in layers}
    return gram_loss_to(output, targets, layers, scales)


def gram_loss_to(
    output: Mapping[str, Tensor], targets: Mapping[str, Tensor], layers: Sequence[str], scales: Sequence[float],
) -> Tensor:
    """:func:`gram_loss` against precomputed target Gram matrices ``(B, C, C)`` of scaled features.

    A per-style network keeps its styles' Grams instead of their features.
    """
    total = output[layers[0]].new_zeros((), dtype=torch.float32)
    for layer in layers:
        scale = layer_scale(layer, scales)
        total = total + feature_mse(gram_matrix(output[layer].float() / scale), targets[layer])
    return total


def covariance_loss(output: Tensor, target: Tensor) -> Tensor:
    """``mean((cov(o) - cov(t))^2) / mean(cov(t)^2)`` of per-item channel covariances over space.

    Relative, so it does not depend on the features' scale; ``(B, C, H, W)`` inputs.
    """

    def cov(x: Tensor) -> Tensor:
        return covariance(x.float(), dtype=torch.float32, correction=0)[1]

    target_cov = cov(target)
    return torch.mean((cov(output) - target_cov) ** 2) / torch.mean(target_cov**2).clamp_min(1e-12)
