"""Colour-coded segmentation maps: semantic regions matched between content and style.

Luan, Paris, Shechtman, Bala 2017, "Deep Photo Style Transfer" (CVPR), sec. 3.2, eq. 3: the
style loss is computed per semantic label, each label's Gram matrix restricted to its region
in the content and in the style. The regions are given as two images painted with a fixed
palette of nine colours; the paper's code (``deep_photo.lua``/``neuralstyle_seg.lua``,
``ExtractMask``) recognises ``blue, green, black, white, red, yellow, grey, lightblue,
purple``, each channel within 0.1 of 0 or 1 (0.5 for grey), and ignores other pixels.

Here each pixel goes to the *nearest* palette colour instead, so noisy and antialiased pixels
(the maps of the paper's data set hold thousands of distinct colours each) still belong to a
region; :func:`clean_labels` then hands the thin lines that snapped borders form (a
black|white border is grey at its midpoint) to the regions on either side, and labels
covering less than ``min_fraction`` of an image are not regions.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ImageError, MaskError, OptionError
from ..ops.masks import resize_mask
from .images import ImageInput, load_image

__all__ = ["PALETTE", "clean_labels", "label_masks", "load_segmentation", "snap_to_palette"]

#: Name -> RGB of the segmentation colours, in the order of Luan et al.'s ``color_codes``.
#: Label ``i`` of :func:`snap_to_palette` is ``list(PALETTE)[i]``.
PALETTE: dict[str, tuple[int, int, int]] = {
    "blue": (0, 0, 255),
    "green": (0, 255, 0),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "yellow": (255, 255, 0),
    "grey": (128, 128, 128),  # 0.5 in the paper's code
    "lightblue": (0, 255, 255),
    "purple": (255, 0, 255),
}
_NAMES = list(PALETTE)
_COLORS = np.array(list(PALETTE.values()), dtype=np.int32)  # (K, 3)

#: Labels below this share of an image's pixels are edge slivers, not regions.
DEFAULT_MIN_FRACTION = 0.002


def snap_to_palette(rgb: np.ndarray) -> np.ndarray:
    """Label every pixel with its nearest :data:`PALETTE` colour (Euclidean distance in RGB).

    Tolerates noise up to half the distance between palette colours (about 110 levels
    between grey and its neighbours, 127 between the others), so JPEG artefacts and
    antialiasing do not matter; exact ties go to the earlier palette entry.

    Args:
        rgb: ``(H, W, 3)`` uint8.

    Returns:
        ``(H, W)`` int64 labels, indices into :data:`PALETTE`.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise OptionError(f"segmentation arrays must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    pixels = rgb.astype(np.int32)
    distances = np.stack([((pixels - color) ** 2).sum(axis=-1) for color in _COLORS])  # (K, H, W)
    return distances.argmin(axis=0).astype(np.int64)


def clean_labels(labels: Tensor, radius: int = 1) -> Tensor:
    """Give the pixels of structures thinner than ``2 * radius + 1`` to the surrounding region.

    Snapping turns the antialiased or JPEG-blurred border between two regions into a thin
    line of whatever palette colour lies between them: black|white and blue|yellow borders
    become grey (``(128, 128, 128)`` is their midpoint), up to 1% of a map's pixels in the
    paper's data. A pixel is kept if its label survives a morphological opening with a
    ``(2r+1) x (2r+1)`` square; the others take the most frequent kept label within the
    next larger window (and keep their own label where there is none).

    Args:
        labels: ``(H, W)`` int64 labels.
        radius: half the width of the thinnest kept structure.

    Returns:
        ``(H, W)`` int64 labels.
    """
    if radius < 1 or labels.numel() == 0:
        return labels
    side = 2 * radius + 1
    one_hot = F.one_hot(labels, len(_NAMES)).permute(2, 0, 1)[None].float()  # (1, K, H, W)
    # Opening = dilation of the erosion; erosion is min-pooling, i.e. -maxpool(-x).
    eroded = -F.max_pool2d(-one_hot, side, stride=1, padding=radius)
    opened = F.max_pool2d(eroded, side, stride=1, padding=radius)
    kept = (opened * one_hot).sum(1, keepdim=True)  # 1 where the pixel's own label survives
    votes = F.avg_pool2d(one_hot * kept, 2 * side + 1, stride=1, padding=side, count_include_pad=False)
    best = votes.argmax(1)[0]
    reassign = (kept[0, 0] == 0) & (votes.amax(1)[0] > 0)
    return torch.where(reassign, best, labels)


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    # Same aspect ratio up to the rounding of one pixel on either side (as in load_masks).
    (ah, aw), (bh, bw) = a, b
    return abs(ah * bw - aw * bh) <= max(ah, aw, bh, bw)


def load_segmentation(
    source: ImageInput, size: tuple[int, int] | None = None, *, name: str | None = None
) -> Tensor:
    """Read a colour-coded segmentation map as palette labels (see :func:`snap_to_palette`).

    Colours are snapped at the file's resolution, then the labels are resized with nearest
    neighbours (labels must not be interpolated); :func:`label_masks` makes soft masks.

    Args:
        source: a path, PIL image or ``(H, W, 3)`` uint8 array.
        size: ``(h, w)`` of the image the map belongs to; the map is resized to it and must
            have its aspect ratio (it may be at another resolution).
        name: how to call the map in errors (default: the path).

    Returns:
        ``(h, w)`` int64 labels, indices into :data:`PALETTE`.

    Raises:
        MaskError: unreadable file (message names the path), or aspect ratio different from
            ``size`` (message names both sizes).
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "segmentation")
    if isinstance(source, Tensor):
        raise MaskError(f"{label}: give segmentation maps as a path, PIL image or uint8 array, not a tensor")
    try:
        rgb = load_image(source, name=label)
    except ImageError as error:
        raise MaskError(f"segmentation {error}") from None
    array = (rgb[0].permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()
    labels = clean_labels(torch.from_numpy(snap_to_palette(array)))
    if size is None:
        return labels
    height, width = size
    mh, mw = labels.shape
    if not _same_aspect((mh, mw), (height, width)):
        raise MaskError(
            f"{label}: segmentation is {mw}x{mh} px but its image is {width}x{height} px; "
            "a segmentation map must have its image's size (or at least its aspect ratio)"
        )
    if (mh, mw) != (height, width):
        labels = F.interpolate(labels[None, None].float(), size=(height, width), mode="nearest-exact")
        labels = labels[0, 0].long()
    return labels


def _present(labels: Tensor, min_fraction: float) -> set[int]:
    counts = torch.bincount(labels.flatten(), minlength=len(_NAMES))
    return {i for i, n in enumerate(counts.tolist()) if n > 0 and n >= min_fraction * labels.numel()}


def _one_hot(labels: Tensor, indices: list[int], size: tuple[int, int] | None) -> Tensor:
    masks = torch.stack([(labels == i).float() for i in indices])[None]  # (1, K, h, w)
    return masks if size is None else resize_mask(masks, size)


def _as_labels(labels: Tensor | np.ndarray, name: str) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 2 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise OptionError(f"{name} must be (H, W) integer labels, got {tuple(labels.shape)} {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(_NAMES)):
        raise OptionError(f"{name} must hold palette indices 0-{len(_NAMES) - 1}")
    return labels.long()


def label_masks(
    content_labels: Tensor | np.ndarray,
    style_labels: Tensor | np.ndarray,
    *,
    content_size: tuple[int, int] | None = None,
    style_size: tuple[int, int] | None = None,
    min_fraction: float = DEFAULT_MIN_FRACTION,
) -> tuple[Tensor, Tensor, list[str]]:
    """One mask per semantic label of the content, and the matching style masks.

    The regions of Luan et al. 2017, eq. 3. Masks are one-hot at the labels' resolution and
    area-averaged when resized to a smaller ``content_size``/``style_size`` (a feature map's
    size), which makes them soft at region borders (:func:`atelier.ops.resize_mask`).

    A label of the content that the style lacks is transferred from the whole style image
    (all-ones style mask) with a warning naming the colour, instead of being dropped.
    Labels below ``min_fraction`` of an image's pixels count as absent from it.

    Args:
        content_labels: ``(H, W)`` labels from :func:`load_segmentation`.
        style_labels: ``(H', W')`` labels of the style's map.
        content_size: ``(h, w)`` of the content masks (default: ``(H, W)``).
        style_size: ``(h', w')`` of the style masks (default: ``(H', W')``).
        min_fraction: share of pixels below which a label is ignored, in [0, 1).

    Returns:
        ``(content_masks (1, K, h, w), style_masks (1, K, h', w'), names)``, ``K`` the
        number of labels present in the content, in palette order, ``names`` their colours.

    Raises:
        MaskError: no label covers ``min_fraction`` of the content.
    """
    content = _as_labels(content_labels, "content_labels")
    style = _as_labels(style_labels, "style_labels")
    if not 0 <= min_fraction < 1:
        raise OptionError(f"min_fraction must be in [0, 1), got {min_fraction}")
    in_content = sorted(_present(content, min_fraction))
    if not in_content:
        raise MaskError("the content segmentation has no region; paint its regions in the palette's colours")
    in_style = _present(style, min_fraction)
    names = [_NAMES[i] for i in in_content]
    missing = [_NAMES[i] for i in in_content if i not in in_style]
    if missing:
        warnings.warn(
            f"segmentation colour(s) {', '.join(missing)} of the content are missing from the style; "
            "those regions take their style from the whole style image",
            stacklevel=2,
        )
    content_masks = _one_hot(content, in_content, content_size)
    style_masks = _one_hot(style, in_content, style_size)
    for k, index in enumerate(in_content):
        if index not in in_style:
            style_masks[:, k] = 1.0
    return content_masks, style_masks, names
