"""Helpers shared by the benchmark scripts: paths, timing, image crops, contact sheets, the peer."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

# One copy in the library, shared with `atelier eval`: the peer package and the sheets' centre crop.
from atelier.eval.peers import PEER, load_peer
from atelier.eval.report import square

__all__ = ["DATA", "PEER", "ROOT", "content_images", "find_image", "jpeg_quality", "load_peer",
           "median_time", "rel", "save_sheet", "square"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def rel(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it or next to it (for printing)."""
    resolved = path.resolve()
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        if resolved.is_relative_to(base):
            return prefix + str(resolved.relative_to(base))
    return str(path)


def median_time(run: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median seconds of ``repeats`` calls of ``run`` after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def content_images(folder: Path) -> list[Path]:
    from atelier.io.images import image_files

    return image_files(folder)


def find_image(folder: Path, stem: str) -> Path:
    for path in content_images(folder):
        if path.stem == stem or path.name == stem:
            return path
    raise SystemExit(f"no image {stem!r} in {folder}")


def jpeg_quality(image: Image.Image, max_kb: int) -> int:
    """The highest JPEG quality (85 down to 40) at which ``image`` stays under ``max_kb`` KB."""
    quality = 85
    while quality > 40:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() < max_kb * 1000:
            break
        quality -= 5
    return quality


def save_sheet(sheet: Tensor, path: Path, max_kb: int) -> str:
    """Write a contact sheet as JPEG under ``max_kb`` KB when possible; returns a description."""
    from atelier.io.images import save_image, tensor_to_pil

    quality = jpeg_quality(tensor_to_pil(sheet), max_kb)
    save_image(sheet, path, overwrite=True, quality=quality)
    size = f"{sheet.shape[-1]}x{sheet.shape[-2]} px, {path.stat().st_size / 1000:.0f} KB, JPEG quality {quality}"
    if path.stat().st_size >= max_kb * 1000:
        size += f", above {max_kb} KB even at the lowest quality"
    return size
