"""Collections: a folder of images or a text list of files, with clear errors for bad ones."""

from __future__ import annotations

import pytest

from atelier.cli import main
from atelier.train.data import MIN_COLLECTION_IMAGES, DatasetError, ImageFolder, collection_files
from conftest import _write_folder
from helpers import smooth_image, stripes_image


def _shared_layout(root, count=MIN_COLLECTION_IMAGES):
    """``root/style/*.png`` and ``root/collections/genre.txt`` naming them, as in shared/train."""
    style = root / "style"
    style.mkdir(parents=True)
    names = []
    for i in range(count):
        from PIL import Image

        array = (stripes_image(24, 24, period=3 + i % 4)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")
        Image.fromarray(array).save(style / f"p{i}.png")
        names.append(f"p{i}.png")
    lists = root / "collections"
    lists.mkdir()
    listing = lists / "genre.txt"
    listing.write_text("# a genre\n\n" + "\n".join(names) + "\n")
    return listing


def test_a_list_names_files_of_the_sibling_style_folder(tmp_path):
    listing = _shared_layout(tmp_path)
    files = collection_files(listing, minimum=MIN_COLLECTION_IMAGES)
    assert [p.name for p in files] == [f"p{i}.png" for i in range(MIN_COLLECTION_IMAGES)]
    assert all(p.parent == tmp_path / "style" for p in files)
    folder = ImageFolder(listing, crop_size=16)
    assert len(folder) == MIN_COLLECTION_IMAGES and folder.fixed(3, 16).shape == (3, 3, 16, 16)


def test_a_folder_is_a_collection_too(tmp_path):
    folder = _write_folder(tmp_path / "f", [smooth_image(20, 20, seed=s) for s in range(3)])
    assert len(collection_files(folder)) == 3
    with pytest.raises(DatasetError, match=f"3 images, fewer than the {MIN_COLLECTION_IMAGES} needed"):
        collection_files(folder, minimum=MIN_COLLECTION_IMAGES)


def test_missing_and_unreadable_listed_files_are_named(tmp_path):
    listing = _shared_layout(tmp_path)
    listing.write_text(listing.read_text() + "gone.png\n")
    with pytest.raises(DatasetError, match=r"1 of 9 listed images do not exist \(first: .*gone.png\)"):
        collection_files(listing)
    (tmp_path / "style" / "gone.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"1 of 9 listed images are not readable images \(first: .*gone.png\)"):
        collection_files(listing)
    with pytest.raises(DatasetError, match="no such folder or list"):
        collection_files(tmp_path / "nowhere")


def test_training_on_too_small_a_collection_is_one_line_and_exit_2(tmp_path, capsys):
    listing = _shared_layout(tmp_path, count=3)
    content = _write_folder(tmp_path / "photos", [smooth_image(40, 40, seed=s) for s in range(2)])
    config = tmp_path / "c.yaml"
    config.write_text(f"task: style_aware\ncontent: {content}\nstyle: {listing}\noutput: {tmp_path / 'run'}\n"
                      "steps: 1\ncrop_size: 32\noptions: {width: 2, blocks: 0, disc_width: 2}\n")
    assert main(["train", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"3 style images, fewer than the {MIN_COLLECTION_IMAGES} task 'style_aware' needs" in err[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
