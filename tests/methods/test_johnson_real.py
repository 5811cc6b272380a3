"""The shipped per-style networks with the real VGG-19 on small images (real-weight tier)."""

from __future__ import annotations

import json

import pytest
import torch

from atelier.io import load_image, resize_longest
from atelier.losses import CAFFE_FEATURE_SCALES, layer_scale
from atelier.methods.johnson import STYLE_LAYERS, Johnson
from atelier.nets.pretrained import shipped_dir
from atelier.ops.gram import gram_matrix
from conftest import EXAMPLES, REPO

pytestmark = pytest.mark.real_weights
NETWORKS = sorted(p.stem for p in shipped_dir().glob("*.json")
                  if json.loads(p.read_text()).get("task") == "johnson")
# Measured with the shipped networks (2026-11-23), garden photo at 128 px: the Gram distance to
# each painting falls to 0.002-0.18 of the photo's own (wave 0.18; cin8: wave 0.15, small_worlds 0.055,
# the rest 0.004-0.04; wheat_field 0.002).
STYLE_FACTOR = 0.3


def _gram_distance(vgg, image, style) -> float:
    with torch.no_grad():
        a, b = vgg(image, STYLE_LAYERS), vgg(style, STYLE_LAYERS)
        return sum(float(((gram_matrix(a[k] / layer_scale(k, CAFFE_FEATURE_SCALES))
                           - gram_matrix(b[k] / layer_scale(k, CAFFE_FEATURE_SCALES))) ** 2).mean())
                   for k in STYLE_LAYERS)


def test_at_least_three_single_style_networks_and_one_with_eight_styles():
    styles = [len(json.loads(json.loads((shipped_dir() / f"{n}.json").read_text())["header"]["style_names"]))
              for n in NETWORKS]
    assert sum(1 for s in styles if s == 1) >= 3 and max(styles) >= 8


@pytest.mark.parametrize("name", NETWORKS)
def test_each_style_of_a_shipped_network_moves_gram_statistics_toward_its_painting(vgg, name):
    card = json.loads((shipped_dir() / f"{name}.json").read_text())
    method = Johnson(model=name, backend="torch", precision="fp32")
    content = resize_longest(load_image(EXAMPLES / "garden.jpg"), 128)
    checked = 0
    for index, relative in enumerate(card["options"]["styles"]):
        path = REPO / relative
        if not path.is_file():  # paintings from ../shared/train are not in the repository
            continue
        style = resize_longest(load_image(path), 128)
        weights = [float(i == index) for i in range(method.style_count())]
        out = method.stylize(content, [], style_weights=weights).image
        before, after = _gram_distance(vgg, content, style), _gram_distance(vgg, out, style)
        assert after < STYLE_FACTOR * before, (card["styles"][index]["name"], before, after)
        checked += 1
    if not checked:
        pytest.skip(f"none of {name}'s paintings is available here (../shared/train missing)")
