"""Reading and writing video with PyAV (FFmpeg's libraries, bundled in the ``av`` wheel).

Frames enter and leave atelier as ``(1, 3, H, W)`` float tensors in [0, 1], like images.
Writing is atomic: frames go to a temporary file next to the output, renamed into place only
when the file is a complete, playable video. The audio of the source is copied packet by packet
(no re-encoding) when the output container can hold its codec, and re-encoded to the
container's default audio codec otherwise; the frame rate, the rotation (display matrix) and the
colour range (limited/full) are kept. Ctrl-C (KeyboardInterrupt) while frames are being written
closes the video after the frames done so far and raises :class:`VideoInterrupted`; when no
frame is done yet, nothing is written.
PyAV is an optional dependency (``pip install 'atelier[video]'``), imported on first use.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ImageError, OptionError, OutputExistsError
from .atomic import atomic_path

__all__ = ["CODECS", "DEFAULT_CRF", "VIDEO_SUFFIXES", "VideoInfo", "VideoInterrupted", "VideoReader", "is_video",
           "prefetch", "probe_video", "read_frames", "write_video"]

#: Output suffix -> (FFmpeg container format, default video codec); frames are encoded as 4:2:0 (yuv420p).
_CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
               ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx-vp9"), ".avi": ("avi", "mpeg4")}
VIDEO_SUFFIXES = tuple(_CONTAINERS)
#: Codecs ``--codec`` accepts: H.264, H.265, VP9, MPEG-4 part 2 (all in the PyAV wheel's FFmpeg).
CODECS = ("libx264", "libx265", "libvpx-vp9", "mpeg4")
#: Constant rate factor: 18 is visually lossless for x264 (its manual); lower = better and larger.
DEFAULT_CRF = 18


def _av() -> ModuleType:
    try:
        import av
    except ImportError:
        raise OptionError("video needs PyAV: pip install 'atelier[video]' (or pip install av)") from None
    return av


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM via the CLI) stopped a video write after ``frames`` frames.

    ``path`` is a complete, playable, shorter video.
    """

    def __init__(self, path: Path, frames: int):
        super().__init__(f"interrupted after {frames} frames")
        self.path = path
        self.frames = frames


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says.

    Size, frame rate, (container-reported, possibly 0) frame count, duration in seconds (0 when
    unknown), display rotation in degrees (counter-clockwise, as the display matrix), colour range
    (FFmpeg's number: 0 unspecified, 1 limited, 2 full) and the audio codec (None without audio).
    """

    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float = 0.0
    rotation: int = 0
    color_range: int = 0
    audio: str | None = None


def _open(path: str | os.PathLike) -> Any:
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such video file; check the path")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise ImageError(f"{path}: not a readable video ({error}); convert it to MP4 (H.264)") from None
    if not container.streams.video:
        container.close()
        raise ImageError(f"{path}: has no video stream; give a video file (not audio only)")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header (and its first frame, for rotation and colour range).

    Raises:
        ImageError: a missing or unreadable file, or one without a video stream.
    """
    av = _av()
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or stream.guessed_rate or Fraction(25))
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
            container.duration / 1e6 if container.duration else 0.0)
        rotation, color_range = 0, 0
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as error:
            raise ImageError(f"{path}: not a readable video ({error}); convert it to MP4 (H.264)") from None
        if first is not None:
            rotation, color_range = round(first.rotation or 0), int(first.color_range or 0)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, int(stream.frames or 0),
                         duration, rotation, color_range, audio)


def _to_tensor(frame: Any) -> Tensor:
    # The frame's own colour range: full-range (JPEG) sources must not be stretched again.
    array = frame.reformat(format="rgb24", src_color_range=frame.color_range or None,
                           dst_color_range="JPEG").to_ndarray()
    return torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0


class VideoReader:
    """The frames of a video's first stream from ``start`` for ``duration`` seconds.

    Yielded as ``(1, 3, H, W)`` float tensors in [0, 1], decoded one at a time (memory does not grow with
    the clip).

    ``first_time`` is the source time (seconds) of the first frame yielded, once it is known: the
    audio copied next to the frames is shifted by it.
    """

    def __init__(self, path: str | os.PathLike, *, start: float = 0.0, duration: float | None = None):
        if start < 0 or (duration is not None and duration <= 0):
            raise OptionError(f"start must be >= 0 and duration > 0 seconds, got {start} and {duration}")
        self.path = Path(path)
        self.start = start
        self.duration = duration
        self.first_time: float | None = None

    def __iter__(self) -> Iterator[Tensor]:
        """Decode and yield the frames of the selected span, one ``(1, 3, H, W)`` tensor at a time."""
        av = _av()
        try:
            with _open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"  # FFmpeg's frame threads: decoding overlaps the networks
                rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
                half_frame = 0.5 / float(rate)
                if self.start > 0:
                    container.seek(int(self.start / stream.time_base), stream=stream, backward=True)
                end = None if self.duration is None else self.start + self.duration - half_frame
                for frame in container.decode(stream):
                    time = float(frame.time) if frame.time is not None else 0.0
                    if time < self.start - half_frame:
                        continue  # decoded from the keyframe before the start
                    if end is not None and time >= end:
                        break
                    if self.first_time is None:
                        self.first_time = time
                    yield _to_tensor(frame)
        except av.error.FFmpegError as error:
            raise ImageError(f"{self.path}: video decoding failed ({error}); re-encode it, e.g. "
                             "ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4") from None
        if self.first_time is None and self.start > 0:
            raise ImageError(f"{self.path}: no frames after --start {self.start:g} s; the video is shorter")


def read_frames(path: str | os.PathLike, *, start: float = 0.0, duration: float | None = None) -> Iterator[Tensor]:
    """The frames of the first video stream as ``(1, 3, H, W)`` float tensors in [0, 1] (see :class:`VideoReader`)."""
    return iter(VideoReader(path, start=start, duration=duration))


def prefetch(items: Iterable[Any], depth: int = 4) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead.

    Decoding (FFmpeg releases the GIL) overlaps the work on the previous frames. Errors are
    re-raised here; stopping early (an exception or Ctrl-C in the consumer) stops the thread and
    closes the source.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        buffer.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            else:
                buffer.put(("end", None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            buffer.put(("error", error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="atelier-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # drain so a blocked put returns, then let it see ``stop``
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class _AudioCopy:
    """Copies the source's first audio stream into ``container``, interleaved with the video.

    Packets are remuxed unchanged when the container takes the codec, re-encoded to its default
    audio codec otherwise. Source times are shifted by the first frame's time (:meth:`begin`).
    """

    def __init__(self, container: Any, source: str | os.PathLike):
        av = _av()
        self.input = av.open(str(source))
        self.source = self.input.streams.audio[0]
        name = self.source.codec_context.name
        self.remux = name in container.supported_codecs
        if self.remux:
            self.output = container.add_stream_from_template(self.source)
        else:
            codec = container.default_audio_codec
            # Opus encodes at 48 kHz only; the encoder resamples the decoded frames to it.
            rate = 48000 if "opus" in codec else self.source.codec_context.sample_rate
            self.output = container.add_stream(codec, rate=rate)
            self.output.layout = self.source.codec_context.layout
        self.container = container
        self.packets: Any = iter(())
        self.pending: Any = None
        self.offset = 0.0
        self.done = False

    def begin(self, offset: float) -> None:
        """Start copying at source time ``offset`` (the first frame's time), which becomes time 0."""
        self.offset = offset
        if offset > 0:
            self.input.seek(int(offset / self.source.time_base), stream=self.source, backward=True)
        self.packets = self.input.demux(self.source)

    def _next_packet(self) -> Any:
        if self.pending is None and not self.done:
            for packet in self.packets:
                if packet.pts is not None:
                    self.pending = packet
                    break
            else:
                self.done = True
        return self.pending

    def copy_until(self, seconds: float) -> None:
        """Write the audio whose output time starts before ``seconds``."""
        base = self.source.time_base
        shift = round(self.offset / base)
        while (packet := self._next_packet()) is not None:
            if float((packet.pts - shift) * base) >= seconds:
                return
            self.pending = None
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            if packet.pts + (packet.duration or 0) < 0:
                continue  # wholly before the first frame kept (the one just before stays: AAC priming)
            if self.remux:
                packet.stream = self.output
                self.container.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None  # the encoder counts samples from 0
                    self.container.mux(self.output.encode(frame))

    def close(self, seconds: float) -> None:
        """Copy the audio up to the video's end and flush the encoder (when re-encoding)."""
        self.copy_until(seconds)
        if not self.remux:
            self.container.mux(self.output.encode(None))
        self.input.close()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[Tensor],
    *,
    fps: Fraction | float,
    overwrite: bool = False,
    crf: int = DEFAULT_CRF,
    codec: str | None = None,
    audio_from: str | os.PathLike | None = None,
    audio_start: float | Callable[[], float] = 0.0,
    rotation: int = 0,
    color_range: int = 0,
    quality: int | None = None,
) -> int:
    """Encode ``frames`` (``(1, 3, H, W)`` in [0, 1], all one size) to ``path`` atomically.

    Args:
        path: the output; its extension picks the container (and the default codec).
        frames: the frames, consumed one at a time.
        fps: frame rate.
        overwrite: replace an existing file.
        crf: constant rate factor of x264/x265/VP9 (lower = better; 18 is visually lossless);
            MPEG-4 part 2 takes it as its quantiser scale, clamped to 2-31.
        codec: one of :data:`CODECS` (default: the container's, H.264 for .mp4/.mov/.mkv).
        audio_from: a video or audio file whose first audio stream is copied next to the frames.
        audio_start: source time (s) matching the first frame, or a callable that gives it once
            the first frame is read (:attr:`VideoReader.first_time`).
        rotation: display rotation (degrees counter-clockwise) stored in the output's display matrix.
        color_range: FFmpeg colour range of the output (1 limited, 2 full; 0 = unspecified, limited).
        quality: the former name of ``crf``.

    Odd sizes are cropped by one pixel (4:2:0 chroma needs even sides).

    Returns:
        The number of frames written.

    Raises:
        VideoInterrupted: Ctrl-C after at least one frame; the shorter video is complete at ``path``.
        KeyboardInterrupt: Ctrl-C before the first frame; nothing is written.
    """
    av = _av()
    path = Path(path)
    if path.suffix.lower() not in _CONTAINERS:
        raise OptionError(f"{path}: unknown video format {path.suffix or '(no extension)'!r}; "
                          f"use one of {', '.join(VIDEO_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    crf = quality if quality is not None else crf
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise OptionError(f"crf must be a whole number from 0 (lossless) to 51, got {crf!r}; 18 is visually lossless")
    container_format, default_codec = _CONTAINERS[path.suffix.lower()]
    codec = codec or default_codec
    if codec not in CODECS:
        raise OptionError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    rate = Fraction(fps).limit_denominator(10000)
    range_name = "JPEG" if color_range == 2 else "MPEG"
    count = 0
    muxed = interrupted = False
    with atomic_path(path) as temp, av.open(str(temp), mode="w", format=container_format) as container:
        if codec not in container.supported_codecs:
            raise OptionError(f"{path.suffix} files cannot hold {codec}; choose another --codec or extension")
        video = container.add_stream(codec, rate=rate)
        video.time_base = 1 / rate  # frames count in 1/fps
        if rotation:
            video.set_display_rotation(rotation)
        audio = None
        if audio_from is not None and _has_audio(audio_from):
            audio = _AudioCopy(container, audio_from)
        iterator = iter(frames)
        try:
            for frame in iterator:
                array = (frame[0].clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
                array = np.ascontiguousarray(array[: array.shape[0] // 2 * 2, : array.shape[1] // 2 * 2])
                if count == 0:
                    _open_video_stream(video, codec, array.shape, crf, color_range)
                    if audio is not None:
                        audio.begin(float((audio_start() if callable(audio_start) else audio_start) or 0.0))
                rgb = av.VideoFrame.from_ndarray(array, format="rgb24")
                yuv = rgb.reformat(format="yuv420p", src_color_range="JPEG", dst_color_range=range_name)
                yuv.pts = count
                yuv.time_base = 1 / rate  # not video.time_base: the muxer changes it once it starts
                packets = video.encode(yuv)
                container.mux(packets)
                muxed = muxed or bool(packets)
                count += 1
                # Audio only once the video encoder has opened and given a packet: a header written
                # earlier (by an audio packet) would leave the encoder with the muxer's time base.
                if audio is not None and muxed:
                    audio.copy_until(count / float(rate))
        except KeyboardInterrupt:
            if count == 0:
                if audio is not None:
                    audio.input.close()
                raise
            interrupted = True
        except BaseException:
            if audio is not None:
                audio.input.close()
            raise
        if count == 0:
            raise ImageError(f"no frames to write to {path}: the input video has no frames (or none in the "
                             "chosen --start/--duration); check it plays")
        container.mux(video.encode(None))
        if audio is not None:
            audio.close(count / float(rate))
    if interrupted:
        raise VideoInterrupted(path, count)
    return count


def _has_audio(source: str | os.PathLike) -> bool:
    av = _av()
    try:
        with av.open(str(source)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError:
        return False


def _open_video_stream(video: Any, codec: str, shape: tuple[int, ...], crf: int, color_range: int) -> None:
    """Size, pixel format, rate control and colour tags of the video stream, before its first frame."""
    video.width, video.height = shape[1], shape[0]
    video.pix_fmt = "yuv420p"
    video.codec_context.color_range = 2 if color_range == 2 else 1
    if codec == "mpeg4":
        video.codec_context.qscale = True
        video.codec_context.global_quality = max(2, min(31, crf)) * 118  # FF_QP2LAMBDA: quantiser -> lambda
    else:
        video.options = {"crf": str(crf)} | ({"b": "0"} if codec == "libvpx-vp9" else {})
