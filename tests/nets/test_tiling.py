from __future__ import annotations

import pytest
import torch

from atelier.encoders import random_vgg19
from atelier.errors import OptionError
from atelier.nets import VGGDecoder
from atelier.nets.tiling import tiled


def test_tiled_encoder_equals_whole_image():
    encoder = random_vgg19()
    image = torch.rand(1, 3, 100, 138)

    def relu3_1(x):
        return encoder(x, ["relu3_1"])["relu3_1"]

    whole = relu3_1(image)
    parts = tiled(relu3_1, image, scale=1 / 4, tile=32, halo=64)
    assert parts.shape == whole.shape == (1, 12, 25, 34)
    assert torch.allclose(parts, whole, atol=1e-5)


def test_tiled_decoder_equals_whole_map():
    torch.manual_seed(0)
    decoder = VGGDecoder("relu3_1", widths=(4, 8, 12, 16, 16)).eval()
    features = torch.rand(1, 12, 21, 30)
    with torch.no_grad():
        whole = decoder(features)
        parts = tiled(decoder, features, scale=4, tile=8, halo=8)
    assert parts.shape == whole.shape == (1, 3, 84, 120)
    assert torch.allclose(parts, whole, atol=1e-5)


def test_tiled_checks_alignment():
    with pytest.raises(OptionError, match="multiples of 8"):
        tiled(lambda x: x, torch.rand(1, 3, 64, 64), scale=1 / 8, tile=20, halo=8)
