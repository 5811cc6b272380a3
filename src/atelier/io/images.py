"""Reading images robustly and writing them atomically.

Images enter atelier as RGB float tensors ``(1, 3, H, W)`` in [0, 1]. Every oddity of real
files is normalised here, once: EXIF orientation, grayscale, alpha (composited on white),
palettes, 16-bit and float modes, CMYK.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import ImageError, ImageTooLargeError, OptionError, OutputExistsError, OutputNotWritableError
from ..ops.layout import spatial_size
from .atomic import atomic_path, check_writable_folder

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "check_output_path",
    "load_image",
    "resize_longest",
    "resize_to",
    "save_image",
    "scaled_style_size",
    "tensor_to_pil",
    "to_pil_rgb",
]

#: Inputs above this many pixels are refused unless the caller raises ``max_pixels``
#: (8K UHD; decoding alone takes ~400 MB, and PIL's own bomb check starts at 89 MP).
DEFAULT_MAX_PIXELS = 7680 * 4320

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, Tensor]  # noqa: UP007 (runtime alias)

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF"}


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Set Pillow's ``MAX_IMAGE_PIXELS`` to ``max_pixels`` for the block, then restore it
    (under a lock, so concurrent opens each see their own limit)."""
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise ImageError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, expected an image file; name an image file in it")
    try:
        # Pillow's decompression-bomb guard follows max_pixels (for this open only): a larger
        # max_pixels lifts it, a smaller one makes it refuse before decoding.
        with warnings.catch_warnings():
            # Up to twice the limit Pillow only warns: the check below refuses with the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Pillow warns about damaged metadata (corrupt EXIF, oversized TIFF tags) and goes on
            # with the pixels: not the user's concern. A truncated TIFF it only warns about too:
            # make that the error it is (filters added later take precedence).
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            warnings.filterwarnings("error", message="Truncated File Read", category=UserWarning)
            with _pillow_pixel_limit(max_pixels):  # Pillow checks the size in open(), not in load()
                image = Image.open(path)
            try:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"{path}: {width}x{height} px is above the limit of {max_pixels:,} pixels; "
                        "pass a larger max_pixels (--max-pixels) if you have the memory"
                    )
                image.load()
            except BaseException:
                image.close()  # a refused or broken file is not left open
                raise
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(
            f"{path}: above the limit of {max_pixels:,} pixels (Pillow: {error}); "
            "pass a larger max_pixels (--max-pixels) if you have the memory"
        ) from None
    except UnidentifiedImageError as error:
        raise ImageError(f"{path}: not a readable image ({error.__class__.__name__}); "
                         "convert it to PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError, UserWarning) as error:
        raise ImageError(f"{path}: corrupt or truncated image ({error}); re-save or re-download it") from None
    return image


def to_pil_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, honouring EXIF orientation.

    Alpha is composited on white; 16-bit and float grayscale are rescaled to 0–255 from
    their nominal range (0–65535 for ``I;16``, 0–1 for ``F``, the data range for ``I``).
    """
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block must not make a fine image unreadable
        pass
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            array = array / 65535.0
        elif mode == "F":
            array = array.clip(0.0, 1.0) if array.max() <= 1.0 else array / max(array.max(), 1e-12)
        else:
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) if high > low else array * 0
        gray = Image.fromarray((array * 255.0 + 0.5).clip(0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
    elif mode in ("LA", "PA", "La"):
        image = image.convert("RGBA")
    if image.mode == "RGBA" or image.mode == "RGBa":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
        except (ValueError, OSError) as error:
            raise ImageError(f"{name}: cannot convert image mode {mode} to RGB ({error}); convert it to an RGB PNG or "
                             "JPEG") from None
    return image


def _array_to_tensor(array: np.ndarray) -> Tensor:
    if array.dtype != np.uint8:
        raise ImageError(
            f"image arrays must be uint8 (H, W, 3) with values 0-255, got dtype {array.dtype}; "
            "convert with (array * 255).round().astype(np.uint8)"
        )
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"image arrays must have shape (H, W, 3), got {array.shape}; for a PIL image use "
                         "np.asarray(image.convert('RGB'))")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        return pil_to_tensor(to_pil_rgb(Image.fromarray(array, "RGBA")))
    # A copy when the array is read-only (np.asarray of a PIL image): torch warns about those.
    array = np.ascontiguousarray(array) if array.flags.writeable else np.array(array, copy=True)
    return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0


def pil_to_tensor(image: Image.Image) -> Tensor:
    """8-bit RGB PIL image to ``(1, 3, H, W)`` float in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255.0


def load_image(
    source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
) -> Tensor:
    """Load a path, PIL image, ``(H, W, 3)`` uint8 array or tensor as ``(1, 3, H, W)`` in [0, 1].

    Raises:
        ImageError: missing, unreadable, corrupt or unsupported input, or one without pixels.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        OptionError: ``max_pixels`` is not a positive whole number.
    """
    check_max_pixels(max_pixels)
    if isinstance(source, Tensor):
        tensor = source.detach()
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4 or tensor.shape[:2] != (1, 3):
            raise ImageError(f"{name}: image tensors must be (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}")
        tensor = tensor.float()
        if tensor.numel() and not bool(torch.isfinite(tensor).all()):
            raise ImageError(f"{name}: the image tensor holds NaN or infinite values; give values in [0, 1]")
        if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
            raise ImageError(f"{name}: image tensors must hold values in [0, 1]; scale them, or clamp with "
                             ".clamp(0, 1)")
    elif isinstance(source, np.ndarray):
        tensor = _array_to_tensor(source)
    elif isinstance(source, Image.Image):
        tensor = pil_to_tensor(to_pil_rgb(source, name))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        tensor = pil_to_tensor(to_pil_rgb(_open(path, max_pixels), str(path)))
    else:
        raise ImageError(
            f"{name}: expected a path, PIL image, uint8 array or tensor, got {type(source).__name__}"
        )
    height, width = tensor.shape[-2:]
    if height * width == 0:
        raise ImageError(f"{name}: the image is {width}x{height} px, it has no pixels; give an image of "
                         "at least 1x1 px")
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} px is above the limit of {max_pixels:,} pixels; "
            "pass a larger max_pixels (--max-pixels) if you have the memory"
        )
    return tensor


def check_max_pixels(max_pixels: object) -> int:
    """``max_pixels`` must be a positive whole number (OptionError otherwise)."""
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise OptionError(f"max_pixels must be a positive whole number of pixels, got {max_pixels!r}")
    return max_pixels


def resize_to(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(B, C, H, W)`` in [0, 1] to ``size`` = (h, w): bilinear, antialiased when shrinking."""
    if spatial_size(image) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink).clamp(0, 1)


def resize_longest(image: Tensor, size: int) -> Tensor:
    """Resize ``(B, C, H, W)`` so its longest side is ``size`` px (antialiased bilinear)."""
    if size < 1:
        raise OptionError(f"size must be a positive number of pixels, got {size}")
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    return resize_to(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def scaled_style_size(style: Tensor, output_size: tuple[int, int], style_scale: float) -> tuple[int, int]:
    """Style size with ``style_scale**2`` times the output's pixel count, aspect kept
    (the style scale of Gatys et al. 2017, sec. 6)."""
    h, w = style.shape[-2:]
    factor = style_scale * ((output_size[0] * output_size[1]) / (h * w)) ** 0.5
    return max(1, round(h * factor)), max(1, round(w * factor))


def tensor_to_pil(image: Tensor) -> Image.Image:
    """``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] to an 8-bit RGB PIL image."""
    if image.ndim == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False, probe: bool = True) -> Path:
    """Validate an output path before any work is done: format known, no clobbering, and (with
    ``probe``) its folder writable (see :func:`~atelier.io.atomic.check_writable_folder`)."""
    path = Path(path)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise OptionError(
            f"{path}: unknown image format {path.suffix or '(no extension)'!r}; "
            f"use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if path.exists() and path.is_dir():
        raise OptionError(f"{path} is a folder; give a file name such as {path / 'out.png'}")
    if probe:
        check_writable_folder(path.parent)
    return path


def save_image(
    image: Tensor | Image.Image, path: str | os.PathLike, *, overwrite: bool = False, quality: int = 95
) -> Path:
    """Write ``image`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash or Ctrl-C mid-write never leaves a partial file at ``path``.
    """
    path = check_output_path(path, overwrite=overwrite, probe=False)
    pil = tensor_to_pil(image) if isinstance(image, Tensor) else image
    fmt = SAVE_FORMATS[path.suffix.lower()]
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        with atomic_path(path) as temp, open(temp, "wb") as file:
            pil.save(file, format=fmt, **options)
    except OSError as error:
        if error.errno is None:  # an encoder's complaint, not the file system's
            raise
        raise OutputNotWritableError(f"{path}: cannot write the image ({error.strerror or error}); "
                                     "choose a writable output folder") from None
    return path
