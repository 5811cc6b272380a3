"""The public entry points: ``atelier.stylize`` and ``atelier.translate``.

The shared pipeline around every method: load and validate inputs, normalise blend
weights, load masks, colour preservation before/after, then call the method.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .devices import check_seed, resolve_device
from .errors import OptionError
from .io.atomic import check_writable_folder
from .io.images import (
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    ImageInput,
    check_bit_depth,
    check_max_pixels,
    check_output_path,
    load_image,
    load_image_info,
    resize_longest,
    save_image,
    tensor_to_pil,
)
from .io.masks import MaskInput, load_masks
from .io.video import DEFAULT_CRF
from .methods import Method, StylizeResult, available_methods, get_method
from .ops.color import luminance, match_color, transfer_luminance
from .ops.layout import spatial_size
from .ops.smoothing import photo_smooth as smooth_with_guide
from .pipelines.temporal import FrameProcess, TemporalGuide, TemporalOptions, blend_fresh
from .pipelines.translation import DIRECTIONS, Translator

__all__ = ["PRESERVE_COLOR", "StylizationInterrupted", "TemporalOptions", "build_method", "load_styles",
           "map_video", "normalize_weights", "resolve_device", "style_count", "stylize", "stylize_tensor",
           "stylize_video", "translate", "translate_video"]

PRESERVE_COLOR = ("none", "luminance", "histogram")


class StylizationInterrupted(KeyboardInterrupt):
    """Raised when Ctrl-C stops a run; ``image`` holds the best result so far (PIL).

    ``result`` holds its full-precision tensor and ``info`` what a saved copy inherits from the content
    (write it with ``save_image(stop.result.image, path, info=stop.info)``). Nothing is written to
    ``output`` on interruption.
    """

    def __init__(self, image: Image.Image, result: StylizeResult, info: ImageInfo | None = None):
        super().__init__("interrupted")
        self.image = image
        self.result = result
        self.info = info or ImageInfo()


def normalize_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Validate blend weights (one per style, finite, >= 0, not all 0) and scale to sum 1."""
    if weights is None:
        return [1.0 / count] * count
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise OptionError(f"style weights must be a list of numbers, one per style, got {weights!r}")
    weights = list(weights)
    if len(weights) != count:
        raise OptionError(f"got {len(weights)} style weight(s) for {count} style(s); give one per style")
    for weight in weights:
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
            raise OptionError(f"style weights must be finite numbers, got {weight!r}")
        if weight < 0:
            raise OptionError(f"style weights must be >= 0, got {weight}")
    largest = max(weights)
    if largest <= 0:
        raise OptionError("style weights sum to 0; give at least one positive weight")
    scaled = [w / largest for w in weights]  # in [0, 1] first: huge weights must not overflow the sum
    total = sum(scaled)
    return [w / total for w in scaled]


def _luminance_rgb(image: Tensor, like: Tensor | None = None) -> Tensor:
    """Luminance as a gray RGB image.

    With ``like``, its mean/std are matched to ``like``'s luminance (Gatys et al. 2017, sec. 5.1, so the
    style's luminance range fits the content's).
    """
    y = luminance(image)
    if like is not None:
        ref = luminance(like)
        y = (y - y.mean()) / y.std().clamp_min(1e-6) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def smoothing_radius(image: Tensor) -> int:
    """Guided-filter radius for ``--photo-smooth``: ~1/24 of the longest side (21 px at 512)."""
    return max(2, max(image.shape[-2:]) // 24)


def _check_output(output: str | os.PathLike | None, bit_depth: int | None, overwrite: bool) -> Path | None:
    """Where :func:`stylize` and :func:`translate` write (checked before any work), or None."""
    if output is None:
        if bit_depth is not None:
            raise OptionError("bit_depth applies to the written file; pass output= (a .png or .tif path) with it")
        return None
    if not isinstance(output, (str, os.PathLike)):
        raise OptionError(f"output must be the path of the image to write, got {output!r}")
    check_bit_depth(bit_depth)
    return check_output_path(output, overwrite=overwrite, bit_depth=bit_depth)


def _check_size(size: int | None, max_pixels: int | None = None) -> None:
    """Check a requested longest side: None (keep) or a positive whole number of pixels.

    Its square must stay within ``max_pixels`` (when given).
    """
    if size is None:
        return
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise OptionError(f"size must be a positive whole number of pixels, got {size!r}")
    if max_pixels is not None and size * size > max_pixels:
        raise OptionError(f"size {size} px could make an image above the limit of {max_pixels:,} pixels; "
                          "raise max_pixels (--max-pixels) if you have the memory")


def _apply_size(image: Tensor, size: int | None, max_pixels: int) -> Tensor:
    """``image`` with its longest side at ``size`` (checked by :func:`_check_size`; None keeps it)."""
    _check_size(size, max_pixels)
    return image if size is None else resize_longest(image, size)


def build_method(method: str | Method, options: dict[str, Any] | None = None,
                 method_kwargs: dict[str, Any] | None = None) -> Method:
    """A method object from its name and options (or ``method`` itself when it is one already).

    Build it once to reuse its loaded networks over many images.
    """
    if isinstance(method, Method):
        if options:
            raise OptionError(f"options {', '.join(options)} given with an already built method; "
                              "pass them when building it")
        return method
    return get_method(method)(**(options or {}), **(method_kwargs or {}))


def style_count(method: Method, styles: Sequence[Any]) -> int:
    """How many styles the blend weights and masks refer to.

    That is the style images, or the styles of a method's trained model (``uses_style_images = False``).
    Checks that the method gets style images exactly when it needs them.
    """
    if method.uses_style_images:
        if not styles and method.styles_optional:
            return method.style_count()
        if not styles:
            raise OptionError(f"method {method.name!r} needs at least one style image (--style)")
        return len(styles)
    if styles:
        raise OptionError(f"method {method.name!r} takes its styles from its trained model, not from style "
                          "images; drop --style (blend the model's styles with --style-weights)")
    return method.style_count()


def load_styles(method: Method, style: ImageInput | Sequence[ImageInput] | None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[list[Tensor], int]:
    """The style images as tensors and the number of styles the weights and masks refer to.

    See :func:`style_count`. ``style`` is one image, a list, or None for trained-model methods.
    """
    style_list: list[ImageInput] = (
        [] if style is None else list(style) if isinstance(style, (list, tuple)) else [style])  # type: ignore[list-item]
    count = style_count(method, style_list)
    return [load_image(s, max_pixels=max_pixels, name=f"style {i + 1}") for i, s in enumerate(style_list)], count


def stylize_tensor(
    content: Tensor,
    styles: Sequence[Tensor],
    method: str | Method = "gatys",
    *,
    style_weights: Sequence[float] | None = None,
    masks: Tensor | None = None,
    preserve_color: str = "none",
    photo_smooth: bool = False,
    device: str = "cpu",
    seed: int | None = None,
    progress: bool = True,
    method_kwargs: dict[str, Any] | None = None,
    temporal: TemporalGuide | None = None,
    **options: Any,
) -> StylizeResult:
    """Tensor-level pipeline: ``content`` ``(1, 3, H, W)`` already at the output size.

    ``temporal`` (a video frame's :class:`~atelier.pipelines.temporal.TemporalGuide`) goes to a
    method that keeps frames consistent itself (``uses_temporal_guide``); for the others the final
    output is blended with the warped previous output.
    """
    if preserve_color not in PRESERVE_COLOR:
        raise OptionError(f"preserve_color must be one of {', '.join(PRESERVE_COLOR)}, not {preserve_color!r}")
    check_seed(seed)
    method_obj = build_method(method, options, method_kwargs)
    weights = normalize_weights(style_weights, style_count(method_obj, styles))
    if masks is not None and not method_obj.supports_masks:
        raise OptionError(f"method {method_obj.name!r} does not support masks; drop --mask, or use a method that does "
                          f"({', '.join(n for n, c in available_methods().items() if c.supports_masks)})")
    if preserve_color == "histogram" and not styles:
        raise OptionError("preserve_color='histogram' matches style images' colours, and this method has none; "
                          "use 'luminance'")
    if seed is not None:
        torch.manual_seed(seed)
    source = content
    if preserve_color == "luminance":
        source = _luminance_rgb(content)
        styles = [_luminance_rgb(s, content) for s in styles]
    elif preserve_color == "histogram":
        styles = [match_color(s, content) for s in styles]
    kwargs: dict[str, Any] = {"seed": seed} if seed is not None else {}
    if temporal is not None and method_obj.uses_temporal_guide:
        # The optimisation works on the luminance image when preserving colour: so must its target.
        kwargs["temporal"] = temporal.map(_luminance_rgb) if preserve_color == "luminance" else temporal
    result = method_obj.stylize(source, list(styles), style_weights=weights, masks=masks,
                                device=device, progress=progress, **kwargs)
    image = result.image.detach().float().cpu()
    if preserve_color == "luminance":
        image = transfer_luminance(image, content.cpu())
    if photo_smooth:
        image = smooth_with_guide(image, content.cpu(), radius=smoothing_radius(image))
    if temporal is not None and not method_obj.uses_temporal_guide:
        image = temporal.blend(image)
    result.image = image.clamp(0, 1)
    return result


def stylize(
    content: ImageInput,
    style: ImageInput | Sequence[ImageInput] | None = None,
    method: str | Method = "gatys",
    *,
    style_weights: Sequence[float] | None = None,
    masks: MaskInput | Sequence[MaskInput] | None = None,
    size: int | None = 512,
    preserve_color: str = "none",
    photo_smooth: bool = False,
    device: str = "cpu",
    seed: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    output: str | os.PathLike | None = None,
    bit_depth: int | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Image.Image:
    """Stylize ``content`` with one or several styles; returns an RGB PIL image (8-bit).

    With ``output`` it also writes the result there at full precision.

    Args:
        content: path, PIL image, ``(H, W, 3)`` uint8 (or uint16) array or ``(1, 3, H, W)`` tensor
            in [0, 1]. 16-bit files keep their precision; an embedded ICC profile is converted to sRGB.
        style: one such image, or a list of them (blended by ``style_weights``); None for
            methods whose trained model holds the styles (``method="johnson", model="wave"``).
        method: a registered method name (``atelier.methods.available_methods()``), or a
            method object built once (:func:`build_method`) to reuse over many images.
        style_weights: one non-negative weight per style (per style of the model for methods
            without style images); normalised to sum 1.
        masks: one mask per style (white = that style applies there); same aspect as content. A
            single path, image or array is the mask of a single style.
        size: longest side of the output in px (None keeps the content's size).
        preserve_color: ``"none"``, ``"luminance"`` or ``"histogram"`` (Gatys et al. 2017, sec. 5).
        photo_smooth: post-process with an edge-aware guided filter of the content photo that
            removes painterly residue (see :func:`atelier.ops.smoothing.photo_smooth`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        seed: random seed for reproducible runs.
        max_pixels: inputs above this many pixels raise :class:`~atelier.errors.ImageTooLargeError`.
        progress: show a progress line on stderr.
        output: write the result to this image file (atomically, checked before any work), with the
            sRGB ICC profile and the content's EXIF (minus orientation).
        bit_depth: 8 or 16 bits per channel of ``output`` (16: .png/.tif only); None: 16 when the
            content was 16-bit, else 8.
        overwrite: replace an existing ``output``.
        **options: the method's options (see ``atelier methods``), e.g. ``iterations=200``.

    Raises:
        atelier.errors.AtelierError: a subclass naming what is wrong with the input.
        StylizationInterrupted: on Ctrl-C; its ``image`` is the best result so far.
    """
    output_path = _check_output(output, bit_depth, overwrite)
    device = resolve_device(device)
    check_seed(seed)
    method_obj = build_method(method, options)
    content_tensor, content_info = load_image_info(content, max_pixels=max_pixels, name="content")
    styles, count = load_styles(method_obj, style, max_pixels)
    content_tensor = _apply_size(content_tensor, size, max_pixels)
    mask_tensor = None
    if masks is not None:
        mask_list = [masks] if isinstance(masks, (str, os.PathLike, Image.Image, np.ndarray, Tensor)) else masks
        if not isinstance(mask_list, Sequence):
            raise OptionError(f"masks must be a list with one mask per style, got {type(masks).__name__}")
        mask_tensor = load_masks(list(mask_list), count=count, size=spatial_size(content_tensor))
    result = stylize_tensor(
        content_tensor, styles, method_obj, style_weights=style_weights, masks=mask_tensor,
        preserve_color=preserve_color, photo_smooth=photo_smooth, device=device, seed=seed, progress=progress,
    )
    image = tensor_to_pil(result.image)
    if result.interrupted:
        raise StylizationInterrupted(image, result, content_info)
    if output_path is not None:
        save_image(result.image, output_path, overwrite=overwrite, bit_depth=bit_depth, info=content_info)
    return image


def stylize_video(
    source: str | Path,
    style: ImageInput | Sequence[ImageInput] | None = None,
    method: str | Method = "johnson",
    *,
    output: str | Path,
    style_weights: Sequence[float] | None = None,
    size: int | None = None,
    preserve_color: str = "none",
    device: str = "cpu",
    seed: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    progress: bool = True,
    temporal: TemporalOptions | bool = True,
    start: float = 0.0,
    duration: float | None = None,
    crf: int = DEFAULT_CRF,
    codec: str | None = None,
    audio: bool = True,
    frame_batch: int | None = None,
    **options: Any,
) -> Path:
    """Stylize a video without flicker and write it with its sound.

    The method is built once. Each frame after the first is tied to the previous output along
    the optical flow (``temporal``, see :mod:`atelier.pipelines.temporal`): feed-forward methods
    blend the warped previous output in where the flow is reliable; gatys and photo optimise
    from it with Ruder et al.'s temporal loss. Scene cuts and the first frame are stylized fresh.

    Args:
        source: the input video (.mp4, .mov, .mkv, .webm, .avi).
        style: style image(s), as for :func:`stylize` (None for trained-model methods).
        method: a method name or a built method object.
        output: the output video; its extension picks the container (H.264 for .mp4/.mov/.mkv).
        style_weights: blend weights, as for :func:`stylize`.
        size: longest side of the output frames in px (None keeps the video's size).
        preserve_color: ``"none"``, ``"luminance"`` or ``"histogram"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        seed: random seed, reset before every frame.
        max_pixels: frames above this many pixels are refused.
        overwrite: replace an existing output.
        progress: show frames done, frames per second and ETA on stderr.
        temporal: True (default options), a :class:`TemporalOptions`, or False for frame by frame.
        start: first second of the source to stylize.
        duration: seconds to stylize (None: to the end).
        crf: constant rate factor (18: visually lossless; lower = better, larger).
        codec: video codec (default: the container's; see :data:`atelier.io.video.CODECS`).
        audio: copy the source's audio (remuxed without re-encoding where the container allows).
        frame_batch: frames per network call for a method that takes several (``Method.frame_bytes``);
            None: as many as the memory budget allows on an accelerator, 1 on the CPU (where a batch
            measured no faster, docs/BENCHMARKS.md "Video").
        **options: the method's options.

    Returns:
        The output path.

    Raises:
        atelier.io.video.VideoInterrupted: Ctrl-C after some frames: ``path`` is a complete,
            shorter video of the frames done (a ``KeyboardInterrupt`` subclass).
        KeyboardInterrupt: Ctrl-C before the first frame: nothing is written.
    """
    _check_video_output(output)  # before the method and its styles are loaded
    device = resolve_device(device)
    check_seed(seed)
    method_obj = build_method(method, options)
    styles, _ = load_styles(method_obj, style, max_pixels)

    if preserve_color == "none" and not method_obj.uses_temporal_guide:
        # Frames do not depend on each other before the blend: a network that takes a batch of
        # frames (Method.frame_bytes not None) gets several per call, and map_video blends in order.
        def stylize_frames(frames: Tensor) -> Tensor:
            if seed is not None:
                torch.manual_seed(seed)
            result = stylize_tensor(frames, styles, method_obj, style_weights=style_weights, device=device,
                                    progress=False)
            if result.interrupted:
                raise KeyboardInterrupt  # as in stylize_frame below
            return result.image

        return map_video(source, stylize_frames, output=output, size=size, max_pixels=max_pixels,
                         overwrite=overwrite, progress=progress, temporal=temporal, start=start, duration=duration,
                         crf=crf, codec=codec, audio=audio, frame_bytes=method_obj.frame_bytes,
                         batch=_frame_batch(frame_batch, device))

    def stylize_frame(frame: Tensor, guide: TemporalGuide | None) -> Tensor:
        if seed is not None:
            torch.manual_seed(seed)  # the same noise every frame: less flicker
        result = stylize_tensor(frame, styles, method_obj, style_weights=style_weights,
                                preserve_color=preserve_color, device=device, progress=False, temporal=guide)
        if result.interrupted:
            # An optimisation catches Ctrl-C to return its best image; for a video the stop is the
            # whole run's: the frames done so far are kept, this unfinished one is not.
            raise KeyboardInterrupt
        return result.image

    return map_video(source, stylize_frame, output=output, size=size, max_pixels=max_pixels, overwrite=overwrite,
                     progress=progress, temporal=temporal, guided=True, start=start, duration=duration, crf=crf,
                     codec=codec, audio=audio)


def _frame_batch(frame_batch: int | None, device: str) -> int | None:
    """Frames per network call: as given, else None (the budget's choice) off the CPU and 1 on it."""
    if frame_batch is not None:
        if isinstance(frame_batch, bool) or not isinstance(frame_batch, int) or frame_batch < 1:
            raise OptionError(f"frame_batch must be a whole number >= 1 (or None), got {frame_batch!r}")
        return frame_batch
    return 1 if torch.device(device).type == "cpu" else None


def _check_video_output(output: Any) -> None:
    """A video output is a path whose folder can be written (checked before any work)."""
    if not isinstance(output, (str, os.PathLike)):
        raise OptionError(f"output must be the path of the video to write, got {output!r}")
    check_writable_folder(Path(output).parent)


def _temporal_options(temporal: TemporalOptions | bool | None) -> TemporalOptions | None:
    if temporal is True:
        return TemporalOptions()
    if temporal is None or temporal is False:
        return None
    if not isinstance(temporal, TemporalOptions):
        raise OptionError(f"temporal must be True, False or a TemporalOptions, got {temporal!r}")
    return temporal if temporal.strength > 0 or temporal.loss_weight > 0 else None


def map_video(
    source: str | Path,
    process: Callable[[Tensor], Tensor] | FrameProcess,
    *,
    output: str | Path,
    size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    progress: bool = True,
    temporal: TemporalOptions | bool | None = None,
    guided: bool = False,
    start: float = 0.0,
    duration: float | None = None,
    crf: int = DEFAULT_CRF,
    codec: str | None = None,
    audio: bool = True,
    frame_bytes: Callable[[int, int], float | None] | None = None,
    batch: int | None = None,
) -> Path:
    """Apply ``process`` to every frame of ``source`` and write ``output``.

    The output keeps the frame rate, rotation, colour range and audio; this is the one video loop of
    :func:`stylize_video` and :func:`translate_video`.

    ``process`` maps a ``(1, 3, H, W)`` frame in [0, 1] to an image tensor; with ``guided`` it also
    takes the frame's :class:`~atelier.pipelines.temporal.TemporalGuide` (None when the frame is
    to be processed fresh) and uses it itself; otherwise, with ``temporal``, its outputs are
    blended with the warped previous output. Frames are decoded ahead in a thread, processed and
    encoded one at a time (memory does not grow with the video's length); frames above
    ``max_pixels`` are refused before any work. Ctrl-C keeps the frames done as a complete, shorter
    video (:class:`~atelier.io.video.VideoInterrupted`), or writes nothing before the first frame.

    ``frame_bytes`` (not ``guided``): the peak bytes of ``process`` on one frame of a given height
    and width; ``process`` then takes several frames at once ``(B, 3, H, W)``, as many as the
    memory budget allows (:func:`~atelier.pipelines.memory.frames_per_batch`), and the blend runs
    on its outputs in order (:func:`~atelier.pipelines.temporal.temporal_map_batched`); ``batch``
    fixes that number instead.
    """
    from .io.video import VideoReader, prefetch, probe_video, write_video
    from .ops.flow import require_opencv
    from .pipelines.temporal import temporal_map, temporal_map_batched
    from .progress import Progress

    _check_video_output(output)
    check_max_pixels(max_pixels)
    options = _temporal_options(temporal)
    if options is not None:
        require_opencv()  # the flow's library, before any frame is done
    info = probe_video(source)
    if info.width * info.height > max_pixels:
        raise OptionError(f"{source}: {info.width}x{info.height} frames are above the limit of {max_pixels:,} pixels; "
                          "pass a larger max_pixels (--max-pixels) if you have the memory")
    _check_size(size)
    for name, value in (("start", start), ("duration", duration)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not math.isfinite(value) or value < 0 or (name == "duration" and value == 0)):
            raise OptionError(f"{name} must be a number of seconds {'> 0' if name == 'duration' else '>= 0'}, "
                              f"got {value!r}")
    if info.duration and start >= info.duration:
        raise OptionError(f"start {start:g} s is past the end of {source} ({info.duration:.2f} s); "
                          "give an earlier --start")
    total = info.frames or max(1, round(info.duration * info.fps))
    left = max(1, round((info.duration - start) * info.fps)) if info.duration else total
    total = min(left, round(duration * info.fps) or 1) if duration is not None else left
    if frame_bytes is None or guided:
        batch = 1
    elif batch is None:
        from .pipelines.memory import frames_per_batch

        scale = 1.0 if size is None else size / max(info.width, info.height)
        batch = frames_per_batch(frame_bytes(max(1, round(info.height * scale)), max(1, round(info.width * scale))))
    bar = Progress(total, label="video ", unit="frame", enabled=progress, per_second=True)
    reader = VideoReader(source, start=start, duration=duration)
    frame_process = process if guided else blend_fresh(process)  # type: ignore[arg-type]

    def frames() -> Iterator[Tensor]:
        for frame in prefetch(reader, depth=max(4, 2 * batch)):
            yield frame if size is None else resize_longest(frame, size)

    def outputs() -> Iterator[Tensor]:
        results = (temporal_map_batched(frames(), process, options, batch) if batch > 1  # type: ignore[arg-type]
                   else temporal_map(frames(), frame_process, options))  # type: ignore[arg-type]
        for index, result in enumerate(results):
            bar.update(min(index + 1, bar.total))
            yield result

    try:
        write_video(output, outputs(), fps=info.fps, overwrite=overwrite, crf=crf, codec=codec,
                    audio_from=source if audio else None, audio_start=lambda: reader.first_time or 0.0,
                    rotation=info.rotation, color_range=info.color_range)
    finally:
        bar.close()
    return Path(output)


def translate(
    image: ImageInput,
    model: str | os.PathLike | Translator,
    *,
    direction: str = "a2b",
    size: int | None = None,
    device: str = "cpu",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    output: str | os.PathLike | None = None,
    bit_depth: int | None = None,
    overwrite: bool = False,
) -> Image.Image:
    """Translate ``image`` to the other domain of a trained CycleGAN or U-GAT-IT model.

    Args:
        image: path, PIL image, ``(H, W, 3)`` uint8 array or ``(1, 3, H, W)`` tensor in [0, 1].
        model: a trained model's name (``$ATELIER_HOME/weights`` first, then shipped, e.g.
            ``"summer2winter"``), a ``.safetensors`` file exported by ``atelier train``, or an
            :class:`atelier.pipelines.translation.Translator` built once to reuse over many images.
        direction: ``"a2b"`` (content domain -> style domain of the training config, e.g.
            summer -> winter) or ``"b2a"``.
        size: longest side of the output in px (None keeps the input's size).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        max_pixels: inputs above this many pixels raise :class:`~atelier.errors.ImageTooLargeError`.
        output: also write the result to this image file, as :func:`stylize` does.
        bit_depth: 8 or 16 bits per channel of ``output``; None: the input's (16 or 8).
        overwrite: replace an existing ``output``.

    Any size works: the network sees the image resized to the nearest multiple of 4 (CycleGAN's
    test-time convention) and the result is resized back, so the output has the input's size.

    Raises:
        atelier.errors.AtelierError: a subclass naming what is wrong with the input or the model.
    """
    if direction not in DIRECTIONS:
        raise OptionError(f"direction must be a2b or b2a, not {direction!r}")
    output_path = _check_output(output, bit_depth, overwrite)
    device = resolve_device(device)
    translator = model if isinstance(model, Translator) else Translator(str(model))
    tensor, info = load_image_info(image, max_pixels=max_pixels, name="image")
    result = translator(_apply_size(tensor, size, max_pixels), direction, device=device)
    if output_path is not None:
        save_image(result, output_path, overwrite=overwrite, bit_depth=bit_depth, info=info)
    return tensor_to_pil(result)


def translate_video(
    source: str | Path,
    model: str | os.PathLike | Translator,
    *,
    output: str | Path,
    direction: str = "a2b",
    size: int | None = None,
    device: str = "cpu",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    progress: bool = True,
    temporal: TemporalOptions | bool = True,
    start: float = 0.0,
    duration: float | None = None,
    crf: int = DEFAULT_CRF,
    codec: str | None = None,
    audio: bool = True,
    frame_batch: int | None = None,
) -> Path:
    """Translate every frame of a video with a trained CycleGAN or U-GAT-IT model (see :func:`translate`).

    Same frame rate and sound, written atomically (Ctrl-C: see :func:`map_video`).

    The networks have no temporal term; with ``temporal`` (default) each translated frame is
    blended with the previous one warped by the optical flow where the flow is reliable, which
    removes most flicker (see :func:`stylize_video` for the other arguments).

    Returns:
        The output path.
    """
    if direction not in DIRECTIONS:
        raise OptionError(f"direction must be a2b or b2a, not {direction!r}")
    device = resolve_device(device)
    translator = model if isinstance(model, Translator) else Translator(str(model))
    translator.nets  # noqa: B018  (a bad model fails before the video is opened)
    return map_video(source, lambda frames: translator(frames, direction, device=device), output=output, size=size,
                     max_pixels=max_pixels, overwrite=overwrite, progress=progress, temporal=temporal, start=start,
                     duration=duration, crf=crf, codec=codec, audio=audio, frame_bytes=translator.frame_bytes,
                     batch=_frame_batch(frame_batch, device))
