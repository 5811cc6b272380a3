"""Automatic corresponding region masks by joint k-means on features."""

from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.ops.clustering import auto_masks
from helpers import smooth_image, stripes_image


def _regions(pattern: torch.Tensor, directions: torch.Tensor, scale: torch.Tensor, seed: int) -> torch.Tensor:
    """Features (1, C, h, w): pixel with label i gets ``scale[i] * directions[i]`` plus small noise."""
    generator = torch.Generator().manual_seed(seed)
    features = (scale[pattern][..., None] * directions[pattern]).permute(2, 0, 1)[None]
    return (features + 0.05 * torch.randn(features.shape, generator=generator)).relu()


DIRECTIONS = torch.eye(6)[:3] + 0.1  # three materials, clearly different directions


def test_regions_correspond_across_images_regardless_of_feature_magnitude():
    content_pattern = torch.zeros(8, 10, dtype=torch.long)
    content_pattern[:, 5:] = 1
    style_pattern = torch.ones(12, 6, dtype=torch.long)
    style_pattern[8:] = 0
    content = _regions(content_pattern, DIRECTIONS, torch.tensor([1.0, 1.0, 1.0]), seed=1)
    style = _regions(style_pattern, DIRECTIONS, torch.tensor([5.0, 0.3, 1.0]), seed=2)  # other contrast
    content_masks, style_masks = auto_masks(content, style, k=2, seed=0)
    assert content_masks.shape == (1, 2, 8, 10) and style_masks.shape == (1, 2, 12, 6)
    for i in range(2):
        material = int(content_pattern[content_masks[0, i].bool()].unique().item())
        assert torch.equal(content_masks[0, i].bool(), content_pattern == material)
        assert torch.equal(style_masks[0, i].bool(), style_pattern == material)
    # Masks are ordered by content area (here equal: 5 of 10 columns each).
    assert content_masks[0, 0].sum() >= content_masks[0, 1].sum()


def test_masks_are_one_hot_and_deterministic_and_unmatched_clusters_are_empty_in_both():
    content_pattern = torch.zeros(8, 8, dtype=torch.long)
    content_pattern[4:] = 1
    content_pattern[:2, :2] = 2  # a material the style does not have
    style_pattern = torch.zeros(8, 8, dtype=torch.long)
    style_pattern[:, 4:] = 1
    content = _regions(content_pattern, DIRECTIONS, torch.ones(3), seed=3)
    style = _regions(style_pattern, DIRECTIONS, torch.ones(3), seed=4)
    content_masks, style_masks = auto_masks(content, style, k=5, seed=7)
    again = auto_masks(content, style, k=5, seed=7)
    assert torch.equal(content_masks, again[0]) and torch.equal(style_masks, again[1])
    assert torch.equal(content_masks.sum(1), torch.ones(1, 8, 8))
    assert torch.equal(style_masks.sum(1), torch.ones(1, 8, 8))
    in_content = content_masks.sum((-1, -2))[0] > 0
    in_style = style_masks.sum((-1, -2))[0] > 0
    assert torch.equal(in_content, in_style)  # every used region exists in both images
    assert in_content.sum() >= 2
    used = int(in_content.sum())
    assert in_content[:used].all() and not in_content[used:].any()  # used masks come first


def test_on_encoder_features(tiny_encoder):
    content = smooth_image(32, 40)
    style = stripes_image(48, 32)
    layer = "relu3_1"
    content_features = tiny_encoder(content, [layer])[layer]
    style_features = tiny_encoder(style, [layer])[layer]
    content_masks, style_masks = auto_masks(content_features, style_features, k=3, seed=0)
    assert content_masks.shape == (1, 3, *content_features.shape[-2:])
    assert style_masks.shape == (1, 3, *style_features.shape[-2:])
    assert torch.equal(content_masks.sum(1), torch.ones_like(content_masks[:, 0]))
    assert torch.equal(style_masks.sum(1), torch.ones_like(style_masks[:, 0]))


def test_errors():
    features = torch.rand(1, 4, 5, 5)
    with pytest.raises(OptionError, match="channels"):
        auto_masks(features, torch.rand(1, 3, 5, 5), k=2)
    with pytest.raises(OptionError, match="k must"):
        auto_masks(features, features, k=0)
    with pytest.raises(OptionError, match="batch size"):
        auto_masks(torch.rand(2, 4, 5, 5), features, k=2)
