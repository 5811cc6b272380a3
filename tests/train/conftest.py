from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import smooth_image, stripes_image


def _write_folder(folder, images, corrupt: int = 0):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        array = (image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        sub = folder / ("nested" if i % 2 else ".")
        sub.mkdir(exist_ok=True)
        Image.fromarray(array).save(sub / f"img{i}.{'png' if i % 3 else 'jpg'}")
    for i in range(corrupt):
        (folder / f"broken{i}.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("ignored: not an image")
    return folder


@pytest.fixture
def folders(tmp_path):
    """Tiny content and style folders (one unreadable file among the contents)."""
    content = _write_folder(tmp_path / "content", [smooth_image(48, 56, seed=s) for s in range(6)], corrupt=1)
    style = _write_folder(tmp_path / "style", [stripes_image(40, 40, period=p) for p in (4, 6, 8)])
    return content, style
