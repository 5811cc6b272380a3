"""Image packs: training folders as JPEG bytes in safetensors files, decoded once onto the GPU.

A GPU lent for minutes cannot wait for a folder of JPEGs to be read, decoded and cropped by a
few CPU workers per step. ``atelier recipe pack`` therefore stores each training folder once,
each image resized so its short side is about 9/8 of the crop size and centre-cropped to a
square (random crops and flips still augment), as JPEG bytes in one or more *pack files*:
safetensors files holding a ``uint8`` tensor ``data`` (the JPEG files back to back), ``int64``
``offsets`` (image ``i`` is ``data[offsets[i]:offsets[i + 1]]``) and ``int32`` ``sides``, with
the names and the folder in the header. No pickle anywhere.

On the GPU machine a :class:`PackLibrary` decodes the packs (Pillow in a thread pool) into one
``uint8`` tensor per folder on the device, shared by every network that trains on that folder,
and :class:`TensorPack` is the trainer's image source
(:class:`~atelier.train.data.ImageSource`): :func:`resized_crops` cuts a whole batch of random
resized crops and flips there with one ``affine_grid`` + ``grid_sample``.

The crop parameters come from the run's :class:`random.Random` (the same draws as
:class:`~atelier.train.data.ImageFolder`: index, box, flip), so the state in a checkpoint still
reproduces the batches. The bilinear sampling has no antialiasing: crops shrink by at most
``side / crop_size`` (9/8 for a pack made for that crop size); pack at the crop size you train at.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..io.atomic import atomic_path
from .data import IMAGE_SUFFIXES, DatasetError, collection_files, crop_box, folder_images

__all__ = [
    "PACK_FORMAT",
    "PackLibrary",
    "PackedImages",
    "TensorPack",
    "decode_jpeg",
    "list_images",
    "pack_side",
    "read_pack",
    "resized_crops",
    "square_jpeg",
    "write_pack",
]

PACK_FORMAT = "atelier-jpeg-pack/1"


def pack_side(crop_size: int) -> int:
    """Side of the packed squares for training crops of ``crop_size`` (9/8 of it: 288 for 256)."""
    return round(crop_size * 9 / 8)


def list_images(root: str | Path) -> list[Path]:
    """The images below ``root`` (or named by a collection list).

    In the order :class:`~atelier.train.data.ImageFolder` lists them.
    """
    root = Path(root)
    if root.is_file():
        return collection_files(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder of images")
    return folder_images(root)


def square_jpeg(path: str | Path, side: int, quality: int = 90) -> tuple[bytes, int] | None:
    """The image at ``path`` as a square JPEG: returns ``(bytes, its side)``, or None when unreadable.

    The image is centre-cropped to a square and shrunk to at most ``side`` px (never enlarged).
    """
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (side, side))  # JPEG: decode at a reduced scale still >= side
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None
    width, height = image.size
    short = min(width, height)
    out = min(side, short)
    left, top = (width - short) // 2, (height - short) // 2
    square = image.resize((out, out), Image.Resampling.LANCZOS, box=(left, top, left + short, top + short),
                          reducing_gap=2.0)
    buffer = io.BytesIO()
    square.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), out


def decode_jpeg(data: bytes) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB array of JPEG (or any Pillow-readable) bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@dataclass
class PackedImages:
    """The contents of one pack file (or of several shards of one folder, concatenated).

    Attributes:
        folder: the folder as the training configs name it (the key the run looks it up by).
        blobs: JPEG bytes of each image.
        sides: side of each (square) image in px.
        names: each image's path relative to the folder.
        source_indices: each image's index in the folder's sorted listing (for
            :meth:`TensorPack.fixed`, which picks what :meth:`ImageFolder.fixed` would).
        source_count: images listed in the folder (readable or not).
        skipped: names of the unreadable files found while packing.
    """

    folder: str
    blobs: list[bytes] = field(default_factory=list)
    sides: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    source_indices: list[int] = field(default_factory=list)
    source_count: int = 0
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        """The number of images in the pack."""
        return len(self.blobs)

    @property
    def nbytes(self) -> int:
        """Bytes of JPEG data."""
        return sum(len(b) for b in self.blobs)

    def extend(self, other: PackedImages) -> None:
        """Append the images of another shard of the same folder."""
        if other.folder != self.folder:
            raise ValueError(f"shards of different folders: {self.folder!r} and {other.folder!r}")
        self.blobs += other.blobs
        self.sides += other.sides
        self.names += other.names
        self.source_indices += other.source_indices
        self.source_count = max(self.source_count, other.source_count)
        self.skipped = sorted(set(self.skipped) | set(other.skipped))

    def split(self, max_bytes: int) -> list[PackedImages]:
        """Consecutive shards of at most ``max_bytes`` of JPEG data each (at least one image each)."""
        shards: list[PackedImages] = []
        current = PackedImages(self.folder, source_count=self.source_count, skipped=list(self.skipped))
        for i, blob in enumerate(self.blobs):
            if current.blobs and current.nbytes + len(blob) > max_bytes:
                shards.append(current)
                current = PackedImages(self.folder, source_count=self.source_count, skipped=list(self.skipped))
            current.blobs.append(blob)
            current.sides.append(self.sides[i])
            current.names.append(self.names[i])
            current.source_indices.append(self.source_indices[i])
        shards.append(current)
        return shards


def pack_folder(folder: str, root: str | Path, *, side: int, quality: int = 90,
                indices: Iterable[int] | None = None, max_images: int = 0, workers: int = 0) -> PackedImages:
    """Pack the images of ``root`` (all, the listing ``indices``, or ``max_images`` evenly spaced).

    Args:
        folder: the name the pack is looked up by (the folder string of the configs).
        root: where the images are now.
        side: the longest square side kept (see :func:`square_jpeg`).
        quality: JPEG quality.
        indices: positions in the sorted listing to pack (evaluation picks).
        max_images: at most this many, evenly spaced over the listing (0: all).
        workers: threads (0: the CPU count).
    """
    files = list_images(root)
    if not files:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) to pack for {folder}")
    if indices is not None:
        picks = sorted({i for i in indices if 0 <= i < len(files)})
    elif max_images and max_images < len(files):
        picks = sorted(set(np.linspace(0, len(files) - 1, num=max_images).round().astype(int).tolist()))
    else:
        picks = list(range(len(files)))
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        encoded = list(pool.map(lambda i: square_jpeg(files[i], side, quality), picks))
    packed = PackedImages(folder, source_count=len(files))
    root = Path(root)
    for index, result in zip(picks, encoded):
        name = files[index].relative_to(root).as_posix()
        if result is None:
            packed.skipped.append(name)
            continue
        packed.blobs.append(result[0])
        packed.sides.append(result[1])
        packed.names.append(name)
        packed.source_indices.append(index)
    if not packed.blobs:
        raise DatasetError(f"{root}: none of the {len(picks)} images could be read")
    return packed


def write_pack(packed: PackedImages, path: str | Path, *, quality: int, side: int) -> Path:
    """Write ``packed`` as one safetensors pack file (atomically); returns the path."""
    path = Path(path)
    lengths = np.array([len(b) for b in packed.blobs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.frombuffer(b"".join(packed.blobs), dtype=np.uint8).copy() if packed.blobs else np.zeros(0, np.uint8)
    metadata = {
        "format": PACK_FORMAT, "folder": packed.folder, "names": json.dumps(packed.names),
        "source_indices": json.dumps(packed.source_indices), "source_count": str(packed.source_count),
        "skipped": json.dumps(packed.skipped), "quality": str(quality), "side": str(side),
    }
    tensors = {"data": torch.from_numpy(data), "offsets": torch.from_numpy(offsets),
               "sides": torch.tensor(packed.sides, dtype=torch.int32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        save_file(tensors, str(temp), metadata=metadata)
    return path


def read_pack(path: str | Path) -> PackedImages:
    """Read a pack file written by :func:`write_pack`."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            meta = dict(file.metadata() or {})
            data = file.get_tensor("data").numpy().tobytes()
            offsets = file.get_tensor("offsets").tolist()
            sides = file.get_tensor("sides").tolist()
    except Exception as error:
        raise DatasetError(f"{path}: not a readable image pack ({error})") from None
    if meta.get("format") != PACK_FORMAT:
        raise DatasetError(f"{path}: not an image pack (format {meta.get('format')!r}, expected {PACK_FORMAT})")
    blobs = [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return PackedImages(meta["folder"], blobs, [int(s) for s in sides], json.loads(meta["names"]),
                        json.loads(meta["source_indices"]), int(meta["source_count"]), json.loads(meta["skipped"]))


def resized_crops(images: Tensor, indices: Tensor, boxes: Tensor, flips: Tensor, size: int) -> Tensor:
    """Random-resized-crop + flip augmentation of a batch, on the images' device.

    Args:
        images: ``(N, S, S, 3)`` uint8 (or float in [0, 1]) images, channels last as decoded.
        indices: ``(B,)`` int64, which image each crop is cut from.
        boxes: ``(B, 4)`` float ``(left, top, width, height)`` of each crop in pixels of ``images``.
        flips: ``(B,)`` bool, mirror the crop left-right.
        size: side of the output crops.

    Returns:
        ``(B, 3, size, size)`` float32 in [0, 1]: each box resampled bilinearly (pixel edges on
        pixel edges, as PIL's ``resize(box=...)``), mirrored where ``flips``.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, S, S, 3), got {tuple(images.shape)}")
    source = images.index_select(0, indices).permute(0, 3, 1, 2).float()
    if images.dtype == torch.uint8:
        source = source / 255.0
    height, width = images.shape[1:3]
    boxes = boxes.to(source.device, torch.float32)
    left, top, w, h = boxes.unbind(1)
    sign = 1.0 - 2.0 * flips.to(source.device, torch.float32)
    theta = torch.zeros(len(indices), 2, 3, device=source.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [len(indices), 3, size, size], align_corners=False)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)


class _Decoded:
    """One folder's images decoded onto a device: ``(N, S, S, 3)`` uint8, edge-padded to the largest side."""

    def __init__(self, packed: PackedImages, device: torch.device, workers: int = 0) -> None:
        self.packed = packed
        self.sides = list(packed.sides)
        side = max(self.sides)
        with ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1)) as pool:
            arrays = list(pool.map(decode_jpeg, packed.blobs))
        stack = np.empty((len(arrays), side, side, 3), dtype=np.uint8)
        for i, array in enumerate(arrays):
            h, w = array.shape[:2]
            if (h, w) != (self.sides[i], self.sides[i]):
                raise DatasetError(f"pack of {packed.folder}: image {packed.names[i]} is {w}x{h}, "
                                   f"the pack says {self.sides[i]}")
            # Edge padding: bilinear taps just outside a smaller image read its border, not black.
            stack[i] = np.pad(array, ((0, side - h), (0, side - w), (0, 0)), mode="edge") if h < side else array
        self.images = torch.from_numpy(stack).to(device)


class TensorPack:
    """A pack decoded onto the device, sampled like :class:`~atelier.train.data.ImageFolder`.

    Args:
        decoded: the folder's decoded images (shared between networks by :class:`PackLibrary`).
        crop_size: side of the training crops.
        crop_scale: range of the crop's share of the image area.
        flip: mirror half the crops.
        what: what the images are, for messages.
    """

    def __init__(self, decoded: _Decoded, *, crop_size: int, crop_scale: tuple[float, float] = (0.25, 1.0),
                 flip: bool = True, what: str = "images") -> None:
        self.decoded = decoded
        self.crop_size = crop_size
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.flip = flip
        self.what = what
        self.root = Path(decoded.packed.folder)
        self.skipped: set[Path] = {self.root / name for name in decoded.packed.skipped}

    def __len__(self) -> int:
        """The number of decoded images."""
        return len(self.decoded.sides)

    @property
    def device(self) -> torch.device:
        """Where the images are."""
        return self.decoded.images.device

    def batch(self, size: int, rng: random.Random) -> Tensor:
        """``(size, 3, S, S)`` random crops on the pack's device (same draws as ``ImageFolder``)."""
        indices, boxes, flips = [], [], []
        for _ in range(size):
            index = rng.randrange(len(self))
            side = self.decoded.sides[index]
            indices.append(index)
            boxes.append(crop_box(side, side, rng, self.crop_scale))
            flips.append(self.flip and rng.random() < 0.5)
        device = self.device
        return resized_crops(self.decoded.images, torch.tensor(indices, device=device),
                             torch.tensor(boxes, dtype=torch.float32, device=device),
                             torch.tensor(flips, device=device), self.crop_size)

    def fixed(self, count: int, size: int) -> Tensor:
        """``count`` evenly spaced images resized to ``size`` (on the CPU).

        They are the images :meth:`ImageFolder.fixed` picks from the original folder when the pack
        holds them.
        """
        packed = self.decoded.packed
        count = min(count, packed.source_count or len(self))
        wanted = np.linspace(0, max(packed.source_count, 1) - 1, num=count).round().astype(int).tolist()
        position = {source: i for i, source in enumerate(packed.source_indices)}
        picks = [position[i] for i in wanted if i in position]
        if not picks or len(picks) < len(wanted) - len(packed.skipped):  # a subset: evenly spaced over it
            picks = np.linspace(0, len(self) - 1, num=min(count, len(self))).round().astype(int).tolist()
        out = []
        for index in picks:
            side = self.decoded.sides[index]
            image = self.decoded.images[index, :side, :side].permute(2, 0, 1)[None].float() / 255.0
            out.append(F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                                     antialias=True).clamp(0, 1).cpu())
        return torch.cat(out)


class PackLibrary:
    """The packs of a kit, decoded on first use onto ``device`` and opened as :class:`TensorPack` sources.

    Each folder is decoded once; an instance is a :class:`~atelier.train.data.SourceFactory`.

    Args:
        files: ``{folder: [pack files (shards)]}``.
        device: where the decoded images live.
        log: called with one line per folder decoded.
    """

    def __init__(self, files: dict[str, Sequence[str | Path]], device: torch.device | str,
                 log: Callable[[str], None] | None = None) -> None:
        self.files = {os.path.normpath(k): list(v) for k, v in files.items()}
        self.device = torch.device(device)
        self.log = log or (lambda line: None)
        self._decoded: dict[str, _Decoded] = {}

    def decoded(self, folder: str) -> _Decoded:
        """The decoded images of ``folder`` (decoding them on first use)."""
        key = os.path.normpath(str(folder))
        if key not in self._decoded:
            if key not in self.files:
                raise DatasetError(f"{folder}: not in the GPU kit's image packs (it has: "
                                   f"{', '.join(sorted(self.files))}); re-run `atelier recipe pack` after "
                                   "changing the configs")
            packed: PackedImages | None = None
            for path in self.files[key]:
                shard = read_pack(path)
                if packed is None:
                    packed = shard
                else:
                    packed.extend(shard)
            assert packed is not None
            self._decoded[key] = _Decoded(packed, self.device)
            megabytes = self._decoded[key].images.numel() / 2**20
            self.log(f"decoded {len(packed)} images of {folder} onto {self.device} ({megabytes:.0f} MiB uint8)")
        return self._decoded[key]

    def __call__(self, root: str | Path, *, crop_size: int, crop_scale: tuple[float, float] = (0.25, 1.0),
                 flip: bool = True, what: str = "images") -> TensorPack:
        """A :class:`TensorPack` source of folder ``root``'s decoded packs, with the given crops and flips."""
        return TensorPack(self.decoded(str(root)), crop_size=crop_size, crop_scale=crop_scale, flip=flip, what=what)
