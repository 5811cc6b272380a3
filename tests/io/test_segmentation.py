"""Colour-coded segmentation maps (Luan et al. 2017, sec. 3.2)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.errors import MaskError
from atelier.io.segmentation import PALETTE, clean_labels, label_masks, load_segmentation, snap_to_palette

SEGMENTATION = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "photo" / "segmentation"
NAMES = list(PALETTE)


def test_palette_is_the_papers():
    assert NAMES == ["blue", "green", "black", "white", "red", "yellow", "grey", "lightblue", "purple"]
    assert PALETTE["lightblue"] == (0, 255, 255) and PALETTE["purple"] == (255, 0, 255)


def test_snap_maps_noisy_palette_colours_to_their_labels():
    rng = np.random.default_rng(0)
    colors = np.array(list(PALETTE.values()))
    labels = rng.integers(0, len(colors), size=(40, 50))
    noisy = colors[labels] + rng.integers(-30, 31, size=(40, 50, 3))
    snapped = snap_to_palette(noisy.clip(0, 255).astype(np.uint8))
    assert snapped.shape == (40, 50) and snapped.dtype == np.int64
    np.testing.assert_array_equal(snapped, labels)


def test_clean_labels_gives_thin_border_lines_to_the_neighbouring_regions():
    labels = torch.full((20, 20), NAMES.index("black"))
    labels[:, 10:] = NAMES.index("white")
    labels[:, 10] = NAMES.index("grey")  # an antialiased border snapped to grey
    labels[2:8, 2:8] = NAMES.index("red")  # a real region survives
    cleaned = clean_labels(labels)
    assert set(cleaned.unique().tolist()) == {NAMES.index(n) for n in ("black", "white", "red")}
    assert torch.equal(cleaned[2:8, 2:8], labels[2:8, 2:8])


def _save(path: Path, labels: np.ndarray) -> Path:
    colors = np.array(list(PALETTE.values()), dtype=np.uint8)
    Image.fromarray(colors[labels]).save(path)
    return path


def test_load_resizes_with_nearest_and_survives_jpeg(tmp_path):
    labels = np.zeros((40, 60), dtype=np.int64)
    labels[:, 30:] = NAMES.index("green")
    labels[:20, :30] = NAMES.index("yellow")
    png = load_segmentation(_save(tmp_path / "seg.png", labels), size=(20, 30))
    assert png.shape == (20, 30) and png.dtype == torch.int64
    assert torch.equal(png, torch.from_numpy(labels[::2, ::2]))
    colors = np.array(list(PALETTE.values()), dtype=np.uint8)
    Image.fromarray(colors[labels]).save(tmp_path / "seg.jpg", quality=60)
    jpeg = load_segmentation(tmp_path / "seg.jpg")
    assert (jpeg.numpy() == labels).mean() > 0.99


def test_load_errors_name_the_path_and_both_sizes(tmp_path):
    with pytest.raises(MaskError, match="missing.png"):
        load_segmentation(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="bad.png"):
        load_segmentation(tmp_path / "bad.png")
    path = _save(tmp_path / "wide.png", np.zeros((20, 40), dtype=np.int64))
    with pytest.raises(MaskError, match=r"40x20 px.*30x30 px"):
        load_segmentation(path, size=(30, 30))
    assert load_segmentation(path, size=(10, 21)).shape == (10, 21)  # one pixel of rounding is fine


def test_label_masks_one_per_content_label_and_downsampled_soft():
    content = torch.full((8, 8), NAMES.index("blue"))
    content[:, 3:] = NAMES.index("red")
    style = torch.full((12, 6), NAMES.index("red"))
    style[:4] = NAMES.index("blue")
    style[4:6] = NAMES.index("green")  # only in the style: ignored
    content_masks, style_masks, names = label_masks(content, style, content_size=(4, 4), style_size=(6, 3))
    assert names == ["blue", "red"]
    assert content_masks.shape == (1, 2, 4, 4) and style_masks.shape == (1, 2, 6, 3)
    # Area downsampling: the blue|red border column (3 of 8 pixels) becomes a 0.5/0.5 column.
    assert torch.allclose(content_masks[0, 0, 0], torch.tensor([1.0, 0.5, 0.0, 0.0]))
    assert torch.allclose(content_masks.sum(1), torch.ones(1, 4, 4))
    assert torch.equal(style_masks[0, 0, :2], torch.ones(2, 3)) and style_masks[0, 0, 2:].sum() == 0
    assert style_masks[0, 1, :3].sum() == 0 and torch.equal(style_masks[0, 1, 3:], torch.ones(3, 3))
    full_content, full_style, _ = label_masks(content, style)
    assert full_content.shape == (1, 2, 8, 8) and full_style.shape == (1, 2, 12, 6)


def test_label_missing_in_the_style_falls_back_to_the_whole_style_with_a_warning():
    content = torch.full((6, 6), NAMES.index("black"))
    content[:, :2] = NAMES.index("lightblue")
    style = torch.full((6, 6), NAMES.index("black"))
    with pytest.warns(UserWarning, match="lightblue"):
        content_masks, style_masks, names = label_masks(content, style)
    assert names == ["black", "lightblue"]
    assert torch.equal(content_masks[0, 1], (content == NAMES.index("lightblue")).float())
    assert torch.equal(style_masks[0, 1], torch.ones(6, 6)) and torch.equal(style_masks[0, 0], torch.ones(6, 6))


def test_label_masks_ignore_slivers_below_min_fraction():
    content = torch.full((100, 100), NAMES.index("white"))
    content[0, 0] = NAMES.index("purple")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, names = label_masks(content, content.clone())
    assert names == ["white"]
    assert label_masks(content, content, min_fraction=0)[2] == ["white", "purple"]


@pytest.mark.skipif(not SEGMENTATION.is_dir(), reason="shared photo data not present")
def test_real_maps_of_the_paper_have_no_grey_border_regions():
    content = load_segmentation(SEGMENTATION / "in1.png")
    style = load_segmentation(SEGMENTATION / "tar1.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, names = label_masks(content, style)
    assert names == ["green", "black", "white"]
