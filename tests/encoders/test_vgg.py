from __future__ import annotations

import pytest
import torch

from atelier.encoders import LAYER_NAMES, load_vgg19
from atelier.encoders.vgg import VGGEncoder
from atelier.encoders.weights import CAFFE, TORCHVISION, expected_shapes
from atelier.errors import ImageTooSmallError, UnknownNameError


def test_layer_names_cover_vgg19():
    convs = [n for n in LAYER_NAMES if n.startswith("conv")]
    assert len(convs) == 16
    assert LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert LAYER_NAMES[-1] == "pool5"


def test_returns_only_requested_layers_with_strides(tiny_encoder):
    image = torch.rand(2, 3, 64, 48)
    features = tiny_encoder(image, ["relu1_1", "relu3_1", "pool4"])
    assert set(features) == {"relu1_1", "relu3_1", "pool4"}
    assert features["relu1_1"].shape == (2, 4, 64, 48)
    assert features["relu3_1"].shape == (2, 12, 16, 12)
    assert features["pool4"].shape == (2, 16, 4, 3)


def test_stops_at_deepest_layer(tiny_encoder, monkeypatch):
    called = []
    for name, conv in tiny_encoder.convs.items():
        monkeypatch.setattr(conv, "forward", lambda x, _c=conv, _n=name: called.append(_n) or
                            torch.nn.functional.conv2d(x, _c.weight, _c.bias, padding=1))
    tiny_encoder(torch.rand(1, 3, 32, 32), ["relu2_1"])
    assert called == ["conv1_1", "conv1_2", "conv2_1"]


def test_unknown_layer_suggests(tiny_encoder):
    with pytest.raises(UnknownNameError, match="did you mean"):
        tiny_encoder(torch.rand(1, 3, 32, 32), ["relu4_7"])


def test_too_small_image_is_refused(tiny_encoder):
    with pytest.raises(ImageTooSmallError, match="at least 16 px"):
        tiny_encoder(torch.rand(1, 3, 12, 40), ["relu5_1"])


def test_avg_pooling_differs_from_max():
    from atelier.encoders import random_vgg19

    image = torch.rand(1, 3, 32, 32)
    a = random_vgg19(pooling="max")(image, ["relu3_1"])["relu3_1"]
    b = random_vgg19(pooling="avg")(image, ["relu3_1"])["relu3_1"]
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_preprocessing_conventions():
    white = torch.ones(1, 3, 1, 1)
    red = torch.zeros(1, 3, 1, 1)
    red[:, 0] = 1
    caffe = CAFFE(red)
    # Caffe is BGR: red lands in the last channel, 0-255 minus the mean.
    assert caffe[0, 2, 0, 0].item() == pytest.approx(255 - 123.68)
    assert caffe[0, 0, 0, 0].item() == pytest.approx(-103.939)
    assert TORCHVISION(white)[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)


def test_encoder_accepts_expected_shapes_only():
    shapes = expected_shapes()
    assert shapes["conv1_1"] == (64, 3, 3, 3)
    assert shapes["conv5_4"] == (512, 512, 3, 3)
    assert len(shapes) == 16
    convs = {n: (torch.zeros(s), torch.zeros(s[0])) for n, s in shapes.items()}
    encoder = VGGEncoder(convs, CAFFE)
    assert encoder.widths == (64, 128, 256, 512, 512)


@pytest.mark.real_weights
def test_default_weights_decode_to_vgg19(vgg):
    assert len(vgg.convs) == 16
    for name, shape in expected_shapes().items():
        assert tuple(vgg.convs[name].weight.shape) == shape
    # Decoded codebook weights are real ImageNet filters: first-layer filters are not all alike.
    first = vgg.convs["conv1_1"].weight.flatten(1)
    assert first.std(0).mean() > 1e-3
    assert torch.isfinite(first).all()


@pytest.mark.real_weights
def test_default_weights_recognise_content(vgg):
    """relu5_1 features of two crops of one photo are closer than photo vs painting."""
    from atelier.io import load_image, resize_longest
    from conftest import EXAMPLES

    photo = resize_longest(load_image(EXAMPLES / "garden.jpg"), 256)
    painting = resize_longest(load_image(EXAMPLES / "van_gogh_wheat_field_with_cypresses.jpg"), 256)
    crop_a = photo[..., :128, :128]
    crop_b = photo[..., 16:144, 24:152]
    crop_p = painting[..., :128, :128]

    def descriptor(image):
        with torch.no_grad():
            feature = vgg(image, ["relu5_1"])["relu5_1"]
        return torch.nn.functional.normalize(feature.mean((2, 3)), dim=1)

    same = (descriptor(crop_a) - descriptor(crop_b)).norm()
    different = (descriptor(crop_a) - descriptor(crop_p)).norm()
    assert same < 0.7 * different, (same, different)


@pytest.mark.real_weights
def test_load_is_cached():
    assert load_vgg19() is load_vgg19()


@pytest.mark.real_weights
def test_bf16_features_by_winograd_match_the_direct_convolutions(vgg, monkeypatch):
    """The wide layers (conv3_1 and deeper) run as F(2x2, 3x3) in bf16: same features within bf16's error."""
    import atelier.ops.winograd as winograd
    from atelier.io import load_image, resize_longest
    from conftest import EXAMPLES

    image = resize_longest(load_image(EXAMPLES / "garden.jpg"), 96).contiguous(memory_format=torch.channels_last)
    layers = ["relu3_1", "relu4_1", "relu5_1"]
    used = []
    real = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3", lambda *a, **k: used.append(1) or real(*a, **k))

    def features() -> dict[str, torch.Tensor]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return {k: v.float() for k, v in vgg(image, layers).items()}

    fast = features()
    assert len(used) == 9  # conv3_1 ... conv5_1
    monkeypatch.setenv("ATELIER_WINOGRAD", "0")
    direct = features()
    assert len(used) == 9  # none more: the direct route
    with torch.no_grad():  # float32, no autocast: the reference
        exact = vgg(image, layers)
    for layer in layers:
        error_fast = float((fast[layer] - exact[layer]).norm() / exact[layer].norm())
        error_direct = float((direct[layer] - exact[layer]).norm() / exact[layer].norm())
        assert error_fast < max(3 * error_direct, 1e-2), (layer, error_fast, error_direct)
