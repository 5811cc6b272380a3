from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.errors import ImageError, ImageTooLargeError, MaskError, OutputExistsError
from atelier.io import load_image, load_masks, resize_longest, save_image


def gradient_rgb(w=20, h=10):
    array = np.zeros((h, w, 3), np.uint8)
    array[..., 0] = np.linspace(0, 255, w)[None]
    array[..., 1] = np.linspace(0, 255, h)[:, None]
    array[..., 2] = 128
    return array


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    image = Image.fromarray(gradient_rgb())
    if mode == "I;16":
        converted = image.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    elif mode == "F":
        converted = Image.fromarray(np.asarray(image.convert("L"), np.float32) / 255.0, "F")
    else:
        converted = image.convert(mode)
    suffix = ".tif" if mode in ("CMYK", "I;16", "I", "F") else ".png"
    path = tmp_path / f"img{suffix}"
    converted.save(path)
    tensor = load_image(path)
    assert tensor.shape == (1, 3, 10, 20) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    if mode in ("L", "I;16", "I", "F"):
        assert torch.allclose(tensor[:, 0], tensor[:, 1]) and tensor[..., -1].mean() > tensor[..., 0].mean()


def test_alpha_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    tensor = load_image(Image.fromarray(rgba, "RGBA"))
    assert torch.allclose(tensor, torch.ones_like(tensor))


def test_exif_orientation_applied(tmp_path):
    image = Image.fromarray(gradient_rgb(20, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).shape == (1, 3, 20, 10)


def test_arrays_and_tensors():
    array = gradient_rgb()
    tensor = load_image(array)
    assert torch.allclose(load_image(tensor), tensor)
    with pytest.raises(ImageError, match="uint8"):
        load_image(array.astype(np.float32))
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(torch.full((1, 3, 4, 4), 2.0))


def test_missing_corrupt_and_truncated(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageError, match="junk.jpg: not a readable image"):
        load_image(tmp_path / "junk.jpg")
    Image.fromarray(gradient_rgb(200, 200)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png: corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_pixel_limit(tmp_path):
    Image.fromarray(gradient_rgb(100, 100)).save(tmp_path / "big.png")
    message = r"100x100 px is above the limit of 5,000 pixels; pass a larger max_pixels"
    with pytest.raises(ImageTooLargeError, match=message):
        load_image(tmp_path / "big.png", max_pixels=5000)
    assert load_image(tmp_path / "big.png", max_pixels=10_000).shape == (1, 3, 100, 100)


def test_resize_longest():
    assert resize_longest(torch.rand(1, 3, 100, 50), 40).shape == (1, 3, 40, 20)


def test_save_is_atomic_and_refuses_overwrite(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    save_image(torch.rand(1, 3, 8, 8), path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_image(torch.rand(1, 3, 8, 8), path)
    before = path.read_bytes()

    def failing_save(self, fp, format=None, **params):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.rand(1, 3, 8, 8), path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_masks(tmp_path):
    mask = np.zeros((10, 20), np.uint8)
    mask[:, :10] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    Image.fromarray(255 - mask).save(tmp_path / "right.png")
    masks = load_masks([tmp_path / "left.png", tmp_path / "right.png"], count=2, size=(20, 40))
    assert masks.shape == (1, 2, 20, 40)
    assert masks[0, 0, :, :15].min() == 1 and masks[0, 0, :, 25:].max() == 0
    with pytest.raises(MaskError, match="got 1 mask"):
        load_masks([tmp_path / "left.png"], count=2, size=(20, 40))
    with pytest.raises(MaskError, match="mask is 20x10 px but the content is 20x20 px"):
        load_masks([tmp_path / "left.png"], count=1, size=(20, 20))
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(MaskError, match="bad.png"):
        load_masks([tmp_path / "bad.png"], count=1, size=(20, 40))


def _png_claiming(tmp_path, width: int, height: int):
    """A grayscale PNG whose header claims ``width`` x ``height`` but whose data is a 4x4 image's."""
    import struct
    import zlib

    path = tmp_path / "claims.png"
    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    path.write_bytes(bytes(data))
    return path


def test_max_pixels_lifts_pillows_bomb_guard(tmp_path):
    path = _png_claiming(tmp_path, 12_000, 9_000)  # 108 MP: above Pillow's default guard (89 MP)
    default_limit = Image.MAX_IMAGE_PIXELS
    # Raised limit: Pillow opens it, and the data (4x4 only) is what is wrong with the file.
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path, max_pixels=200_000_000)
    with pytest.raises(ImageTooLargeError, match="12000x9000 px is above the limit of 100,000,000"):
        load_image(path, max_pixels=100_000_000)
    with pytest.raises(ImageTooLargeError, match="above the limit of 1,000 pixels"):
        load_image(path, max_pixels=1_000)
    assert Image.MAX_IMAGE_PIXELS == default_limit


def test_unreadable_file_messages_say_what_to_do(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    Image.fromarray(gradient_rgb()).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    for source, remedy in ((tmp_path / "junk.jpg", "convert it to PNG or JPEG"),
                           (tmp_path / "cut.png", "re-save or re-download it"),
                           (tmp_path / "missing.png", "check the path"),
                           (tmp_path, "name an image file in it"),
                           (torch.full((1, 3, 4, 4), 2.0), "clamp")):
        with pytest.raises(ImageError) as info:
            load_image(source)
        assert remedy in str(info.value), str(info.value)


def test_truncated_tiff_is_an_image_error_without_a_warning(tmp_path):
    import io
    import warnings

    from atelier.io.images import load_image

    buffer = io.BytesIO()
    Image.new("RGB", (7, 3)).save(buffer, "TIFF")
    path = tmp_path / "cut.tif"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 4])  # Pillow warns "Truncated File Read"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "Truncated File Read" must not reach the user
        with pytest.raises(ImageError, match="truncated"):
            load_image(path)


def test_image_files_lists_images_flat_or_recursive_and_skips_hidden_and_other_files(tmp_path):
    from atelier.io.images import image_files

    for name in ["b.JPG", "a.png", "notes.txt", ".c.png", "sub/d.tif", ".cache/e.png", "sub/.f.webp"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()  # a folder with an image suffix is not a file
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == ["a.png", "b.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path, recursive=True)] == \
        ["a.png", "b.JPG", "sub/d.tif"]
    assert image_files(tmp_path / "missing") == []
