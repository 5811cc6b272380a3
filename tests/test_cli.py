"""CLI behaviour: option parsing, listing, errors -> exit 2 with one line and no output file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from atelier import cli
from atelier.encoders import random_vgg19
from atelier.optim import pyramid
from atelier.pipelines import base


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    content = tmp_path / "content.png"
    style = tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(style)
    return content, style


@pytest.fixture
def tiny(monkeypatch):
    """Route the CLI's encoder loading to the tiny random encoder."""
    monkeypatch.setattr(base, "load_vgg19", lambda *a, **k: random_vgg19())


def test_methods_lists_every_option(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "gatys:" in out and "--content-weight" in out and "--style-layers" in out


def test_help_documents_common_and_method_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["stylize", "--help"])
    out = capsys.readouterr().out
    for flag in ("--size", "--iterations", "--scales", "--seed", "--device", "--style-weights",
                 "--content-weight", "--preserve-color", "--mask", "--output", "--overwrite", "--histogram-weight"):
        assert flag in out, flag


def test_stylize_writes_output(images, tmp_path, tiny, capsys):
    content, style = images
    out = tmp_path / "out.png"
    code = cli.main(["stylize", str(content), "--style", str(style), "--size", "48", "--iterations", "2",
                     "-o", str(out), "--seed", "1"])
    assert code == 0 and Image.open(out).size == (48, 34)
    assert "gatys 48x34" in capsys.readouterr().err


def test_two_styles_with_weights_and_masks(images, tmp_path, tiny):
    content, style = images
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((40, 56), 255, np.uint8)).save(mask)
    out = tmp_path / "two.png"
    code = cli.main(["stylize", str(content), "--style", str(style), "--style", str(content), "--style-weights",
                     "0.7", "0.3", "--mask", str(mask), "--mask", str(mask), "--size", "40", "--iterations", "1",
                     "-q", "-o", str(out)])
    assert code == 0 and out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--style-weights", "1", "2"], "2 style weight(s) for 1 style"),
    (["--style-weights", "-1"], "must be >= 0"),
    (["--content-weight", "-3"], "content_weight must be >= 0"),
    (["--style-layers", "relu9_1"], "unknown VGG-19 layer 'relu9_1'"),
    (["--method", "gatsy"], "did you mean gatys"),
    (["--size", "8"], "too small"),
    (["--mask", "MISSING.png"], "MISSING.png"),
    (["--device", "cuda:0"], "no CUDA GPU"),
    (["--max-pixels", "100"], "above the limit"),
    (["--device", "mps"], "no Apple MPS GPU"),
    (["--device", "cpu:5"], "one CPU device"),
    (["--seed", "99999999999999999999999"], "seed 99999999999999999999999 is out of range"),
])
def test_bad_input_exit_2_one_line_no_output(images, tmp_path, tiny, capsys, extra, message):
    content, style = images
    out = tmp_path / "out.png"
    code = cli.main(["stylize", str(content), "--style", str(style), "--iterations", "1", "-q", "-o", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err
    assert err.startswith("atelier: error: ")
    assert (not out.exists() and list(tmp_path.iterdir()) == [content, style]) or not out.exists()


def test_photo_with_segmentations_and_photo_smooth(images, tmp_path, tiny):
    content, style = images
    content_map, style_map = tmp_path / "in.png", tmp_path / "tar.png"
    for path, (h, w) in ((content_map, (40, 56)), (style_map, (48, 48))):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[h // 2 :] = (0, 255, 0)  # black sky over green ground
        Image.fromarray(rgb).save(path)
    out = tmp_path / "photo.png"
    code = cli.main(["stylize", str(content), "--style", str(style), "--method", "photo", "--content-mask",
                     str(content_map), "--style-mask", str(style_map), "--iterations", "2", "--refine-iterations", "2",
                     "--photo-smooth", "--size", "40", "-q", "-o", str(out)])
    assert code == 0 and Image.open(out).size == (40, 29)


@pytest.mark.parametrize("extra, message", [
    (["--content-mask", "in.png"], "give both --content-mask and --style-mask"),
    (["--init-color", "maybe"], "init_color must be true or false, not 'maybe'"),
    (["--style", "second.png"], "one reference photo"),
])
def test_photo_bad_options_exit_2(images, tmp_path, tiny, capsys, extra, message):
    content, style = images
    if "second.png" in extra:
        extra = ["--style", str(content)]
    out = tmp_path / "out.png"
    code = cli.main(["stylize", str(content), "--style", str(style), "--method", "photo", "-q", "-o", str(out),
                     *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_non_numeric_weights(images, capsys):
    content, style = images
    assert cli.main(["stylize", str(content), "--style", str(style), "--style-weight", "lots"]) == 2
    assert capsys.readouterr().err.strip() == "atelier: error: style_weight must be a number, not 'lots'"
    with pytest.raises(SystemExit) as exit_info:  # argparse-typed common options
        cli.main(["stylize", str(content), "--style", str(style), "--style-weights", "lots"])
    assert exit_info.value.code == 2
    assert "invalid float value: 'lots'" in capsys.readouterr().err


def test_existing_output_refused_before_work(images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "exists.png"
    out.write_bytes(b"keep me")
    assert cli.main(["stylize", str(content), "--style", str(style), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"


def test_unknown_output_format(images, tmp_path, capsys):
    content, style = images
    assert cli.main(["stylize", str(content), "--style", str(style), "-o", str(tmp_path / "x.gifx")]) == 2
    assert "unknown image format" in capsys.readouterr().err


def test_corrupt_content_file(images, tmp_path, tiny, capsys):
    _, style = images
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert cli.main(["stylize", str(bad), "--style", str(style), "-o", str(tmp_path / "o.png")]) == 2
    assert "bad.jpg" in capsys.readouterr().err and not (tmp_path / "o.png").exists()


def test_interrupt_writes_best_image_and_exits_130(images, tmp_path, tiny, monkeypatch, capsys):
    import atelier.optim.loop as loop

    content, style = images
    real = loop.optimize_image

    def interrupted(criterion, init, **kwargs):
        calls = {"n": 0}

        def crit(image):
            calls["n"] += 1
            if calls["n"] > 3:
                raise KeyboardInterrupt
            return criterion(image)
        return real(crit, init, **kwargs)

    monkeypatch.setattr(pyramid, "optimize_image", interrupted)
    out = tmp_path / "best.png"
    code = cli.main(["stylize", str(content), "--style", str(style), "--size", "48", "--iterations", "50",
                     "-o", str(out)])
    assert code == 130 and out.exists()
    assert "interrupted" in capsys.readouterr().err


def test_python_m_entry_point():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "atelier", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("atelier ")


@pytest.mark.parametrize("where", ["image", "folder", "save-dir", "proc"])
def test_unwritable_output_refused_before_work(images, tmp_path, tiny, monkeypatch, capsys, where):
    content, style = images
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    source, extra = str(content), ["-o", str(blocker / "out.png")]
    if where == "folder":
        source, extra = str(tmp_path), ["-o", str(blocker / "styled")]
    elif where == "proc":
        extra = ["-o", "/proc/atelier_out.png"]
    elif where == "save-dir":
        extra = ["-o", str(tmp_path / "out.png"), "--save-every", "1", "--save-dir", str(blocker / "steps")]
    calls: list[int] = []
    real = pyramid.optimize_image
    monkeypatch.setattr(pyramid, "optimize_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    code = cli.main(["stylize", source, "--style", str(style), "--size", "40", "--iterations", "1", "-q", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "cannot write" in err and "choose" in err and not calls
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("command", [["methods"], ["models"]])
def test_closed_pipe_exits_quietly(monkeypatch, capsys, command):
    """`atelier methods | head -3`: the reader closes the pipe; no traceback, status 1."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdout", stdout)
    try:
        assert cli.main(command) == 1
        assert capsys.readouterr().err == ""
        print("after the pipe closed", file=stdout)
        stdout.flush()  # stdout now points at devnull: the interpreter's last flush cannot fail
    finally:
        stdout.close()


def test_sigterm_mid_write_leaves_no_part_file(tmp_path):
    """`kill` during a long write (a video) acts as Ctrl-C: the temporary file is removed, status 130."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys, time\n"
        "from atelier import cli\n"
        "from atelier.io.atomic import atomic_path\n"
        "def slow(args):\n"
        "    with atomic_path(sys.argv[1]) as temp:\n"
        "        temp.write_bytes(b'half a video')\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "    return 0\n"
        "cli._models = slow\n"
        "sys.exit(cli.main(['models']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.mp4")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    assert list(tmp_path.iterdir()) == [] and "interrupted" in result.stderr
