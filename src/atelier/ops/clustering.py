r"""Corresponding regions of two images from their deep features, when no segmentation is given.

Luan et al. 2017 (Deep Photo Style Transfer, sec. 3.2) need semantic regions matched between
content and style; their maps come from a segmentation network or by hand. Without them,
:func:`auto_masks` clusters the encoder's features: pixels of one cluster, in either image,
are those whose features point in the same direction, so "sky" in the content and "sky" in
the style tend to share a cluster.

Why joint, spherical, balanced k-means:

* **Joint**: content and style features are clustered together, so each centroid is a
  material both images can contain. Clustering the content first and assigning the style to
  its centroids lets content-only detail claim clusters that the style then leaves empty.
* **Spherical** (cosine similarity on L2-normalised features): ReLU feature magnitudes
  follow contrast and exposure, their directions follow what is depicted (the same choice as
  the normalised patches of Li and Wand 2016 and the cosine matching of Chen and Schmidt
  2016).
* **Balanced**: each image has total weight 1 in the centroid updates and the k-means++
  draws, so a larger style image does not claim most of the centroids.

A cluster that ends up empty in either image has nothing to match: its pixels go to their
nearest shared cluster, and the masks list the shared clusters first (largest content area
first), the unused ones last as all-zero masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw

__all__ = ["auto_masks"]


def _kmeans_pp(points: Tensor, weights: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur and Vassilvitskii 2007) on unit vectors, cosine distance."""
    first = torch.multinomial(weights.cpu(), 1, generator=generator).item()
    centroids = points[first : first + 1]
    distance = (1 - points @ centroids.T).squeeze(1).clamp_min(0)
    for _ in range(1, k):
        probabilities = (weights * distance).cpu()
        if probabilities.sum() <= 0:  # fewer distinct directions than k: repeat one
            probabilities = weights.cpu()
        index = int(torch.multinomial(probabilities, 1, generator=generator).item())
        centroids = torch.cat([centroids, points[index : index + 1]])
        distance = torch.minimum(distance, (1 - points @ points[index]).clamp_min(0))
    return centroids


def auto_masks(
    content_features: Tensor, style_features: Tensor, k: int = 4, seed: int = 0, iterations: int = 10
) -> tuple[Tensor, Tensor]:
    """Matching one-hot region masks for content and style by joint k-means on features.

    Args:
        content_features: ``(1, C, h, w)`` features of the content (e.g. VGG ``relu4_1``).
        style_features: ``(1, C, h', w')`` features of the style, from the same layer.
        k: number of clusters.
        seed: seed of the k-means++ initialisation (the result is deterministic given it).
        iterations: Lloyd iterations at most (stops earlier when assignments settle).

    Returns:
        ``(content_masks (1, k, h, w), style_masks (1, k, h', w'))``, float one-hot: every
        pixel is in exactly one mask; mask ``i`` of the content corresponds to mask ``i`` of
        the style. Masks that are non-empty are non-empty in both images and come first,
        ordered by content area; the rest are all-zero in both.

    Raises:
        OptionError: wrong shapes, different channel counts, ``k < 1`` or ``iterations < 0``.
    """
    check_bchw(content_features, "content_features")
    check_bchw(style_features, "style_features")
    if content_features.shape[0] != 1 or style_features.shape[0] != 1:
        raise OptionError("auto_masks takes one content and one style: batch size must be 1")
    if content_features.shape[1] != style_features.shape[1]:
        raise OptionError(
            f"content has {content_features.shape[1]} channels and style {style_features.shape[1]}; "
            "use features of the same layer"
        )
    if k < 1 or int(k) != k:
        raise OptionError(f"k must be a positive integer, got {k}")
    if iterations < 0:
        raise OptionError(f"iterations must be >= 0, got {iterations}")
    content = F.normalize(content_features.detach().float().flatten(2)[0].T, dim=1)  # (Nc, C)
    style = F.normalize(style_features.detach().float().flatten(2)[0].T, dim=1)  # (Ns, C)
    nc, ns = content.shape[0], style.shape[0]
    points = torch.cat([content, style])
    weights = torch.cat([content.new_full((nc,), 1 / nc), style.new_full((ns,), 1 / ns)])

    generator = torch.Generator().manual_seed(seed)
    centroids = _kmeans_pp(points, weights, k, generator)
    assignment = (points @ centroids.T).argmax(1)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points * weights[:, None])
        # An empty cluster keeps its centroid (it may win points back next round).
        centroids = torch.where(sums.norm(dim=1, keepdim=True) > 0, F.normalize(sums, dim=1), centroids)
        new = (points @ centroids.T).argmax(1)
        if torch.equal(new, assignment):
            break
        assignment = new

    content_labels, style_labels = assignment[:nc], assignment[nc:]
    in_content = torch.bincount(content_labels, minlength=k)
    in_style = torch.bincount(style_labels, minlength=k)
    shared = ((in_content > 0) & (in_style > 0)).nonzero().flatten()
    if shared.numel() == 0:  # every cluster is one image's only: one region for all
        content_labels, style_labels = torch.zeros_like(content_labels), torch.zeros_like(style_labels)
        order = torch.zeros(1, dtype=torch.long, device=points.device)
    else:
        # Pixels of unshared clusters go to their most similar shared centroid.
        similarity = points @ centroids[shared].T
        nearest = shared[similarity.argmax(1)]
        is_shared = torch.zeros(k, dtype=torch.bool, device=points.device)
        is_shared[shared] = True
        relabelled = torch.where(is_shared[assignment], assignment, nearest)
        content_labels, style_labels = relabelled[:nc], relabelled[nc:]
        areas = torch.bincount(content_labels, minlength=k)[shared]
        order = shared[torch.argsort(areas, descending=True, stable=True)]
    rank = torch.full((k,), k - 1, dtype=torch.long, device=points.device)
    rank[order] = torch.arange(order.numel(), device=points.device)

    def masks(labels: Tensor, features: Tensor) -> Tensor:
        one_hot = F.one_hot(rank[labels], k).T.float()  # (k, N)
        return one_hot.reshape(1, k, *features.shape[-2:]).to(features.dtype)

    return masks(content_labels, content_features), masks(style_labels, style_features)
