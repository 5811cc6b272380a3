"""Property-based tests (hypothesis): random images, truncations and option values either work
or raise an AtelierError, never another exception."""

from __future__ import annotations

import io
import math
import tempfile

import numpy as np
import pytest
from PIL import Image

from atelier.api import normalize_weights
from atelier.errors import AtelierError, ImageError
from atelier.io import load_image
from atelier.io.images import load_image_info

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

# Hypothesis caches into ./.hypothesis; the conftest guard forbids writes into the repository.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="atelier-hypothesis-"))

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I", "F", "CMYK"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
CHEAP = settings(max_examples=40, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encoded(width: int, height: int, mode: str, fmt: str, seed: int) -> bytes | None:
    array = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):  # this format cannot store this mode
        return None
    return buffer.getvalue()


@CHEAP
@given(width=st.integers(1, 40), height=st.integers(1, 40), mode=st.sampled_from(MODES),
       fmt=st.sampled_from(sorted(FORMATS)), seed=st.integers(0, 1000), cut=st.floats(0.0, 1.0))
def test_any_image_or_truncation_loads_or_is_an_image_error(tmp_path, width, height, mode, fmt, seed, cut):
    data = _encoded(width, height, mode, fmt, seed)
    hypothesis.assume(data is not None)
    path = tmp_path / f"image{FORMATS[fmt]}"
    for blob in (data, data[: int(len(data) * cut)]):
        path.write_bytes(blob)
        try:
            tensor = load_image(path)
        except ImageError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            continue
        assert tensor.shape == (1, 3, height, width)
        assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1


def _levels16(width: int, height: int, kind: str, seed: int) -> np.ndarray:
    channels = {"I;16": 1, "RGB16": 3, "RGBA16": 4}[kind]
    return np.random.default_rng(seed).integers(0, 65536, (height, width, channels), dtype=np.uint16)


def _encoded16(width: int, height: int, kind: str, fmt: str, seed: int) -> bytes | None:
    """A random 16-bit image: ``I;16`` gray (Pillow), or RGB/RGBA at 16 bits per channel (tifffile
    for TIFF, imagecodecs for PNG; None when that package is absent)."""
    array = _levels16(width, height, kind, seed)
    channels = array.shape[-1]
    buffer = io.BytesIO()
    if kind == "I;16":
        Image.fromarray(array[..., 0]).save(buffer, format=fmt)
    elif fmt == "TIFF":
        try:
            import tifffile
        except ImportError:  # the bitdepth extra is absent: only I;16 is tested
            return None
        tifffile.imwrite(buffer, array, photometric="rgb", extrasamples=["unassalpha"] if channels == 4 else None)
    else:
        try:
            import imagecodecs
        except ImportError:
            return None
        buffer.write(imagecodecs.png_encode(array))
    return buffer.getvalue()


@CHEAP
@given(width=st.integers(1, 40), height=st.integers(1, 40), kind=st.sampled_from(["I;16", "RGB16", "RGBA16"]),
       fmt=st.sampled_from(["PNG", "TIFF"]), seed=st.integers(0, 1000), cut=st.floats(0.0, 1.0))
def test_any_16bit_image_or_truncation_loads_at_16_bits_or_is_an_image_error(tmp_path, width, height, kind, fmt,
                                                                             seed, cut):
    data = _encoded16(width, height, kind, fmt, seed)
    hypothesis.assume(data is not None)
    path = tmp_path / f"image{FORMATS[fmt]}"
    for blob in (data, data[: int(len(data) * cut)]):
        path.write_bytes(blob)
        try:
            tensor, info = load_image_info(path)
        except ImageError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            continue
        assert tensor.shape == (1, 3, height, width)
        assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1
        if blob is data:  # the whole file: every channel kept at 16 bits, to its last level
            assert info.bit_depth == 16
            if kind != "RGBA16":  # (alpha is composited on white)
                expected = np.broadcast_to(_levels16(width, height, kind, seed), (height, width, 3))
                assert np.array_equal((tensor[0].permute(1, 2, 0).numpy() * 65535).round(), expected)


@CHEAP
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**30),
                          st.text(max_size=3), st.none()), min_size=0, max_size=4))
def test_style_weights_are_normalised_or_refused(weights):
    try:
        result = normalize_weights(weights, len(weights) or 1)
    except AtelierError as error:
        assert "\n" not in str(error)
        return
    assert len(result) == len(weights) and all(math.isfinite(w) and w >= 0 for w in result)
    assert math.isclose(sum(result), 1.0, rel_tol=1e-9)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                   st.text(max_size=4), st.lists(st.one_of(st.floats(allow_nan=True), st.text(max_size=2)),
                                                 max_size=3), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                              max_size=2))


@CHEAP
@given(key=st.sampled_from(["steps", "batch_size", "crop_size", "crop_scale", "flip", "feature_cache", "lr",
                            "schedule", "lr_decay", "betas", "weight_decay", "options", "seed", "task", "content",
                            "style", "output", "precision", "export_dtype", "eval_size", "name"]),
       value=VALUES)
def test_training_config_values_are_accepted_or_refused_in_one_line(key, value):
    from atelier.train import TrainConfig

    try:
        config = TrainConfig.from_dict({"task": "adain", "content": "photos", key: value})
    except AtelierError as error:
        assert "\n" not in str(error)
        return
    assert getattr(config, key) is not None
