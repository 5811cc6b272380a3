"""16-bit and colour-managed images in and out (issue 17): precision kept end to end, ICC
profiles converted, the sRGB profile and the content's EXIF in the output."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from atelier import cli
from atelier.api import stylize
from atelier.encoders import random_vgg19
from atelier.errors import OptionError
from atelier.io import images
from atelier.io.icc import srgb_profile_bytes
from atelier.io.images import ImageInfo, load_image, load_image_info, save_image
from atelier.io.masks import load_masks
from atelier.pipelines import base
from helpers import matrix_trc_profile

ORIENTATION, MAKE, MODEL, EXIF_IFD, EXPOSURE_TIME = 0x0112, 0x010F, 0x0110, 0x8769, 0x829A


def _gradient16(height: int = 6, width: int = 1000) -> np.ndarray:
    """(H, W, 3) uint16: a ramp over all of 0-65535 in red, reversed in green, flat blue."""
    ramp = np.linspace(0, 65535, width).round().astype(np.uint16)
    return np.stack([np.tile(ramp, (height, 1)), np.tile(ramp[::-1], (height, 1)),
                     np.full((height, width), 48 * 257, np.uint16)], axis=-1)


def _exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE], exif[MODEL], exif[ORIENTATION] = "Atelier", "Test camera", orientation
    exif.get_ifd(EXIF_IFD)[EXPOSURE_TIME] = 0.008
    return exif


def _png_bit_depth(path) -> int:
    return path.read_bytes()[24]  # IHDR bit depth (ISO 15948 sec. 11.2.2)


def test_gray16_png_keeps_more_than_256_levels(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 1000).round().astype(np.uint16), (3, 1))
    Image.fromarray(ramp).save(tmp_path / "gray16.png")  # Pillow alone: no extra needed
    tensor, info = load_image_info(tmp_path / "gray16.png")
    assert info.bit_depth == 16 and len(torch.unique(tensor[0, 0])) == 1000
    assert torch.allclose(tensor[0, 1, 0], torch.from_numpy(ramp[0] / 65535.0).float(), atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gradient_round_trip(tmp_path, suffix):
    pytest.importorskip("tifffile")
    source = _gradient16()
    tensor, info = load_image_info(source)  # a uint16 array is 16-bit too
    assert info.bit_depth == 16
    out = save_image(tensor, tmp_path / f"out{suffix}", info=info)  # 16 bits by default, as the input
    back, back_info = load_image_info(out)
    assert back_info.bit_depth == 16
    assert len(torch.unique(back[0, 0])) > 256  # 1000 levels, not 8-bit's 256
    levels = (back[0].permute(1, 2, 0).numpy() * 65535).round().astype(np.int64)
    assert np.abs(levels - source).max() == 0  # exact, not merely "more than 8 bits"
    assert Image.open(out).info["icc_profile"] == srgb_profile_bytes()


def test_16bit_rgb_files_written_by_other_tools(tmp_path):
    codecs = pytest.importorskip("imagecodecs")
    tifffile = pytest.importorskip("tifffile")
    source = _gradient16()
    (tmp_path / "rgb16.png").write_bytes(codecs.png_encode(source))
    tifffile.imwrite(tmp_path / "planar16.tif", np.moveaxis(source, -1, 0), photometric="rgb",
                     planarconfig="separate", compression="zlib")
    for name in ("rgb16.png", "planar16.tif"):
        tensor, info = load_image_info(tmp_path / name)
        assert info.bit_depth == 16 and tensor.shape == (1, 3, 6, 1000), name
        assert np.abs(tensor[0].permute(1, 2, 0).numpy() * 65535 - source).max() < 0.5, name


def test_adobe_rgb_input_is_converted_not_misread(tmp_path):
    adobe = matrix_trc_profile()
    colours = np.array([[[40, 200, 60], [200, 40, 60], [30, 60, 220], [128, 128, 128]]], dtype=np.uint8)
    Image.fromarray(colours).save(tmp_path / "adobe.png", icc_profile=adobe)
    expected = np.asarray(ImageCms.profileToProfile(
        Image.fromarray(colours), ImageCms.ImageCmsProfile(io.BytesIO(adobe)), ImageCms.createProfile("sRGB"),
        outputMode="RGB"), dtype=np.float64)
    tensor, info = load_image_info(tmp_path / "adobe.png")
    read = tensor[0].permute(1, 2, 0).numpy() * 255
    assert info.profile == "Adobe RGB test"
    assert np.abs(read - expected).max() <= 1.0  # LittleCMS's answer, to its 8-bit rounding
    assert np.abs(read - colours).max() > 20  # a misread (profile ignored) would be far off
    assert read[0, 0, 1] > colours[0, 0, 1]  # Adobe green is more saturated than sRGB's: it grows


def test_16bit_adobe_rgb_tiff_keeps_precision_through_the_conversion(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    source = _gradient16(width=511)  # even columns are k * 257: exact 8-bit levels, odd ones between them
    tifffile.imwrite(tmp_path / "adobe16.tif", source, photometric="rgb", iccprofile=matrix_trc_profile())
    tensor, info = load_image_info(tmp_path / "adobe16.tif")
    assert info.bit_depth == 16 and info.profile == "Adobe RGB test"
    assert len(torch.unique(tensor[0, 1])) > 256  # the in-between levels survive the conversion
    exact = source[:1, ::2]
    expected = np.asarray(ImageCms.profileToProfile(
        Image.fromarray((exact // 257).astype(np.uint8)), ImageCms.ImageCmsProfile(io.BytesIO(matrix_trc_profile())),
        ImageCms.createProfile("sRGB"), outputMode="RGB"), dtype=np.float64)
    assert np.abs(tensor[0, :, :1, ::2].permute(1, 2, 0).numpy() * 255 - expected).max() <= 1.0


@pytest.mark.parametrize(("suffix", "bit_depth"), [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 16)])
def test_exif_minus_orientation_and_srgb_profile_in_the_output(tmp_path, suffix, bit_depth):
    if suffix == ".tif":
        pytest.importorskip("tifffile")
    pixels = np.random.default_rng(0).integers(0, 255, (10, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=_exif(orientation=6), quality=95)
    tensor, info = load_image_info(tmp_path / "photo.jpg")
    assert tensor.shape == (1, 3, 16, 10)  # orientation 6: turned upright on reading
    out = save_image(tensor, tmp_path / f"out{suffix}", info=info, bit_depth=bit_depth)
    written = Image.open(out)
    exif = written.getexif()
    assert exif[MAKE] == "Atelier" and exif[MODEL] == "Test camera"
    assert exif.get(ORIENTATION, 1) == 1  # the pixels are upright: no orientation to apply twice
    if suffix != ".tif":  # 16-bit TIFF keeps the first-IFD tags only (tifffile writes no Exif IFD)
        assert float(exif.get_ifd(EXIF_IFD)[EXPOSURE_TIME]) == pytest.approx(0.008)
    assert written.info["icc_profile"] == srgb_profile_bytes()
    assert load_image(out).shape == (1, 3, 16, 10)
    if suffix == ".png":
        assert _png_bit_depth(out) == bit_depth


def test_16bit_needs_png_or_tiff(tmp_path):
    with pytest.raises(OptionError, match="JPEG stores 8 bits"):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.jpg", bit_depth=16)
    for wrong in (12, "16", True, np.array([16, 8])):
        with pytest.raises(OptionError, match="8 or 16"):
            save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.png", bit_depth=wrong)
    # A 16-bit content written to JPEG without an explicit depth: 8 bits, quietly.
    save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.jpg", info=ImageInfo(bit_depth=16))
    assert not list(tmp_path.glob(".*.part"))
    huge = Image.Exif()
    huge[MAKE] = "x" * 70000  # more than a JPEG's EXIF segment holds: dropped with a warning, not a crash
    with pytest.warns(UserWarning, match="does not fit a JPEG"):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "big.jpg", info=ImageInfo(exif=huge.tobytes()))
    assert MAKE not in Image.open(tmp_path / "big.jpg").getexif()


def test_without_the_extra_16bit_colour_reads_at_8_bits_with_a_warning(tmp_path, monkeypatch):
    codecs = pytest.importorskip("imagecodecs")
    (tmp_path / "rgb16.png").write_bytes(codecs.png_encode(_gradient16()))
    monkeypatch.setattr(images, "_optional", lambda module: None)
    monkeypatch.setattr(images, "_warned", set())
    with pytest.warns(UserWarning, match=r"atelier\[bitdepth\]"):
        tensor, info = load_image_info(tmp_path / "rgb16.png")
    assert info.bit_depth == 8 and len(torch.unique(tensor[0, 0])) <= 256
    with pytest.raises(OptionError, match="tifffile"):
        save_image(tensor, tmp_path / "out.tif", bit_depth=16)


def test_16bit_masks(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 600).round().astype(np.uint16), (2, 1))
    Image.fromarray(ramp).save(tmp_path / "mask16.png")
    for source in (tmp_path / "mask16.png", ramp):
        mask = load_masks([source], count=1, size=(2, 600))
        assert len(torch.unique(mask)) > 256
        assert torch.allclose(mask[0, 0, 0], torch.from_numpy(ramp[0] / 65535.0).float(), atol=1e-5)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(base, "load_vgg19", lambda *a, **k: random_vgg19())


def test_api_writes_16bit_output_from_16bit_content(tmp_path, tiny):
    pytest.importorskip("imagecodecs")  # reads the 16-bit colour PNG content
    content = tmp_path / "content16.png"
    save_image(torch.from_numpy(_gradient16(24, 32) / 65535.0).permute(2, 0, 1).float()[None], content,
               bit_depth=16, info=ImageInfo(exif=_exif(orientation=1).tobytes()))
    style = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(style)
    out = tmp_path / "out.png"
    image = stylize(content, style, "gatys", size=None, iterations=1, progress=False, output=out)
    assert image.size == (32, 24) and _png_bit_depth(out) == 16  # default: the content's depth
    assert Image.open(out).getexif()[MAKE] == "Atelier"
    with pytest.raises(OptionError, match="output"):
        stylize(content, style, "gatys", bit_depth=16)  # a bit depth with nothing to write
    with pytest.raises(OptionError, match="8 bits"):
        stylize(content, style, "gatys", output=tmp_path / "out.jpg", bit_depth=16)


def test_cli_bit_depth_16_with_jpeg_is_one_line_and_exit_2(tmp_path, capsys, tiny):
    content = tmp_path / "content.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(content)
    for command in (["stylize", str(content), "--style", str(content)], ["translate", str(content), "-m", "x"]):
        code = cli.main([*command, "-o", str(tmp_path / "out.jpg"), "--bit-depth", "16", "-q"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "8 bits" in err, err
    assert not (tmp_path / "out.jpg").exists()
    code = cli.main(["stylize", str(content), "--style", str(content), "--size", "16", "--iterations", "1",
                     "-o", str(tmp_path / "out.png"), "--bit-depth", "16", "-q"])
    assert code == 0 and _png_bit_depth(tmp_path / "out.png") == 16


def test_unusable_profile_is_read_as_srgb_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "_warned", set())
    pixels = np.full((4, 4, 3), 100, np.uint8)
    Image.fromarray(pixels).save(tmp_path / "bad_icc.png", icc_profile=b"not a profile" * 20)
    with pytest.warns(UserWarning, match="read as sRGB"):
        tensor, info = load_image_info(tmp_path / "bad_icc.png")
    assert info.profile is None and torch.allclose(tensor, torch.full_like(tensor, 100 / 255))


def test_16bit_gray_with_a_gray_profile(tmp_path):
    Image.fromarray(np.full((3, 5), 30000, np.uint16)).save(
        tmp_path / "gray.png", icc_profile=matrix_trc_profile(gamma=1.8, gray=True, name="gray 1.8"))
    tensor, info = load_image_info(tmp_path / "gray.png")
    linear = (30000 / 65535) ** 1.8  # the profile's curve, then sRGB's (IEC 61966-2-1) encoding
    expected = 1.055 * linear ** (1 / 2.4) - 0.055
    assert info.bit_depth == 16 and info.profile == "gray 1.8"
    assert torch.allclose(tensor, torch.full_like(tensor, expected), atol=2e-4)


def test_16bit_writes_are_atomic(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "_encode_png16", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.png", bit_depth=16)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a .part file
