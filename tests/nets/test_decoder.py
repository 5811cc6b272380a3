from __future__ import annotations

import pytest
import torch

from atelier.encoders import random_vgg19
from atelier.errors import OptionError, UnknownNameError
from atelier.nets import DECODER_LAYERS, VGGDecoder


@pytest.mark.parametrize("layer", DECODER_LAYERS)
def test_decoder_inverts_the_encoder_shape(layer):
    encoder = random_vgg19()
    decoder = VGGDecoder(layer, widths=encoder.widths)
    image = torch.rand(2, 3, 48, 80)
    features = encoder(image, [layer])[layer]
    assert decoder(features).shape == image.shape
    assert decoder.scale * features.shape[-1] == image.shape[-1]


def test_real_width_relu4_1_decoder_mirrors_the_adain_paper():
    # Huang & Belongie's decoder after relu4_1 has 3.5 M parameters (9 convolutions).
    decoder = VGGDecoder("relu4_1")
    assert sum(p.numel() for p in decoder.parameters()) == 3_505_219
    assert sum(isinstance(m, torch.nn.Conv2d) for m in decoder.modules()) == 9


def test_relu5_1_decoder_shares_the_relu4_1_keys():
    # So a relu5_1 decoder can start from a trained relu4_1 one.
    deep, shallow = VGGDecoder("relu5_1").state_dict(), VGGDecoder("relu4_1").state_dict()
    assert set(shallow) < set(deep)
    assert all(deep[k].shape == v.shape for k, v in shallow.items())


def test_decoder_errors():
    with pytest.raises(UnknownNameError, match="relu4_1"):
        VGGDecoder("relu4_2")
    with pytest.raises(OptionError, match=r"\(B, 64, H, W\)"):
        VGGDecoder("relu1_1")(torch.zeros(1, 3, 4, 4))


def test_input_scale_is_saved_and_divides_the_features():
    torch.manual_seed(0)
    scaled = VGGDecoder("relu2_1", widths=(4, 8, 12, 16, 16), input_scale=10.0)
    assert float(scaled.state_dict()["input_scale"]) == 10.0
    plain = VGGDecoder("relu2_1", widths=(4, 8, 12, 16, 16))
    plain.load_state_dict({**scaled.state_dict(), "input_scale": torch.tensor(1.0)})
    features = torch.rand(1, 8, 6, 6) * 10
    assert torch.allclose(scaled(features), plain(features / 10), atol=1e-6)
    with pytest.raises(OptionError, match="input_scale"):
        VGGDecoder("relu2_1", input_scale=0)


def test_least_squares_fit_of_the_linear_decoder():
    from atelier.nets.decoder import fit_linear_decoder
    from helpers import smooth_image

    encoder = random_vgg19(widths=(16, 8, 12, 16, 16))
    images = torch.cat([smooth_image(32, 32, seed=s) for s in range(4)])
    features = encoder(images, ["relu1_1"])["relu1_1"]
    decoder = VGGDecoder("relu1_1", widths=encoder.widths, input_scale=3.0)
    with torch.no_grad():
        before = float(((decoder(features) - images) ** 2).mean())
        psnr = fit_linear_decoder(decoder, features, images)
        after = float(((decoder(features) - images) ** 2).mean())
    assert psnr > 30 and after < 1e-2 * before
    with pytest.raises(OptionError, match="only the linear relu1_1"):
        fit_linear_decoder(VGGDecoder("relu2_1"), features, images)
