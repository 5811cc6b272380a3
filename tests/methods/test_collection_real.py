"""The shipped collection-trained networks at small size (real-weight tier): they load from the
shipped files by name, keep the size, and change a photo, each toward its own collection."""

from __future__ import annotations

import json

import pytest
import torch

from atelier.api import stylize_tensor
from atelier.methods.style_aware import NETWORKS, StyleAware, load_generator
from atelier.nets.pretrained import SHIPPED, shipped_dir
from helpers import smooth_image

pytestmark = pytest.mark.real_weights


def test_shipped_style_aware_networks_stylize_small_photos():
    photo = smooth_image(48, 72)
    outputs = {}
    for stem in NETWORKS:
        assert stem in SHIPPED
        net, info = load_generator(stem)  # verified against the sha256 table
        card = json.loads((shipped_dir() / f"{stem}.json").read_text())
        assert info["collection"] == stem == card["header"]["collection"] and info["steps"] > 0
        result = stylize_tensor(photo, [], StyleAware(model=stem), progress=False)
        assert result.image.shape == photo.shape and torch.isfinite(result.image).all()
        assert (result.image - photo).abs().mean() > 0.03  # it does something
        outputs[stem] = result.image
    first, second = outputs.values()
    assert (first - second).abs().mean() > 0.02  # and the two collections differ
