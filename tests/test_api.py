from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import atelier
from atelier.api import normalize_weights
from atelier.encoders import random_vgg19
from atelier.errors import AtelierError, ImageTooSmallError, OptionError
from atelier.pipelines import base


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(base, "load_vgg19", lambda *a, **k: random_vgg19())


def test_stylize_accepts_paths_pil_and_arrays(tmp_path, tiny):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "c.png")
    for content in (tmp_path / "c.png", str(tmp_path / "c.png"), Image.fromarray(array), array):
        out = atelier.stylize(content, [array, Image.fromarray(array)], size=40, iterations=1, progress=False,
                              style_weights=[2, 1])
        assert isinstance(out, Image.Image) and out.size == (40, 30) and out.mode == "RGB"


def test_normalize_weights():
    assert normalize_weights([2, 6], 2) == [0.25, 0.75]
    assert normalize_weights(None, 4) == [0.25] * 4
    assert normalize_weights([1e308, 1e308], 2) == [0.5, 0.5]  # the sum would overflow to inf
    assert normalize_weights([3e-320, 1e-320], 2) == pytest.approx([0.75, 0.25])  # subnormal
    for bad, message in (([1], "1 style weight"), ([-1, 2], ">= 0"), ([0, 0], "sum to 0"),
                         ([float("nan"), 1], "finite"), (["a", 1], "finite")):
        with pytest.raises(OptionError, match=message):
            normalize_weights(bad, 2)


def test_typed_errors(tiny):
    array = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ImageTooSmallError):
        atelier.stylize(array, array, size=8, iterations=1, progress=False)
    with pytest.raises(AtelierError, match="preserve_color"):
        atelier.stylize(array, array, size=32, preserve_color="sepia", progress=False)
    with pytest.raises(OptionError, match="at least one style"):
        atelier.stylize(array, [], size=32)


def test_registry_lists_gatys():
    methods = atelier.available_methods()
    assert "gatys" in methods
    for name, cls in methods.items():
        assert cls.name == name and cls.summary and cls.paper
        cls.Config()  # defaults are valid


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, "abc", 1.5, True])
def test_bad_seed_is_an_option_error(seed):
    array = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(OptionError, match="seed"):
        atelier.stylize(array, array, size=40, iterations=1, progress=False, seed=seed)


def test_wrong_python_types_are_atelier_errors(tmp_path, tiny):
    """Each bad argument gives an AtelierError naming it, not a TypeError or a black image."""
    from atelier.errors import ImageError, MaskError

    array = np.full((32, 32, 3), 128, np.uint8)
    nan_image = torch.full((1, 3, 32, 32), float("nan"))
    nan_mask = torch.full((32, 32), float("nan"))
    cases = [
        (ImageError, "no pixels", dict(content=np.zeros((0, 0, 3), np.uint8))),
        (ImageError, "NaN", dict(content=nan_image)),
        (MaskError, "NaN", dict(masks=[nan_mask])),
        (OptionError, "by its name", dict(method=3)),
        (OptionError, "list of numbers", dict(style_weights=0.5)),
        (OptionError, "seed must be a whole number", dict(seed="abc")),
        (OptionError, "max_pixels must be a positive whole number", dict(max_pixels="1000")),
    ]
    for error, message, kwargs in cases:
        arguments = dict(content=array, style=array, size=32, iterations=1, progress=False) | kwargs
        with pytest.raises(error, match=message):
            atelier.stylize(arguments.pop("content"), arguments.pop("style"), **arguments)
    # A single mask path is one mask, not one mask per character of the path.
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "mask.png")
    image = atelier.stylize(array, array, masks=str(tmp_path / "mask.png"), size=32, iterations=1, progress=False)
    assert image.size == (32, 32)
    with pytest.raises(OptionError, match="output must be the path"):
        atelier.stylize_video(tmp_path / "in.mp4", array, "adain", output=None)


def test_read_only_array_input_gives_no_warning(tiny):
    import warnings

    array = np.asarray(Image.fromarray(np.full((32, 32, 3), 90, np.uint8)))
    assert not array.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = atelier.io.load_image(array)
    assert tensor.shape == (1, 3, 32, 32)


def test_stylize_video_checks_its_output_before_loading_the_method(tmp_path, monkeypatch):
    from atelier import api
    from atelier.errors import OutputNotWritableError

    def never(*args, **kwargs):
        raise AssertionError("the method was built before the output was checked")

    monkeypatch.setattr(api, "build_method", never)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputNotWritableError):
        api.stylize_video(tmp_path / "in.mp4", None, "johnson", output=blocker / "out.mp4", model="wave")
    with pytest.raises(OptionError, match="output"):
        api.stylize_video(tmp_path / "in.mp4", None, "johnson", output=None, model="wave")
