from __future__ import annotations

import pytest
import torch

from atelier.api import stylize_tensor
from atelier.devices import resolve_precision
from atelier.errors import ImageTooSmallError, OptionError, UnknownNameError
from atelier.methods.gatys import Gatys, GatysConfig
from atelier.ops import gram_matrix, rgb_to_yiq


def run(content, styles, encoder, **options):
    options.setdefault("progress", False)
    return stylize_tensor(content, styles, "gatys", method_kwargs={"encoder": encoder}, **options)


def test_config_defaults_and_roundtrip():
    config = GatysConfig()
    assert config.content_layers == ("conv4_2",)
    assert config.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert GatysConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("options, message", [
    ({"style_weight": -1.0}, "style_weight must be >= 0"),
    ({"iterations": "many"}, "iterations must be a number"),
    ({"style_layers": ("relu1_1",), "style_layer_weights": (1.0, 2.0)}, "2 weights for 1 layers"),
    ({"optimizer": "sgd"}, "optimizer must be one of"),
    ({"style_scale": 0.0}, "style_scale must be > 0"),
])
def test_config_validation(options, message):
    with pytest.raises(OptionError, match=message):
        GatysConfig(**options)


def test_unknown_option_suggests():
    with pytest.raises(UnknownNameError, match="did you mean iterations"):
        Gatys(iteratons=3)


def test_cli_strings_are_coerced():
    config = GatysConfig(iterations="5", style_layers="relu1_1,relu2_1", style_weight="1e3")
    assert config.iterations == 5 and config.style_layers == ("relu1_1", "relu2_1") and config.style_weight == 1e3


def test_style_loss_falls_with_tiny_encoder(tiny_encoder, content_image, style_image):
    start = run(content_image, [style_image], tiny_encoder, iterations=0, scales=1, tv_weight=0)
    end = run(content_image, [style_image], tiny_encoder, iterations=30, scales=1, tv_weight=0)
    assert end.info["parts"]["style"] < 0.2 * start.info["parts"]["style"]
    assert end.image.shape == content_image.shape


def test_multiscale_runs_each_level(tiny_encoder, style_image):
    from helpers import smooth_image

    content = smooth_image(64, 128)
    result = run(content, [style_image], tiny_encoder, iterations=3, scales=2)
    assert result.info["sizes"] == [(32, 64), (64, 128)]
    assert len(result.info["history"]) == 6
    assert result.image.shape == (1, 3, 64, 128)


def test_final_iterations_and_upsampling_shape_the_schedule(tiny_encoder, style_image):
    """``final_iterations`` sets the finest level's count; ``upsample`` and ``content_detail`` how the coarse
    result starts it."""
    from atelier.optim import coarse_to_fine
    from helpers import smooth_image

    content = smooth_image(64, 96)
    result = run(content, [style_image], tiny_encoder, iterations=3, final_iterations=5, scales=2)
    assert result.info["sizes"] == [(32, 48), (64, 96)] and len(result.info["history"]) == 3 + 5
    bicubic = run(content, [style_image], tiny_encoder, iterations=3, final_iterations=5, scales=2, upsample="bicubic")
    assert bicubic.image.shape == result.image.shape and not torch.equal(bicubic.image, result.image)
    assert GatysConfig().content_detail  # the default adds the detail band
    blurred = run(content, [style_image], tiny_encoder, iterations=3, final_iterations=5, scales=2,
                  content_detail=False)
    assert not torch.equal(blurred.image, result.image)
    # No detail band where the photo is not meant to show through: one level (no finer start),
    # a noise start (texture synthesis) or no content loss.
    for unaffected in (dict(scales=1), dict(scales=2, init="noise"), dict(scales=2, content_weight=0.0)):
        assert torch.equal(run(content, [style_image], tiny_encoder, iterations=3, content_detail=False,
                               **unaffected).image,
                           run(content, [style_image], tiny_encoder, iterations=3, **unaffected).image), unaffected
    with pytest.raises(ValueError, match="2 iteration counts for 3 levels"):
        coarse_to_fine(content, [(8, 8), (16, 16), (32, 32)], lambda *_: None, iterations=[1, 2])


def test_noise_init_is_seeded(tiny_encoder, content_image, style_image):
    a = run(content_image, [style_image], tiny_encoder, iterations=2, scales=1, init="noise", seed=3).image
    b = run(content_image, [style_image], tiny_encoder, iterations=2, scales=1, init="noise", seed=3).image
    c = run(content_image, [style_image], tiny_encoder, iterations=2, scales=1, init="noise", seed=4).image
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_histogram_loss_term_is_used(tiny_encoder, content_image, style_image):
    result = run(content_image, [style_image], tiny_encoder, iterations=2, scales=1, histogram_weight=10.0)
    assert result.info["parts"]["histogram"] > 0


def test_masks_place_styles(tiny_encoder):
    """Left half takes a red style, right half a blue one."""
    from helpers import smooth_image

    content = smooth_image(48, 64) * 0.2 + 0.4
    red = torch.zeros(1, 3, 48, 64)
    red[:, 0] = 1
    blue = torch.zeros(1, 3, 48, 64)
    blue[:, 2] = 1
    masks = torch.zeros(1, 2, 48, 64)
    masks[:, 0, :, :32] = 1
    masks[:, 1, :, 32:] = 1
    out = run(content, [red, blue], tiny_encoder, masks=masks, iterations=40, scales=1, content_weight=0.0,
              style_layers=("relu1_1",), tv_weight=0.0, style_weight=1e3).image
    left, right = out[..., 4:-4, 4:28], out[..., 4:-4, 36:60]
    assert left[:, 0].mean() - left[:, 2].mean() > 0.1
    assert right[:, 2].mean() - right[:, 0].mean() > 0.1


def test_too_small_content(tiny_encoder, style_image):
    with pytest.raises(ImageTooSmallError, match="at least 16 px"):
        run(torch.rand(1, 3, 12, 64), [style_image], tiny_encoder, iterations=1)


def test_precision_auto_resolves():
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")


def test_intermediate_images_saved(tiny_encoder, content_image, style_image, tmp_path):
    run(content_image, [style_image], tiny_encoder, iterations=4, scales=1, save_every=2, save_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iteration_00002.png", "iteration_00004.png"]


# --- real ImageNet VGG-19, small images ---------------------------------------------------------

@pytest.fixture(scope="module")
def real_pair():
    from atelier.io import load_image, resize_longest
    from conftest import EXAMPLES

    content = resize_longest(load_image(EXAMPLES / "garden.jpg"), 96)
    style = resize_longest(load_image(EXAMPLES / "van_gogh_wheat_field_with_cypresses.jpg"), 128)
    return content, style


@pytest.mark.real_weights
def test_real_style_loss_falls_tenfold(vgg, real_pair):
    content, style = real_pair
    start = run(content, [style], vgg, iterations=0, scales=1)
    end = run(content, [style], vgg, iterations=40, scales=1)
    assert end.info["parts"]["style"] < 0.1 * start.info["parts"]["style"], (start.info["parts"], end.info["parts"])


@pytest.mark.real_weights
def test_real_output_gram_closer_to_style_than_content(vgg, real_pair):
    content, style = real_pair
    out = run(content, [style], vgg, iterations=40, scales=1).image
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    with torch.no_grad():
        fo, fc, fs = (vgg(x, layers) for x in (out, content, style))
    for layer in layers:
        go, gc, gs = (gram_matrix(f[layer]) for f in (fo, fc, fs))
        assert (go - gs).norm() < (go - gc).norm(), layer


@pytest.mark.real_weights
def test_real_luminance_mode_keeps_content_chroma(vgg, real_pair):
    content, style = real_pair
    out = run(content, [style], vgg, iterations=20, scales=1, preserve_color="luminance").image
    chroma_out, chroma_content = rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:]
    difference = (chroma_out - chroma_content).abs()
    # Only clamping out-of-gamut colours to [0, 1] moves chroma: 90% of pixels within 0.02.
    assert difference.mean() < 0.01 and torch.quantile(difference.flatten(), 0.9) < 0.02
    # ... while luminance did change (it was stylized).
    assert (rgb_to_yiq(out)[:, :1] - rgb_to_yiq(content)[:, :1]).abs().mean() > 0.03


@pytest.mark.real_weights
def test_real_histogram_color_mode_moves_style_colours_to_content(vgg, real_pair):
    content, style = real_pair
    plain = run(content, [style], vgg, iterations=20, scales=1).image
    kept = run(content, [style], vgg, iterations=20, scales=1, preserve_color="histogram").image
    mean = lambda x: x.mean((2, 3))  # noqa: E731
    assert (mean(kept) - mean(content)).norm() < (mean(plain) - mean(content)).norm()


@pytest.mark.slow
def test_slow_2048_multiscale_fits_in_memory(vgg):
    """2048 px coarse-to-fine (4 levels), a few iterations per level; opt-in."""
    from helpers import smooth_image

    content = smooth_image(1536, 2048)
    result = run(content, [smooth_image(512, 512, seed=1)], vgg, iterations=2)
    assert result.image.shape == (1, 3, 1536, 2048) and len(result.info["sizes"]) == 4


def test_memory_bound_refuses_huge_sizes_and_style_scales_with_the_numbers(monkeypatch, capsys, tmp_path):
    """gatys/photo at a huge --size and adain at --style-scale 1000 are refused before any work."""
    import numpy as np
    from PIL import Image

    from atelier import cli
    from atelier.encoders import random_vgg19
    from atelier.pipelines import base

    monkeypatch.setattr(base, "load_vgg19", lambda *a, **k: random_vgg19())
    monkeypatch.setenv("ATELIER_MEMORY_GB", "0.2")
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    for extra in (["--method", "gatys", "--size", "4000", "--iterations", "1"],
                  ["--method", "photo", "--size", "4000", "--iterations", "1"],
                  ["--method", "adain", "--size", "64", "--style-scale", "1000"]):
        out = tmp_path / "out.png"
        code = cli.main(["stylize", str(image), "--style", str(image), "-o", str(out), "-q",
                         "--max-pixels", "100000000", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "above the 0.2 GiB available" in err[0], err
        assert "--style-scale" in err[0] and not out.exists()
