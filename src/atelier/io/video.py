"""Reading and writing video with PyAV (FFmpeg's libraries, bundled in the ``av`` wheel).

Frames enter and leave atelier as ``(1, 3, H, W)`` float tensors in [0, 1], like images.
Writing is atomic: frames go to a temporary file next to the output, renamed into place only
when the last frame is encoded, so Ctrl-C or an error never leaves a broken video behind.
PyAV is an optional dependency (``pip install 'atelier[video]'``), imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from ..errors import ImageError, OptionError, OutputExistsError
from .atomic import atomic_path

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "is_video", "probe_video", "read_frames", "write_video"]

#: Output suffix -> (FFmpeg container format, codec); frames are encoded as 4:2:0 (yuv420p).
_CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
               ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx-vp9"), ".avi": ("avi", "mpeg4")}
VIDEO_SUFFIXES = tuple(_CONTAINERS)


def _av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise OptionError("video needs PyAV: pip install 'atelier[video]' (or pip install av)") from None
    return av


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """Size, frame rate and (container-reported, possibly 0) frame count of a video."""

    width: int
    height: int
    fps: Fraction
    frames: int


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header; :class:`ImageError` for a missing or unreadable file."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such video file; check the path")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageError(f"{path}: has no video stream; give a video file (not audio only)")
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            return VideoInfo(stream.codec_context.width, stream.codec_context.height, Fraction(fps),
                             int(stream.frames or 0))
    except av.error.FFmpegError as error:
        raise ImageError(f"{path}: not a readable video ({error}); convert it to MP4 (H.264)") from None


def read_frames(path: str | os.PathLike) -> Iterator[Tensor]:
    """The frames of the first video stream as ``(1, 3, H, W)`` float tensors in [0, 1]."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                array = frame.to_ndarray(format="rgb24")
                yield torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0
    except av.error.FFmpegError as error:
        raise ImageError(f"{path}: video decoding failed ({error}); re-encode it, e.g. "
                         "ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4") from None


def write_video(path: str | os.PathLike, frames: Iterable[Tensor], *, fps: Fraction | float,
                overwrite: bool = False, quality: int = 18) -> int:
    """Encode ``frames`` (``(1, 3, H, W)`` in [0, 1], all one size) to ``path`` atomically.

    ``quality`` is the x264/VP9 constant rate factor (lower = better; 18 is visually
    lossless). Odd sizes are cropped by one pixel (4:2:0 chroma needs even sides).
    Returns the number of frames written.
    """
    av = _av()
    path = Path(path)
    if path.suffix.lower() not in _CONTAINERS:
        raise OptionError(f"{path}: unknown video format {path.suffix or '(no extension)'!r}; "
                          f"use one of {', '.join(VIDEO_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    container_format, codec = _CONTAINERS[path.suffix.lower()]
    count = 0
    with atomic_path(path) as temp, av.open(str(temp), mode="w", format=container_format) as container:
        stream = None
        for frame in frames:
            array = (frame[0].clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
            array = np.ascontiguousarray(array[: array.shape[0] // 2 * 2, : array.shape[1] // 2 * 2])
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(10000))
                stream.width, stream.height = array.shape[1], array.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(quality)}
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise ImageError(f"no frames to write to {path}: the input video has no frames; check it plays")
        for packet in stream.encode():
            container.mux(packet)
    return count
