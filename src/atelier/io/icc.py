"""Colour management: pixels described by an embedded ICC profile -> the working space (sRGB).

atelier works in sRGB (the encoders were trained on sRGB photos). An image tagged with another
profile (Adobe RGB, ProPhoto, Display P3, a camera's) must be converted on reading, or its colours
are misread (Adobe RGB greens look dull, ProPhoto looks washed out).

The common case, a matrix/TRC ("matrix-shaper") RGB or gray profile, is converted here in float
(ICC.1:2010 sec. F.3: ``XYZ_PCS = M · TRC(device)``; then the inverse of sRGB's own matrix and
curves), so a 16-bit input keeps its precision: LittleCMS through Pillow's ImageCms only offers
8-bit RGB. The destination is LittleCMS's built-in sRGB profile (the one embedded in outputs), so
the result matches ``ImageCms.profileToProfile`` up to its 8-bit rounding. Other profiles (LUT-based,
CMYK, Lab) go through ImageCms at 8 bits (:func:`lcms_to_srgb`).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["MatrixShaper", "convert_to_srgb", "lcms_to_srgb", "parse_matrix_shaper", "srgb_profile_bytes"]

#: Samples of a tabulated curve used to invert the destination's TRC (65536: exact at 16 bits).
_INVERSE_SAMPLES = 65536


@functools.lru_cache(maxsize=1)
def srgb_profile_bytes() -> bytes:
    """LittleCMS's built-in sRGB profile: the working space, embedded in every output."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _s15(data: bytes, offset: int, count: int) -> np.ndarray:
    """``count`` s15Fixed16Number values (ICC.1 sec. 4.6) at ``offset``."""
    return np.array(struct.unpack_from(f">{count}i", data, offset), dtype=np.float64) / 65536.0


@dataclass(frozen=True)
class Curve:
    """A tone reproduction curve (ICC ``curv`` or ``para`` type), device value -> linear, on [0, 1]."""

    kind: str  # "gamma", "table" or "para"
    params: tuple[float, ...] = ()
    table: np.ndarray | None = None
    function: int = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0)
        if self.kind == "gamma":
            return x ** self.params[0]
        if self.kind == "table":
            assert self.table is not None
            return np.interp(x, np.linspace(0.0, 1.0, len(self.table)), self.table)
        return _parametric(x, self.function, self.params)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Linear -> device value: in closed form for gamma and parametric curves, else by interpolation.

        The interpolation is in a dense sampling of the curve (the curves are monotonic).
        """
        y = np.clip(y, 0.0, 1.0)
        if self.kind == "gamma" and self.params[0] > 0:
            return y ** (1.0 / self.params[0])
        if self.kind == "para" and self.params[0] > 0 and self.params[1] > 0:
            return np.clip(_parametric_inverse(y, self.function, self.params), 0.0, 1.0)
        grid = np.linspace(0.0, 1.0, _INVERSE_SAMPLES)
        values = np.maximum.accumulate(self(grid))  # guard against flat or noisy tables
        return np.interp(y, values, grid)


def _parametric(x: np.ndarray, function: int, p: tuple[float, ...]) -> np.ndarray:
    """ICC.1:2010 table 65 (``parametricCurveType``), function types 0-4."""
    g = p[0]
    if function == 0:
        return x ** g
    a, b = p[1], p[2]
    base = np.maximum(a * x + b, 0.0)
    if function == 1:
        return np.where(x >= -b / a, base ** g, 0.0)
    if function == 2:
        return np.where(x >= -b / a, base ** g + p[3], p[3])
    if function == 3:
        return np.where(x >= p[4], base ** g, p[3] * x)
    return np.where(x >= p[4], base ** g + p[5], p[3] * x + p[6])


def _parametric_inverse(y: np.ndarray, function: int, p: tuple[float, ...]) -> np.ndarray:
    """The inverse of :func:`_parametric` (a > 0; each segment solved for X)."""
    g = p[0]
    if function == 0:
        return y ** (1.0 / g)
    a, b = p[1], p[2]
    if function == 1:
        return (y ** (1.0 / g) - b) / a
    if function == 2:
        return (np.maximum(y - p[3], 0.0) ** (1.0 / g) - b) / a
    c, d = p[3], p[4]
    offset, linear_offset = (p[5], p[6]) if function == 4 else (0.0, 0.0)
    knee = max(a * d + b, 0.0) ** g + offset  # Y at the segment boundary X = d
    power = (np.maximum(y - offset, 0.0) ** (1.0 / g) - b) / a
    straight = (y - linear_offset) / c if c > 0 else np.full_like(y, d)
    return np.where(y >= knee, power, straight)


_PARA_COUNTS = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}


def _curve(data: bytes, offset: int) -> Curve:
    kind = data[offset:offset + 4]
    if kind == b"curv":
        (count,) = struct.unpack_from(">I", data, offset + 8)
        if count == 0:
            return Curve("gamma", (1.0,))
        if count == 1:
            (gamma,) = struct.unpack_from(">H", data, offset + 12)
            return Curve("gamma", (gamma / 256.0,))  # u8Fixed8Number
        table = np.array(struct.unpack_from(f">{count}H", data, offset + 12), dtype=np.float64) / 65535.0
        return Curve("table", table=table)
    if kind == b"para":
        (function,) = struct.unpack_from(">H", data, offset + 8)
        if function not in _PARA_COUNTS:
            raise ValueError(f"unknown parametric curve type {function}")
        return Curve("para", tuple(_s15(data, offset + 12, _PARA_COUNTS[function])), function=function)
    raise ValueError(f"unsupported curve type {kind!r}")


@dataclass(frozen=True)
class MatrixShaper:
    """A matrix/TRC profile: ``XYZ_D50 = matrix @ [curve_r(R), curve_g(G), curve_b(B)]`` (RGB).

    Or ``Y = curve(gray)`` with ``matrix`` None (gray). ``description`` is for messages.
    """

    curves: tuple[Curve, ...]
    matrix: np.ndarray | None
    description: str

    def to_linear(self, device: np.ndarray) -> np.ndarray:
        """``(..., C)`` device values in [0, 1] -> linear values through each channel's curve."""
        return np.stack([curve(device[..., i]) for i, curve in enumerate(self.curves)], axis=-1)


def _description(data: bytes, tags: dict[bytes, tuple[int, int]]) -> str:
    if b"desc" not in tags:
        return "unnamed profile"
    offset = tags[b"desc"][0]
    kind = data[offset:offset + 4]
    try:
        if kind == b"desc":  # v2 textDescriptionType: ASCII count then text
            (count,) = struct.unpack_from(">I", data, offset + 8)
            return data[offset + 12:offset + 12 + count].split(b"\0")[0].decode("latin-1") or "unnamed profile"
        if kind == b"mluc":  # v4 multiLocalizedUnicodeType: first record, UTF-16BE
            length, start = struct.unpack_from(">II", data, offset + 20)
            return data[offset + start:offset + start + length].decode("utf-16-be").rstrip("\0") or "unnamed profile"
    except (struct.error, UnicodeDecodeError):
        pass
    return "unnamed profile"


def parse_matrix_shaper(data: bytes) -> MatrixShaper | None:
    """The matrix/TRC model of an RGB or gray display/input profile (ICC.1:2010 sec. F.3), or None.

    None when the profile is of another kind (LUT-only, CMYK, Lab PCS) or malformed.

    A profile that also has LUTs (A2B0) is still read as matrix/TRC: for colour-space profiles
    (Adobe RGB, ProPhoto, Display P3) the two describe the same colours.
    """
    try:
        if len(data) < 132 or data[36:40] != b"acsp":
            return None
        space, pcs = data[16:20], data[20:24]
        if pcs != b"XYZ ":
            return None
        (count,) = struct.unpack_from(">I", data, 128)
        tags = {}
        for index in range(min(count, 200)):
            sig, offset, size = struct.unpack_from(">4sII", data, 132 + 12 * index)
            if offset + size > len(data):
                return None
            tags[sig] = (offset, size)
        description = _description(data, tags)
        if space == b"GRAY" and b"kTRC" in tags:
            return MatrixShaper((_curve(data, tags[b"kTRC"][0]),), None, description)
        needed = (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")
        if space != b"RGB " or not all(tag in tags for tag in needed):
            return None
        columns = [_s15(data, tags[tag][0] + 8, 3) for tag in (b"rXYZ", b"gXYZ", b"bXYZ")]
        curves = tuple(_curve(data, tags[tag][0]) for tag in (b"rTRC", b"gTRC", b"bTRC"))
        matrix = np.stack(columns, axis=1)
        if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-9:
            return None
        return MatrixShaper(curves, matrix, description)
    except (struct.error, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _srgb() -> MatrixShaper:
    profile = parse_matrix_shaper(srgb_profile_bytes())
    assert profile is not None and profile.matrix is not None
    return profile


def _is_srgb(profile: MatrixShaper) -> bool:
    """Whether ``profile`` has the same primaries and curves as the working sRGB (to 1e-3).

    Conversion would then change nothing but rounding, so it is skipped (most photos carry one
    of the many sRGB profiles).
    """
    srgb = _srgb()
    if profile.matrix is None or srgb.matrix is None or not np.allclose(profile.matrix, srgb.matrix, atol=2e-3):
        return False
    grid = np.linspace(0.0, 1.0, 1024)
    return all(np.allclose(curve(grid), srgb.curves[0](grid), atol=1e-3) for curve in profile.curves)


#: Pixels converted per step: bounds the float64 temporaries (~100 MB) for any image size.
_CHUNK_PIXELS = 1 << 20


def convert_to_srgb(pixels: np.ndarray, icc: bytes) -> tuple[np.ndarray, str] | None:
    """Convert ``(H, W, C)`` float pixels in [0, 1] described by the profile ``icc`` to sRGB, with no 8-bit step.

    ``C`` is 3 for RGB, 1 for gray; the result is ``(H, W, 3)`` float32 in [0, 1].

    Returns ``(pixels, profile description)``; the pixels are returned unchanged when the profile
    is sRGB already. None when the profile is not matrix/TRC or does not fit the pixels (the
    caller then falls back to :func:`lcms_to_srgb`). Out-of-gamut colours are clipped, as
    LittleCMS does for integer output (relative colorimetric, which equals perceptual for
    matrix/TRC profiles: they have no gamut mapping).
    """
    profile = parse_matrix_shaper(icc)
    if profile is None or len(profile.curves) != pixels.shape[-1]:
        return None
    if profile.matrix is not None and _is_srgb(profile):
        return pixels, profile.description
    srgb = _srgb()
    assert srgb.matrix is not None
    # Device linear -> sRGB linear; both profiles' matrices go to the same D50 PCS.
    to_srgb = None if profile.matrix is None else np.linalg.solve(srgb.matrix, profile.matrix)
    height, width = pixels.shape[:2]
    result = np.empty((height, width, 3), dtype=np.float32)
    rows = max(1, _CHUNK_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        linear = profile.to_linear(pixels[top:top + rows].astype(np.float64))
        if to_srgb is None:
            # Gray: Y relative to the D50 white; sRGB's matrix maps (1, 1, 1) to that white, so
            # the neutral linear sRGB value is Y itself.
            result[top:top + rows] = srgb.curves[0].inverse(linear[..., 0])[..., None]
            continue
        srgb_linear = np.clip(linear @ to_srgb.T, 0.0, 1.0)
        for channel in range(3):
            result[top:top + rows, :, channel] = srgb.curves[channel].inverse(srgb_linear[..., channel])
    return result, profile.description


def lcms_to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Any profile LittleCMS can read (CMYK, LUT-based RGB) -> 8-bit sRGB, through Pillow's ImageCms.

    None when the profile is unreadable or does not fit the image's mode.
    """
    import io

    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, source, ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
                                         outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
