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


def _boundary_share(image: torch.Tensor, period: int) -> float:
    """Share of the horizontal pixel-to-pixel change that falls on the boundaries of ``period``-px cells."""
    step = (image[..., 1:] - image[..., :-1]).detach().abs().mean((0, 1, 2))  # (W - 1,)
    on_boundary = torch.arange(1, image.shape[-1]) % period == 0
    return float(step[on_boundary].sum() / step.sum())


def test_bilinear_upsampling_has_no_cell_grid_and_is_read_from_the_header(tmp_path):
    from safetensors.torch import save_file

    from atelier.nets.pretrained import load_into

    nearest = VGGDecoder("relu4_1", widths=(4, 8, 12, 16, 16))
    with torch.no_grad():  # every convolution averages the channels at its centre tap: only upsampling shapes space
        for conv in (m for m in nearest.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = 1 / conv.in_channels
            conv.bias.zero_()
    smooth = VGGDecoder("relu4_1", widths=(4, 8, 12, 16, 16), upsample="bilinear")
    smooth.load_state_dict(nearest.state_dict())
    features = torch.rand(1, 16, 8, 8)
    # Nearest upsampling paints each relu4_1 cell as an 8 px block, so all change sits on the block
    # edges (1 column in 8); bilinear spreads it over the cell.
    assert _boundary_share(nearest(features), 8) > 0.99
    assert _boundary_share(smooth(features), 8) < 0.3
    # The mode is architecture: the weights file's header carries it, old files mean nearest.
    path = tmp_path / "d.safetensors"
    save_file(dict(smooth.state_dict()), str(path), metadata={**smooth.header(), "layer": "relu4_1"})
    loaded = load_into(VGGDecoder("relu4_1", widths=(4, 8, 12, 16, 16)), path, expect={}, what="decoder")
    assert loaded.upsample == "bilinear" and torch.allclose(loaded(features), smooth(features), atol=1e-6)
    save_file(dict(smooth.state_dict()), str(path), metadata={"layer": "relu4_1"})
    loaded = load_into(VGGDecoder("relu4_1", widths=(4, 8, 12, 16, 16), upsample="bilinear"), path, expect={},
                       what="decoder")
    assert loaded.upsample == "nearest"
    with pytest.raises(OptionError, match="upsample"):
        VGGDecoder("relu4_1", upsample="bicubic")


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("layer", ["relu2_1", "relu5_1"])
def test_decoder_equals_the_padded_sequential_layers(layer, autocast):
    # The decoder's convolutions skip the padded copy, and those after an upsampling run fused with
    # it as one transposed convolution (relu5_1: across the block 5 / block 4 boundary); its output
    # must be that of the modules it holds (upsample, reflection pad -> conv -> ReLU, as the weights
    # were trained), in float32 and under bf16 autocast.
    torch.manual_seed(0)
    decoder = VGGDecoder(layer, widths=(8, 12, 16, 16, 16)).eval()
    features = torch.rand(1, decoder.in_channels, 9, 7)

    def reference(x: torch.Tensor) -> torch.Tensor:
        for stage in decoder.stages:
            for module in stage.children():
                x = torch.nn.Sequential.forward(module, x) if isinstance(module, torch.nn.Sequential) else module(x)
        return x

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, expected = decoder(features), reference(features)
    assert out.shape == (1, 3, 9 * decoder.scale, 7 * decoder.scale)
    tolerance = {"rtol": 0.02, "atol": 0.02} if autocast else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(out.float(), expected.float(), **tolerance)
