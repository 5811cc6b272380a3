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
    assert main(["stylize", str(source), "--model", model, "--size", "44", "-o", str(output), "-q",
                 "--no-temporal"]) == 0
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


def _clip_with_tone(path, *, frames: int = 36, fps: int = 24, tone_frame: int = 12, size=(32, 48), rotation: int = 0,
                    full_range: bool = False):
    """A video whose frames brighten one step a frame, with a mono AAC track that is silent until
    frame ``tone_frame`` and a 440 Hz tone from then on (PyAV, so the tests need no data)."""
    import av
    import numpy as np

    rate = 44100
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[1], size[0], "yuv420p"
        if full_range:
            video.codec_context.color_range = 2
        if rotation:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        samples = np.zeros(frames * rate // fps, np.float32)
        start = tone_frame * rate // fps
        samples[start:] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(samples) - start) / rate)
        for index in range(frames):
            array = np.zeros((*size, 3), np.uint8) + np.uint8(60 + 4 * index)
            array[:, : size[1] // 2, 0] = 200  # a red left half: rotations and ranges show
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_color_range="JPEG" if full_range else "MPEG")
            frame.pts = index
            container.mux(video.encode(frame))
        for offset in range(0, len(samples), 1024):
            chunk = av.AudioFrame.from_ndarray(samples[None, offset : offset + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = rate, offset
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def _audio_onset(path) -> tuple[float, float]:
    """(time of the first loud audio sample, end of the audio) in seconds."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        onset, end = None, 0.0
        for frame in container.decode(audio=0):
            data = frame.to_ndarray().reshape(-1)[: frame.samples] if frame.format.is_planar else \
                frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)]
            loud = np.flatnonzero(np.abs(data) > 0.2)
            if onset is None and loud.size:
                onset = float(frame.time) + loud[0] / frame.sample_rate
            end = float(frame.time) + frame.samples / frame.sample_rate
    return onset, end


def _packets(path, kind):
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(**{kind: 0}) if p.size]


def test_audio_is_remuxed_unchanged_in_sync_and_as_long_as_the_video(tmp_path):
    from atelier.api import map_video

    source = _clip_with_tone(tmp_path / "tone.mp4")
    output = map_video(source, lambda frame: 1 - frame, output=tmp_path / "out.mp4", progress=False)
    info = probe_video(output)
    assert info.audio == "aac" and info.fps == 24 and info.frames == 36
    # Remuxed, not re-encoded: the very same compressed packets.
    copied, original = _packets(output, "audio"), _packets(source, "audio")
    assert copied == original[: len(copied)] and len(copied) >= len(original) - 1  # (past the last frame: cut)
    onset, end = _audio_onset(output)
    frame = 1 / 24
    assert abs(onset - 12 * frame) < frame  # the tone starts with frame 12, as in the source
    assert abs(end - 36 * frame) <= frame  # the audio lasts as long as the video, within a frame
    # A piece from 0.25 s: the tone now starts 0.25 s earlier; audio and video end together.
    piece = map_video(source, lambda frame: frame, output=tmp_path / "piece.mkv", start=0.25, duration=1.0,
                      progress=False)
    assert len(list(read_frames(piece))) == 24
    onset, end = _audio_onset(piece)
    assert abs(onset - (12 * frame - 0.25)) < frame and abs(end - 1.0) <= frame
    # A container that cannot hold AAC gets the audio re-encoded (Opus in WebM), still in sync.
    webm = map_video(source, lambda frame: frame, output=tmp_path / "out.webm", progress=False)
    assert probe_video(webm).audio == "opus"
    assert abs(_audio_onset(webm)[0] - 12 * frame) < frame
    # --no-audio drops it.
    silent = map_video(source, lambda frame: frame, output=tmp_path / "silent.mp4", audio=False, progress=False)
    assert probe_video(silent).audio is None


def test_rotation_and_full_colour_range_are_kept(tmp_path):
    source = _clip_with_tone(tmp_path / "rotated.mp4", frames=4, rotation=90, full_range=True)
    info = probe_video(source)
    assert info.rotation == 90 and info.color_range == 2
    first = next(read_frames(source))
    assert float(first[0, 0, :, :12].mean()) > 0.7  # red (200) read as full range, not stretched
    from atelier.api import map_video

    output = map_video(source, lambda frame: frame, output=tmp_path / "out.mp4", progress=False)
    kept = probe_video(output)
    assert kept.rotation == 90 and kept.color_range == 2
    assert float((next(read_frames(output)) - first).abs().mean()) < 0.03


def test_start_duration_crf_and_codec_are_checked(tmp_path):
    from atelier.api import map_video

    source = _clip_with_tone(tmp_path / "tone.mp4", frames=12)
    with pytest.raises(OptionError, match="past the end"):
        map_video(source, lambda f: f, output=tmp_path / "a.mp4", start=5.0, progress=False)
    with pytest.raises(OptionError, match="duration"):
        map_video(source, lambda f: f, output=tmp_path / "a.mp4", duration=0, progress=False)
    with pytest.raises(OptionError, match="crf"):
        map_video(source, lambda f: f, output=tmp_path / "a.mp4", crf=60, progress=False)
    with pytest.raises(OptionError, match="cannot hold"):
        map_video(source, lambda f: f, output=tmp_path / "a.webm", codec="libx264", progress=False)
    assert not list(tmp_path.glob("a.*")) and not list(tmp_path.glob(".*part"))
    small = map_video(source, lambda f: f, output=tmp_path / "small.mp4", crf=40, progress=False)
    best = map_video(source, lambda f: f, output=tmp_path / "best.mp4", crf=10, progress=False)
    assert small.stat().st_size < best.stat().st_size


def test_ctrl_c_keeps_the_frames_done_as_a_valid_shorter_video(tmp_path):
    from atelier.api import map_video

    source = _clip_with_tone(tmp_path / "tone.mp4", frames=24)
    done = []

    def process(frame):
        if len(done) == 10:
            raise KeyboardInterrupt
        done.append(1)
        return frame

    output = tmp_path / "out.mp4"
    with pytest.raises(VideoInterrupted) as stop:
        map_video(source, process, output=output, progress=False)
    assert stop.value.frames == 10 and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "tone.mp4"]
    assert len(list(read_frames(output))) == 10
    assert abs(_audio_onset(output)[1] - 10 / 24) <= 1 / 24  # the sound stops with the last frame


def test_sigterm_during_a_video_keeps_a_valid_shorter_video_and_no_part_file(tmp_path):
    pytest.importorskip("cv2")  # the default --temporal needs the flow
    import signal
    import subprocess
    import sys

    from atelier.nets.transformer import TransformerNet

    torch.manual_seed(0)
    model = export_transformer(TransformerNet(width=4, blocks=1).eval(), tmp_path / "tiny.safetensors", ["tiny"])
    source = _clip_with_tone(tmp_path / "tone.mp4", frames=48)
    output = tmp_path / "out" / "styled.mp4"
    script = (
        "import sys, time\n"
        "import atelier.api as api\n"
        "from atelier import cli\n"
        "plain = api.stylize_tensor\n"
        "def slow(*args, **kwargs):\n"
        "    print('frame', flush=True)\n"
        "    time.sleep(0.2)\n"
        "    return plain(*args, **kwargs)\n"
        "api.stylize_tensor = slow\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, "stylize", str(source), "--model", model, "-o",
                                str(output), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(5):
        assert process.stdout.readline() == "frame\n"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted: wrote the first" in stderr
    assert [p.name for p in output.parent.iterdir()] == ["styled.mp4"]  # no .part left
    frames = len(list(read_frames(output)))
    assert 4 <= frames < 48
    assert probe_video(output).audio == "aac"


def test_cli_video_options_are_refused_for_images(tmp_path, capsys):
    from atelier.io.images import save_image

    image = tmp_path / "a.png"
    save_image(smooth_image(), image)
    assert main(["stylize", str(image), "--method", "adain", "--style", str(image), "--start", "2",
                 "-o", str(tmp_path / "b.png")]) == 2
    assert "--start apply to video input only" in capsys.readouterr().err
    assert main(["translate", str(image), "--model", "summer2winter", "--no-temporal",
                 "-o", str(tmp_path / "b.png")]) == 2
    assert "--no-temporal apply to video input only" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_ctrl_c_inside_an_optimisation_stops_the_whole_video(tmp_path):
    """gatys/photo catch Ctrl-C to return their best image; in a video it must stop the run."""
    pytest.importorskip("cv2")
    from dataclasses import dataclass

    from atelier.api import stylize_video
    from atelier.pipelines.base import Method, MethodConfig, StylizeResult

    @dataclass(frozen=True)
    class StoppedConfig(MethodConfig):
        pass

    class Stopped(Method):
        name, summary, paper, Config = "stopped", "test", "none", StoppedConfig
        uses_style_images = False
        calls = 0

        def style_count(self):
            return 1

        def stylize(self, content, styles, **kwargs):
            Stopped.calls += 1
            return StylizeResult(image=content, interrupted=Stopped.calls == 4)

    source = _clip_with_tone(tmp_path / "tone.mp4", frames=12)
    with pytest.raises(VideoInterrupted) as stop:
        stylize_video(source, None, Stopped(), output=tmp_path / "out.mp4", progress=False)
    assert stop.value.frames == 3 and len(list(read_frames(tmp_path / "out.mp4"))) == 3


def test_a_network_video_in_batches_of_frames_equals_frame_by_frame(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    from atelier.api import stylize_video
    from atelier.methods.johnson import Johnson
    from atelier.nets.transformer import TransformerNet

    torch.manual_seed(0)
    method = Johnson(network=TransformerNet(width=4, blocks=1).eval(), precision="fp32")
    batches = []
    stylize = method.stylize
    monkeypatch.setattr(method, "stylize", lambda content, *a, **k: (batches.append(content.shape[0]),
                                                                      stylize(content, *a, **k))[1])
    source = tmp_path / "in.mp4"
    write_video(source, _frames(7, 36, 44), fps=8)
    # crf 0: lossless H.264, so the decoded frames are the stylized ones (a lossy encoder turns a
    # one-level difference into different decisions over whole blocks).
    stylize_video(source, None, method, output=tmp_path / "batched.mp4", progress=False, frame_batch=8, crf=0)
    assert batches == [7]  # 8 asked, the clip has 7 frames
    batches.clear()
    stylize_video(source, None, method, output=tmp_path / "single.mp4", progress=False, crf=0)
    assert batches == [1] * 7  # the default on the CPU, where a batch measured no faster
    batched, single = list(read_frames(tmp_path / "batched.mp4")), list(read_frames(tmp_path / "single.mp4"))
    assert len(batched) == len(single) == 7
    # The same frames up to float rounding: a batch of 7 and 7 batches of 1 differ by ~1e-7, which
    # can flip a pixel's 8-bit rounding (4:2:0 chroma then moves its 2x2 block by a level or two).
    # Neighbouring frames differ far more (checked).
    for index, (a, b) in enumerate(zip(batched, single)):
        assert float((a - b).abs().mean()) < 0.1 / 255 and float((a - b).abs().max()) <= 3 / 255
        if index:
            assert float((a - single[index - 1]).abs().mean()) > 10 / 255
    with pytest.raises(OptionError, match="frame_batch"):
        stylize_video(source, None, method, output=tmp_path / "x.mp4", frame_batch=0)
