"""Image-folder datasets for training: recursive listing, random resized crops, flips.

Sampling is driven by a :class:`random.Random` whose state goes into every checkpoint, so a
resumed run draws exactly the batches the uninterrupted run would have drawn.

The trainer reads its data through the :class:`ImageSource` interface; :class:`ImageFolder`
is the default source, :class:`atelier.train.pack.TensorPack` (decoded images held on the
GPU, augmented there) the one of ``atelier recipe run``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ..errors import AtelierError
from ..io.images import IMAGE_SUFFIXES, image_files

__all__ = ["IMAGE_SUFFIXES", "MIN_COLLECTION_IMAGES", "DatasetError", "ImageFolder", "ImageSource", "SourceFactory",
           "collection_files", "crop_box", "folder_images", "random_resized_crop"]

class DatasetError(AtelierError):
    """A training folder is missing, empty, or has too few readable images."""


#: The fewest readable images a collection (one artist or genre) may have: a discriminator or a
#: style classifier fitted to fewer memorises them instead of learning the genre.
MIN_COLLECTION_IMAGES = 8


def _list_file_entries(listing: Path) -> list[Path]:
    """The files a collection list names, one per line (blank lines and ``#`` comments skipped).

    A relative name is looked up next to the list first, then in the sibling folders of the
    list's folder (the layout of ``train/collections/*.txt``, whose bare names are files of
    ``train/style/``), so the lists need no absolute paths.
    """
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{listing}: unreadable collection list ({error.__class__.__name__}); "
                           "give a UTF-8 text file with one image file per line") from None
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    siblings = sorted(p for p in listing.parent.parent.iterdir() if p.is_dir() and p != listing.parent) \
        if listing.parent.parent.is_dir() else []
    files = []
    for name in names:
        path = Path(name)
        if not path.is_absolute():
            candidates = [listing.parent / path] + [folder / path for folder in siblings]
            path = next((c for c in candidates if c.is_file()), listing.parent / path)
        files.append(path)
    return files


def folder_images(root: Path) -> list[Path]:
    """The image files below the folder ``root`` (recursive), sorted: the one order every reader uses."""
    return image_files(root, recursive=True)


def collection_files(root: str | Path, *, what: str = "images", minimum: int = 1) -> list[Path]:
    """The image files of a collection: a folder (recursive) or a text list of files.

    Every listed file must exist and open as an image (only its header is read, so this is
    quick); at least ``minimum`` must be there.

    Raises:
        DatasetError: a missing folder or list, missing or unreadable listed files, or fewer
            than ``minimum`` images; the message says which and what to do.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() not in IMAGE_SUFFIXES:
        files = _list_file_entries(root)
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise DatasetError(f"{root}: {len(missing)} of {len(files)} listed {what} do not exist (first: "
                               f"{missing[0]}); fix the list or put the files next to it")
        unreadable = [p for p in files if not _is_image(p)]
        if unreadable:
            raise DatasetError(f"{root}: {len(unreadable)} of {len(files)} listed {what} are not readable images "
                               f"(first: {unreadable[0]}); remove them from the list")
    elif root.is_dir():
        files = folder_images(root)
    else:
        raise DatasetError(f"{root}: no such folder or list of {what}; give a folder of images or a text file "
                           "listing one image per line")
    if len(files) < minimum:
        raise DatasetError(f"{root}: {len(files)} {what}, fewer than the {minimum} needed; add images "
                           f"({', '.join(IMAGE_SUFFIXES)}) or use a larger collection")
    return files


def _is_image(path: Path) -> bool:
    """Whether ``path`` opens as an image (reads the header only)."""
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018
        return True
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return False


class ImageSource(Protocol):
    """What the training loop reads images from (:class:`ImageFolder` or a GPU pack)."""

    @property
    def skipped(self) -> set[Path]:
        """Files found but unreadable (counted in model cards)."""
        ...

    def __len__(self) -> int:
        """Number of images in the source."""
        ...

    def batch(self, size: int, rng: random.Random) -> Tensor:
        """``(size, 3, S, S)`` random crops in [0, 1], drawn with ``rng``."""
        ...

    def fixed(self, count: int, size: int) -> Tensor:
        """``count`` evenly spaced images, centre-cropped to ``size`` (on the CPU)."""
        ...


class SourceFactory(Protocol):
    """Opens the image source of a config's folder (``ImageFolder`` itself is one)."""

    def __call__(self, root: str | Path, *, crop_size: int, crop_scale: tuple[float, float] = ...,
                 flip: bool = ..., what: str = ...) -> ImageSource:
        """Open the image source of the folder (or collection list) ``root``."""
        ...


def crop_box(width: int, height: int, rng: random.Random, scale: tuple[float, float] = (0.25, 1.0),
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(left, top, w, h)`` of a random crop, the Inception-style augmentation.

    The crop covers a random ``scale`` share of the area with a random aspect ``ratio`` (10 tries, then
    the central square).
    """
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    w = h = min(width, height)
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(
    image: Image.Image, size: int, rng: random.Random, scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """A random crop resized to ``size`` x ``size`` (the Inception-style augmentation of torchvision, in PIL).

    The crop covers a random ``scale`` share of the area with a random aspect ``ratio``.
    """
    left, top, w, h = crop_box(*image.size, rng, scale, ratio)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h), reducing_gap=2.0)


class ImageFolder:
    """All images below ``root`` (recursive; jpg, png, webp, bmp), sampled as random crops.

    ``root`` may also be a collection list, a text file naming one image per line (see
    :func:`collection_files`): its files must all be readable, and there must be at least
    ``minimum``. In a folder, unreadable files are skipped and counted (``skipped``), never
    fatal, unless most of the folder is unreadable.
    """

    def __init__(self, root: str | Path, *, crop_size: int, crop_scale: tuple[float, float] = (0.25, 1.0),
                 flip: bool = True, what: str = "images", minimum: int = 1) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(f"{self.root}: no such folder of {what}; set the path in the training config")
        if self.root.is_dir():
            self.files = folder_images(self.root)
            if not self.files:
                raise DatasetError(f"{self.root}: no images ({', '.join(IMAGE_SUFFIXES)}) found for {what}")
        self.files = collection_files(self.root, what=what, minimum=minimum)
        self.crop_size = crop_size
        self.crop_scale = crop_scale
        self.flip = flip
        self.what = what
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        """Number of image files found (unreadable ones included)."""
        return len(self.files)

    def read(self, index: int) -> Image.Image | None:
        """The RGB image at ``index`` (EXIF orientation applied), or None if unreadable."""
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image.draft("RGB", (self.crop_size * 2, self.crop_size * 2))  # JPEG: decode at reduced size
                return ImageOps.exif_transpose(image).convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
            self.skipped.add(path)
            return None

    def sample(self, rng: random.Random) -> Tensor:
        """One random crop ``(3, S, S)`` in [0, 1], redrawing past unreadable files."""
        for _ in range(100):
            image = self.read(rng.randrange(len(self.files)))
            if image is None:
                if len(self.skipped) > max(10, len(self.files) // 2):
                    raise DatasetError(f"{self.root}: {len(self.skipped)} of {len(self.files)} {self.what} are "
                                       "unreadable; check the folder")
                continue
            crop = random_resized_crop(image, self.crop_size, rng, self.crop_scale)
            if self.flip and rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            return torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1)
        raise DatasetError(f"{self.root}: could not read any of 100 random {self.what}")

    def batch(self, size: int, rng: random.Random) -> Tensor:
        """``(size, 3, S, S)`` random crops."""
        return torch.stack([self.sample(rng) for _ in range(size)])

    def fixed(self, count: int, size: int) -> Tensor:
        """``count`` evenly spaced images, centre-cropped to ``size`` (evaluation, samples)."""
        picks = np.linspace(0, len(self.files) - 1, num=min(count, len(self.files))).round().astype(int)
        out = []
        for index in picks:
            image = self.read(int(index))
            if image is None:
                continue
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            crop = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
            out.append(torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1))
        if not out:
            raise DatasetError(f"{self.root}: none of the evaluation {self.what} could be read")
        return torch.stack(out)
