from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from atelier.cli import main
from atelier.errors import ImageError, OptionError, OutputExistsError
from atelier.io.video import VideoInterrupted, is_video, probe_video, read_frames, write_video
from helpers import export_transformer, smooth_image

pytest.importorskip("av")


def _frames(count: int = 6, height: int = 32, width: int = 48):
    return [smooth_image(height, width, seed=i) for i in range(count)]


def test_write_then_read_round_trips_size_rate_and_pixels(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = _frames()
    assert write_video(path, frames, fps=12) == 6
    info = probe_video(path)
    assert (info.width, info.height, info.fps) == (48, 32, Fraction(12))
    decoded = list(read_frames(path))
    assert len(decoded) == 6 and decoded[0].shape == (1, 3, 32, 48)
    # Lossy (H.264, 4:2:0) but close: smooth images survive within a few grey levels on average.
    assert float(torch.stack([(d - f).abs().mean() for d, f in zip(decoded, frames)]).max()) < 0.03


def test_writing_is_atomic_and_refuses_to_clobber(tmp_path):
    path = tmp_path / "clip.mp4"

    def interrupted(after: int):
        yield from _frames(after)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stop:
        write_video(path, interrupted(0), fps=10)
    assert not isinstance(stop.value, VideoInterrupted)
    assert list(tmp_path.iterdir()) == []  # nothing done: no video, no temporary file
    # Ctrl-C after some frames: those frames as a complete, playable video, no temporary file.
    with pytest.raises(VideoInterrupted) as stop:
        write_video(path, interrupted(3), fps=10)
    assert stop.value.frames == 3 and stop.value.path == path
    assert list(tmp_path.iterdir()) == [path] and len(list(read_frames(path))) == 3
    path.unlink()
    write_video(path, _frames(2), fps=10)
    with pytest.raises(OutputExistsError):
        write_video(path, _frames(2), fps=10)
    with pytest.raises(OptionError, match="unknown video format"):
        write_video(tmp_path / "clip.gif", _frames(2), fps=10)


def test_unreadable_videos_fail_clearly(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ImageError, match="not a readable video"):
        probe_video(bad)
    with pytest.raises(ImageError, match="no such video"):
        probe_video(tmp_path / "missing.mp4")
    assert is_video("a.MOV") and not is_video("a.png")


def test_cli_stylizes_a_video_frame_by_frame(tmp_path, capsys):
    from atelier.methods.johnson import load_transformer
    from atelier.nets.transformer import TransformerNet

    torch.manual_seed(0)
    model = export_transformer(TransformerNet(width=4, blocks=1).eval(), tmp_path / "tiny.safetensors", ["tiny"])
    source = tmp_path / "in.mp4"
    write_video(source, _frames(5, 36, 44), fps=8)
    output = tmp_path / "out.mp4"
    assert main(["stylize", str(source), "--model", model, "--size", "44", "-o", str(output), "-q"]) == 0
    info = probe_video(output)
    assert (info.width, info.height, info.fps) == (44, 36, Fraction(8))
    frames = list(read_frames(output))
    net, _ = load_transformer(model)
    with torch.no_grad():
        expected = [net(frame) for frame in read_frames(source)]
    assert len(frames) == 5
    # Each output frame is the network applied to its input frame (up to H.264 and bf16 loss).
    errors = [float((f - e).abs().mean()) for f, e in zip(frames, expected)]
    changes = [float((f - e).abs().mean()) for f, e in zip(frames, read_frames(source))]
    assert max(errors) < 0.25 * min(changes), (errors, changes)
    assert main(["stylize", str(source), "--model", model, "-o", str(tmp_path / "x.png")]) == 2
    assert "must be a video" in capsys.readouterr().err
