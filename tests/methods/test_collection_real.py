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
        _, info = load_generator(stem)  # verified against the sha256 table
        card = json.loads((shipped_dir() / f"{stem}.json").read_text())
        assert info["collection"] == stem == card["header"]["collection"] and info["steps"] > 0
        result = stylize_tensor(photo, [], StyleAware(model=stem), progress=False)
        assert result.image.shape == photo.shape and torch.isfinite(result.image).all()
        assert (result.image - photo).abs().mean() > 0.03  # it does something
        outputs[stem] = result.image
    first, second = outputs.values()
    assert (first - second).abs().mean() > 0.02  # and the two collections differ


def test_shipped_disentanglement_network_takes_a_painting_a_blend_or_the_average():
    from atelier.methods.disentangle import NETWORKS as DISENTANGLED
    from atelier.methods.disentangle import Disentangle
    from helpers import stripes_image

    photo = smooth_image(48, 72)
    for stem in DISENTANGLED:
        method = Disentangle(model=stem)
        average = stylize_tensor(photo, [], method, progress=False).image
        painted = stylize_tensor(photo, [stripes_image(64, 64)], method, progress=False).image
        blend = stylize_tensor(photo, [stripes_image(64, 64), smooth_image(64, 64, seed=3)], method,
                               style_weights=[1, 1], progress=False).image
        for image in (average, painted, blend):
            assert image.shape == photo.shape and torch.isfinite(image).all()
        assert (average - photo).abs().mean() > 0.03
        assert method.network.average_code.abs().sum() > 0  # a collection average was learnt
        # The paper's point: different paintings give different outputs (the first shipped network,
        # collapsed, changed its output by 0.0007 between paintings of its collection).
        dark, light = smooth_image(64, 64, seed=4) * 0.25, 0.75 + 0.25 * smooth_image(64, 64, seed=5)
        codes = torch.stack([method.style_code([image], [1.0]) for image in (dark, light)])
        assert (codes[0] - codes[1]).norm() > 0.2
        in_dark, in_light = (stylize_tensor(photo, [image], method, progress=False).image for image in (dark, light))
        assert (in_dark - in_light).abs().mean() > 0.02
