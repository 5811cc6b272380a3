"""Reading images robustly and writing them atomically.

Images enter atelier as RGB float tensors ``(1, 3, H, W)`` in [0, 1], in sRGB. Every oddity of
real files is normalised here, once: EXIF orientation, grayscale, alpha (composited on white),
palettes, 16-bit and float modes, CMYK, and embedded ICC profiles (converted to sRGB, see
:mod:`atelier.io.icc`). 16-bit files keep their precision: their pixels go to float without an
8-bit step (16-bit colour PNG and TIFF need the ``bitdepth`` extra: Pillow holds only 8 bits per
colour channel).

What of the content's file travels to the output (its bit depth, its EXIF minus orientation) is
an :class:`ImageInfo`, returned by :func:`load_image_info` and taken by :func:`save_image`, which
writes 8-bit or 16-bit PNG/TIFF with the sRGB profile embedded.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import ImageError, ImageTooLargeError, OptionError, OutputExistsError, OutputNotWritableError
from ..ops.layout import spatial_size
from .atomic import atomic_path, check_writable_folder
from .icc import convert_to_srgb, lcms_to_srgb, srgb_profile_bytes

__all__ = [
    "BIT_DEPTHS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "ImageInput",
    "check_bit_depth",
    "check_output_path",
    "image_files",
    "load_image",
    "load_image_info",
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
#: Suffixes of the files taken from a folder of images: every format atelier writes (and reads).
IMAGE_SUFFIXES = tuple(sorted(SAVE_FORMATS))


def image_files(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (below it with ``recursive``), sorted by path.

    The one folder listing of the package (stylize and batch inputs, eval styles, training
    folders and collections): hidden files and folders (``.name``, such as ``.ipynb_checkpoints``
    or macOS's ``._`` files) are skipped, and so is anything whose suffix is not in
    :data:`IMAGE_SUFFIXES`. A missing folder lists nothing; callers say what was expected.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Set Pillow's ``MAX_IMAGE_PIXELS`` to ``max_pixels`` for the block, then restore it.

    This runs under a lock, so concurrent opens each see their own limit.
    """
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
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(
            f"image arrays must be uint8 (H, W, 3) with values 0-255 (or uint16, 0-65535), got dtype {array.dtype}; "
            "convert with (array * 255).round().astype(np.uint8)"
        )
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"image arrays must have shape (H, W, 3), got {array.shape}; for a PIL image use "
                         "np.asarray(image.convert('RGB'))")
    if array.dtype == np.uint16:
        pixels = _flatten_alpha(array.astype(np.float32) / 65535.0)
        return _float_to_tensor(pixels)
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


# ---------------------------------------------------------------------------------------------
# 16-bit and colour-managed reading


@dataclass(frozen=True)
class ImageInfo:
    r"""What an output inherits from the content's file (see :func:`save_image`).

    Attributes:
        bit_depth: bits per channel that reached the tensor: 16 for 16-bit (and 32-bit integer or
            float) files read at full precision, 8 otherwise. The default bit depth of the output.
        exif: the file's EXIF (Pillow's ``b"Exif\0\0"`` + TIFF form) without its orientation tag,
            since the pixels are already upright; None when the file has none.
        profile: description of the embedded ICC profile the pixels were converted from (None:
            no profile, read as sRGB).
    """

    bit_depth: int = 8
    exif: bytes | None = None
    profile: str | None = None


#: The extra that reads and writes 16-bit colour files (see README, "16-bit and colour").
BITDEPTH_EXTRA_HINT = "pip install 'atelier[bitdepth]' (tifffile, imagecodecs)"

_ORIENTATION = 0x0112
#: First-IFD EXIF tags copied to outputs: what describes the photo and who made it (the file
#: layout tags of a TIFF, its strips, sizes and compression, describe the input file only).
_EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x8298)
_EXIF_SUB_IFDS = (0x8769, 0x8825)  # Exif IFD (exposure, lens, dates) and GPS IFD
_GRAY_16 = ("I;16", "I;16B", "I;16L", "I;16N")
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, UserWarning, stacklevel=3)


def _exif_metadata(image: Image.Image) -> tuple[bytes | None, int]:
    """The EXIF an output inherits (no orientation, no file-layout tags) and the orientation."""
    try:
        exif = image.getexif()
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
        kept = Image.Exif()
        for tag in _EXIF_TAGS:
            if tag in exif:
                kept[tag] = exif[tag]
        if str(kept.get(0x010E, "")).startswith('{"shape"'):  # tifffile's layout note, not a caption
            del kept[0x010E]
        for tag in _EXIF_SUB_IFDS:
            if tag in exif and exif.get_ifd(tag):
                kept[tag] = dict(exif.get_ifd(tag))
        return (kept.tobytes() if len(kept) else None), orientation
    except Exception:  # a broken EXIF block must not make a fine image unreadable
        return None, 1


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, C)`` pixels turned upright by the EXIF orientation (CIPA DC-008, tag 0x0112).

    This is what :func:`PIL.ImageOps.exif_transpose` does for 8-bit images.
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.rot90(pixels, 2).transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _flatten_alpha(pixels: np.ndarray) -> np.ndarray:
    """Composite ``(H, W, C)`` float pixels with an optional alpha on white.

    ``(H, W, C)`` float, C = 1 or 3 colour channels plus an optional alpha: composited on white
    (as 8-bit images are) -> C = 1 or 3.
    """
    if pixels.shape[-1] in (2, 4):
        alpha = pixels[..., -1:]
        return pixels[..., :-1] * alpha + (1.0 - alpha)
    return pixels


def _optional(module: str) -> Any:  # a module or None
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _png_header(path: Path) -> tuple[int, int]:
    """Bit depth and colour type from a PNG's IHDR (ISO 15948 sec. 11.2.2)."""
    with open(path, "rb") as file:
        head = file.read(26)
    return (head[24], head[25]) if len(head) == 26 else (8, 0)


def _read_16bit(image: Image.Image, path: Path | None, name: str) -> np.ndarray | None:
    """The pixels of a 16-bit file as ``(H, W, C)`` uint16 (C = 1-4), or None.

    None when the file is not 16-bit (or holds something other than gray/RGB, left to Pillow at 8 bits).

    Pillow keeps 16-bit gray (``I;16``) but reduces 16-bit colour to 8 bits, so colour PNGs are
    decoded by imagecodecs (libpng) and colour TIFFs by tifffile: the file is read twice
    (Pillow checked it and its size already; this keeps every check in one place).
    """
    if image.mode in _GRAY_16:
        return np.asarray(image).astype(np.uint16)[..., None]
    if path is None or image.format not in ("PNG", "TIFF"):
        return None
    if image.format == "PNG":
        depth, colour_type = _png_header(path)
        if depth != 16 or colour_type not in (2, 4, 6):  # RGB, gray + alpha, RGBA
            return None
        codecs = _optional("imagecodecs")
        if codecs is None:
            _warn_once(f"{name}: 16-bit colour PNG read at 8 bits; to keep 16 bits, {BITDEPTH_EXTRA_HINT}")
            return None
        decode = lambda: codecs.png_decode(path.read_bytes())  # noqa: E731
    else:
        bits = image.tag_v2.get(258, (8,)) if hasattr(image, "tag_v2") else (8,)
        bits = bits if isinstance(bits, tuple) else (bits,)
        if 16 not in bits or len(bits) < 2:
            return None
        tifffile = _optional("tifffile")
        if tifffile is None:
            _warn_once(f"{name}: 16-bit colour TIFF read at 8 bits; to keep 16 bits, {BITDEPTH_EXTRA_HINT}")
            return None

        def decode() -> np.ndarray | None:
            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages[0]
                if int(page.photometric) not in (1, 2):  # MINISBLACK, RGB; CMYK, Lab...: Pillow
                    return None
                array = page.asarray()
                if int(page.planarconfig) == 2 and array.ndim == 3:  # separate planes: (S, H, W)
                    array = np.moveaxis(array, 0, -1)
                return array
    try:
        array = decode()
    except Exception as error:  # each decoder raises its own classes; Pillow read the file fine
        if _optional("imagecodecs") is None:  # tifffile needs it for LZW, JPEG...: use Pillow's 8 bits
            _warn_once(f"{name}: this 16-bit TIFF's compression needs imagecodecs, read at 8 bits; "
                       f"{BITDEPTH_EXTRA_HINT}")
            return None
        raise ImageError(f"{name}: corrupt 16-bit image ({error.__class__.__name__}: {error}); re-save "
                         "or re-download it") from None
    if array is None or array.dtype != np.uint16:
        return None
    array = array[..., None] if array.ndim == 2 else array
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or array.shape[:2] != image.size[::-1]:
        return None
    return array


def _gray_levels(image: Image.Image) -> np.ndarray:
    """``I;16``, ``I`` and ``F`` gray as float in [0, 1] from their nominal range.

    The range is 0-65535 for ``I;16``, 0-1 for ``F``, the data range for ``I``.
    """
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        return array / 65535.0
    if image.mode == "F":
        return array.clip(0.0, 1.0) if array.max() <= 1.0 else array / max(array.max(), 1e-12)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else array * 0


def _float_to_tensor(pixels: np.ndarray) -> Tensor:
    """``(H, W, 1 or 3)`` float in [0, 1] -> ``(1, 3, H, W)`` float32."""
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    array = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(array)[None].clamp_(0.0, 1.0)


def _to_srgb(pixels: np.ndarray, icc: bytes, name: str) -> tuple[np.ndarray, str | None]:
    """Convert ``(H, W, 1 or 3)`` float pixels described by ``icc`` to sRGB.

    In float for matrix/TRC profiles, else through LittleCMS at 8 bits; an unusable profile is ignored (the
    pixels are read as sRGB, as browsers do) with a warning.
    """
    converted = convert_to_srgb(pixels, icc)
    if converted is not None:
        return converted
    gray = pixels.shape[-1] == 1
    levels = (np.clip(pixels, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    eight_bit = Image.fromarray(levels[..., 0] if gray else levels, "L" if gray else "RGB")
    result = lcms_to_srgb(eight_bit, icc)
    if result is None:
        _warn_once(f"{name}: its ICC profile cannot be used with its pixels; read as sRGB")
        return pixels, None
    return np.asarray(result, dtype=np.float32) / 255.0, "ICC profile (8-bit LittleCMS conversion)"


def _decode(image: Image.Image, path: Path | None, name: str) -> tuple[Tensor, ImageInfo]:
    """Any opened image -> upright sRGB ``(1, 3, H, W)`` float and the :class:`ImageInfo` an output inherits.

    8-bit files without a profile take the plain 8-bit path.
    """
    exif, orientation = _exif_metadata(image)
    icc = image.info.get("icc_profile") or None
    deep = _read_16bit(image, path, name)
    if deep is None and icc is None and image.mode not in ("I", "F"):
        return pil_to_tensor(to_pil_rgb(image, name)), ImageInfo(8, exif)
    bit_depth = 16 if deep is not None or image.mode in ("I", "F") else 8
    if deep is not None:
        pixels = _flatten_alpha(_upright(deep, orientation).astype(np.float32) / 65535.0)
    elif image.mode in ("I", "F"):
        pixels = _upright(_gray_levels(image)[..., None], orientation)
    elif image.mode == "CMYK" and icc is not None:
        converted = lcms_to_srgb(image, icc)  # CMYK profiles are LUT-based: LittleCMS, 8 bits in and out
        if converted is None:
            _warn_once(f"{name}: its ICC profile cannot be used; CMYK read without colour management")
            return pil_to_tensor(to_pil_rgb(image, name)), ImageInfo(8, exif)
        upright = Image.fromarray(np.ascontiguousarray(_upright(np.asarray(converted), orientation)), "RGB")
        return pil_to_tensor(upright), ImageInfo(8, exif, "CMYK ICC profile")
    else:
        rgb = to_pil_rgb(image, name)  # upright, alpha on white
        pixels = np.asarray(rgb, dtype=np.float32) / 255.0
        if image.mode in ("L", "LA", "1", "La"):
            pixels = pixels[..., :1]
    profile = None
    if icc is not None:
        pixels, profile = _to_srgb(pixels, icc, name)
    return _float_to_tensor(pixels), ImageInfo(bit_depth, exif, profile)


def load_image(
    source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
) -> Tensor:
    """Load a path, PIL image, ``(H, W, 3)`` uint8 (or uint16) array or tensor as ``(1, 3, H, W)``.

    Values are in [0, 1], sRGB (see :func:`load_image_info`).

    Raises:
        ImageError: missing, unreadable, corrupt or unsupported input, or one without pixels.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        OptionError: ``max_pixels`` is not a positive whole number.
    """
    return load_image_info(source, max_pixels=max_pixels, name=name)[0]


def load_image_info(
    source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
) -> tuple[Tensor, ImageInfo]:
    """:func:`load_image` that also returns what an output inherits from the input.

    That is its bit depth and EXIF, for :func:`save_image`.

    16-bit PNG and TIFF (and uint16 arrays) reach the tensor without an 8-bit step; an embedded
    ICC profile is converted to sRGB (:mod:`atelier.io.icc`); EXIF orientation is applied.
    """
    check_max_pixels(max_pixels)
    info = ImageInfo()
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
        info = ImageInfo(bit_depth=16 if source.dtype == np.uint16 else 8)
    elif isinstance(source, Image.Image):
        tensor, info = _decode(source, None, name)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        tensor, info = _decode(_open(path, max_pixels), path, str(path))
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
    return tensor, info


def check_max_pixels(max_pixels: object) -> int:
    """``max_pixels`` must be a positive whole number (OptionError otherwise)."""
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise OptionError(f"max_pixels must be a positive whole number of pixels, got {max_pixels!r}")
    return max_pixels


def resize_to(image: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize ``(B, C, H, W)`` in [0, 1] to ``size`` = (h, w), antialiased when shrinking.

    ``mode``: ``"bilinear"`` or ``"bicubic"`` (sharper when enlarging; the clamp removes its overshoot).
    """
    if spatial_size(image) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2]
    return F.interpolate(image, size=size, mode=mode, align_corners=False, antialias=shrink).clamp(0, 1)


def resize_longest(image: Tensor, size: int) -> Tensor:
    """Resize ``(B, C, H, W)`` so its longest side is ``size`` px (antialiased bilinear)."""
    if size < 1:
        raise OptionError(f"size must be a positive number of pixels, got {size}")
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    return resize_to(image, (max(1, round(height * scale)), max(1, round(width * scale))))


def scaled_style_size(style: Tensor, output_size: tuple[int, int], style_scale: float) -> tuple[int, int]:
    """Style size with ``style_scale**2`` times the output's pixel count, aspect kept.

    This is the style scale of Gatys et al. 2017, sec. 6.
    """
    h, w = style.shape[-2:]
    factor = style_scale * ((output_size[0] * output_size[1]) / (h * w)) ** 0.5
    return max(1, round(h * factor)), max(1, round(w * factor))


def tensor_to_pil(image: Tensor) -> Image.Image:
    """``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] to an 8-bit RGB PIL image."""
    if image.ndim == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


#: Bits per channel an output can be written with; 16 in these formats only.
BIT_DEPTHS = (8, 16)
DEEP_FORMATS = ("PNG", "TIFF")
#: Formats that carry an ICC profile and EXIF (BMP carries neither).
_METADATA_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")


def check_bit_depth(bit_depth: object, path: str | os.PathLike | None = None) -> int | None:
    """``bit_depth`` is None (the input's), 8 or 16, and 16 goes to a PNG or TIFF ``path``.

    Raises:
        OptionError: another value, 16 bits for a format that stores 8 (JPEG, WebP, BMP), or
            a 16-bit TIFF without tifffile installed.
    """
    if bit_depth is None:
        return None
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, int) or bit_depth not in BIT_DEPTHS:
        raise OptionError(f"bit depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and path is not None:
        fmt = SAVE_FORMATS.get(Path(path).suffix.lower())
        if fmt is not None and fmt not in DEEP_FORMATS:
            raise OptionError(f"{path}: {fmt} stores 8 bits per channel; write a .png or .tif for 16 bits, "
                              "or use --bit-depth 8 (bit_depth=8)")
        if fmt == "TIFF" and _optional("tifffile") is None:
            raise OptionError(f"{path}: writing 16-bit TIFF needs tifffile: {BITDEPTH_EXTRA_HINT}; "
                              "or write a .png")
    return bit_depth


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False, probe: bool = True,
                      bit_depth: int | None = None) -> Path:
    """Validate an output path before any work is done.

    Checks: format known, no clobbering, a bit depth the format can store (:func:`check_bit_depth`),
    and (with ``probe``) its folder writable (see :func:`~atelier.io.atomic.check_writable_folder`).
    """
    path = Path(path)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise OptionError(
            f"{path}: unknown image format {path.suffix or '(no extension)'!r}; "
            f"use one of {', '.join(sorted(SAVE_FORMATS))}"
        )
    check_bit_depth(bit_depth, path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if path.exists() and path.is_dir():
        raise OptionError(f"{path} is a folder; give a file name such as {path / 'out.png'}")
    if probe:
        check_writable_folder(path.parent)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png16(pixels: np.ndarray, exif: bytes | None) -> bytes:
    """``(H, W, 3)`` uint16 -> a 16-bit RGB PNG with the sRGB profile (iCCP) and ``exif`` (eXIf).

    Follows ISO 15948 / PNG 3rd ed.; written here because Pillow has no 16-bit RGB mode.
    """
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels.astype(">u2")).reshape(height, width * channels).view(np.uint8)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # filter type 2, "Up" (sec. 9.2): wraps modulo 256 as the spec says
    scanlines = np.concatenate([np.full((height, 1), 2, dtype=np.uint8), filtered], axis=1)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)),
              _png_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(srgb_profile_bytes()))]
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    chunks += [_png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _write_tiff16(file: Path, pixels: np.ndarray, exif: bytes | None) -> None:
    """``(H, W, 3)`` uint16 -> a zlib-compressed 16-bit RGB TIFF with the sRGB profile and EXIF.

    The EXIF is written as the first-IFD EXIF tags (camera, author, date; tifffile cannot write the
    Exif sub-IFD).
    """
    import tifffile

    tags = Image.Exif()
    if exif:
        with contextlib.suppress(Exception):
            tags.load(exif)
    text = {tag: str(tags[tag]) for tag in (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
            if isinstance(tags.get(tag), str) and tags[tag].isascii()}
    extratags = [(tag, "s", 0, value, True) for tag, value in text.items() if tag in (0x010F, 0x0110, 0x013B, 0x8298)]
    tifffile.imwrite(file, pixels, photometric="rgb", compression="zlib", iccprofile=srgb_profile_bytes(),
                     metadata=None, description=text.get(0x010E), software=text.get(0x0131, False),
                     datetime=text.get(0x0132), extratags=extratags)


def save_image(
    image: Tensor | Image.Image, path: str | os.PathLike, *, overwrite: bool = False, quality: int = 95,
    bit_depth: int | None = None, info: ImageInfo | None = None,
) -> Path:
    """Write ``image`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash or Ctrl-C mid-write never leaves a partial file at ``path``. The sRGB ICC profile is
    embedded (the pixels are sRGB) and ``info``'s EXIF copied (except in BMP).

    Args:
        image: ``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1], or a PIL image.
        path: the output; its extension picks the format.
        overwrite: replace an existing file.
        quality: JPEG/WebP quality.
        bit_depth: 8 or 16 bits per channel (16: PNG and TIFF only). None: ``info.bit_depth``
            where the format can store it, else 8.
        info: what the output inherits from the content (see :func:`load_image_info`).
    """
    path = check_output_path(path, overwrite=overwrite, probe=False, bit_depth=bit_depth)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    if bit_depth is None:
        bit_depth = info.bit_depth if info is not None and fmt in DEEP_FORMATS else 8
        if bit_depth == 16 and fmt == "TIFF" and _optional("tifffile") is None:
            _warn_once(f"{path}: written at 8 bits; 16-bit TIFF needs tifffile: {BITDEPTH_EXTRA_HINT}")
            bit_depth = 8
    exif = info.exif if info is not None and fmt in _METADATA_FORMATS else None
    if exif and fmt == "JPEG" and len(exif) > 65533:  # one APP1 segment holds 64 KB (JPEG's limit)
        _warn_once(f"{path}: the content's EXIF ({len(exif):,} bytes) does not fit a JPEG; written without it")
        exif = None
    try:
        if bit_depth == 16:
            tensor = image if isinstance(image, Tensor) else pil_to_tensor(to_pil_rgb(image))
            tensor = tensor[0] if tensor.ndim == 4 else tensor
            levels = (tensor.detach().float().clamp(0, 1) * 65535.0).round().to(torch.int32).permute(1, 2, 0)
            pixels = levels.cpu().numpy().astype(np.uint16)
            with atomic_path(path) as temp:
                if fmt == "PNG":
                    temp.write_bytes(_encode_png16(pixels, exif))
                else:
                    _write_tiff16(temp, pixels, exif)
            return path
        pil = tensor_to_pil(image) if isinstance(image, Tensor) else image
        options: dict[str, object] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        if fmt in _METADATA_FORMATS:
            options["icc_profile"] = srgb_profile_bytes()
            if exif:
                options["exif"] = exif
        with atomic_path(path) as temp, open(temp, "wb") as file:
            pil.save(file, format=fmt, **options)
    except OSError as error:
        if error.errno is None:  # an encoder's complaint, not the file system's
            raise
        raise OutputNotWritableError(f"{path}: cannot write the image ({error.strerror or error}); "
                                     "choose a writable output folder") from None
    return path
