from __future__ import annotations

import random

import pytest
from PIL import Image

from atelier.train import DatasetError, ImageFolder
from atelier.train.data import random_resized_crop


def test_folder_is_recursive_and_skips_unreadable_files_with_a_count(folders):
    content, _ = folders
    data = ImageFolder(content, crop_size=16)
    assert len(data) == 7  # 6 images (some nested) + 1 corrupt; the .txt is not listed
    rng = random.Random(0)
    batch = torch_batch = data.batch(40, rng)
    assert torch_batch.shape == (40, 3, 16, 16) and 0 <= float(batch.min()) and float(batch.max()) <= 1
    assert [p.name for p in data.skipped] == ["broken0.jpg"]


def test_same_seed_same_batches(folders):
    content, _ = folders
    a = ImageFolder(content, crop_size=16).batch(4, random.Random(3))
    b = ImageFolder(content, crop_size=16).batch(4, random.Random(3))
    c = ImageFolder(content, crop_size=16).batch(4, random.Random(4))
    assert (a == b).all() and not (a == c).all()


def test_missing_empty_and_unreadable_folders(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        ImageFolder(tmp_path / "nope", crop_size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        ImageFolder(tmp_path / "empty", crop_size=8)
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(12):
        (bad / f"{i}.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="unreadable"):
        ImageFolder(bad, crop_size=8).sample(random.Random(0))


def test_random_resized_crop_size_and_bounds():
    image = Image.new("RGB", (30, 20), (10, 20, 30))
    rng = random.Random(0)
    for _ in range(20):
        crop = random_resized_crop(image, 12, rng, scale=(0.1, 1.0))
        assert crop.size == (12, 12) and crop.getpixel((5, 5)) == (10, 20, 30)
