"""``atelier batch`` end to end on tiny random networks: outputs, manifest, resume, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atelier import cli
from atelier.batch import BatchInterrupted, Manifest, MethodSpec, run_batch, worker
from atelier.encoders import random_vgg19
from atelier.methods import get_method
from atelier.nets import VGGDecoder
from helpers import smooth_image, stripes_image

SRC = Path(__file__).resolve().parents[2] / "src"


def tiny_spec() -> MethodSpec:
    """AdaIN with a narrow random encoder and a random decoder whose outputs are not clamped flat."""
    encoder = random_vgg19()
    torch.manual_seed(0)
    decoder = VGGDecoder("relu4_1", widths=encoder.widths)
    with torch.no_grad():
        last = decoder.stages.to_rgb[1]
        last.weight.mul_(10 / (last.weight.abs().sum((1, 2, 3), keepdim=True) * 4))
        last.bias.fill_(0.5)
    return MethodSpec("adain", {"precision": "fp32"}, {"encoder": encoder, "decoders": {"relu4_1": decoder}})


def _save(tensor, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path):
    """8 contents in two folders (two sizes) and 3 styles."""
    contents, styles = tmp_path / "in", tmp_path / "styles"
    for i in range(8):
        _save(smooth_image(40 if i % 2 else 48, 56, seed=i), contents / ("deep" if i > 4 else ".") / f"c{i}.png")
    for p in (4, 6, 8):
        _save(stripes_image(40, 40, period=p), styles / f"s{p}.png")
    return contents, styles


def _outputs(folder):
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p), dtype=np.int16)
            for p in folder.rglob("*.png")}


def _run(tree, out, **kwargs):
    contents, styles = tree
    options = dict(size=None, progress=False, batch_size=4) | kwargs
    return run_batch(contents, out, styles, tiny_spec(), **options)


def test_batched_network_call_matches_one_image_at_a_time(one_thread):
    method = tiny_spec().build()
    contents = torch.cat([smooth_image(40, 48, seed=s) for s in range(3)])
    styles = [stripes_image(40, 40, period=p) for p in (4, 6, 4)]
    batched = method.stylize_batch(contents, styles)
    single = torch.cat([method.stylize(contents[i : i + 1], [styles[i]], style_weights=[1.0], progress=False).image
                        for i in range(3)])
    assert batched.shape == (3, 3, 40, 48) and batched.std() > 1e-2
    assert torch.allclose(batched, single, atol=1e-5)


def _check_same_run(tree, tmp_path, other):
    """A one-worker run, then ``other`` (another engine or worker count): same pairs, same pixels."""
    one = _run(tree, tmp_path / "one", workers=1, seed=5)
    assert (one.planned, one.done, one.failed, one.skipped) == (8, 8, 0, 0)
    records = list(Manifest(tmp_path / "one").records())
    assert sorted(r["output"] for r in records) == sorted(_outputs(tmp_path / "one"))
    assert "deep/c7.png" in _outputs(tmp_path / "one")
    assert {k for r in records for k in r} == {"input", "style", "options", "output", "seconds", "status"}
    assert all(r["options"] == {"method": "adain", "precision": "fp32", "size": None} for r in records)
    two = other(tmp_path / "two")
    assert two.done == 8
    pairs = {r["input"]: r["style"] for r in Manifest(tmp_path / "two").records()}
    assert pairs == {r["input"]: r["style"] for r in records}
    first, second = _outputs(tmp_path / "one"), _outputs(tmp_path / "two")
    assert first.keys() == second.keys()
    # Other batch compositions may round a pixel the other way, no more.
    assert max(int(np.abs(first[k] - second[k]).max()) for k in first) <= 1


def test_mirrored_tree_manifest_and_same_outputs_whatever_the_batch_size(tree, tmp_path, one_thread):
    _check_same_run(tree, tmp_path, lambda out: _run(tree, out, workers=1, seed=5, batch_size=3))


@pytest.mark.slow  # spawns two processes that import torch: ~15 s on a busy 2-core machine
def test_two_worker_processes_make_the_same_outputs(tree, tmp_path, one_thread):
    _check_same_run(tree, tmp_path, lambda out: _run(tree, out, workers=2, seed=5, batch_size=3))


def test_a_rerun_skips_what_is_done_and_retries_failures(tree, tmp_path, one_thread):
    contents, _ = tree
    (contents / "broken.jpg").write_bytes(b"not an image")
    first = _run(tree, tmp_path / "out", workers=1)
    assert (first.done, first.failed) == (8, 1)
    failed = [r for r in Manifest(tmp_path / "out").records() if r["status"] == "failed"]
    assert failed[0]["input"] == "broken.jpg" and "not a readable image" in failed[0]["error"]
    assert "\n" not in failed[0]["error"]
    again = _run(tree, tmp_path / "out", workers=1)
    assert (again.skipped, again.done, again.failed) == (8, 0, 1)
    other_options = _run(tree, tmp_path / "out", workers=1, size=32)
    assert other_options.done == 8  # another size: the old outputs do not count


def test_ctrl_c_records_what_finished_and_the_rerun_does_the_rest(tree, tmp_path, monkeypatch, one_thread):
    original = worker.Worker.__call__
    calls = {"n": 0}

    def interrupted_on_third_chunk(self, jobs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, jobs)

    monkeypatch.setattr(worker.Worker, "__call__", interrupted_on_third_chunk)
    with pytest.raises(BatchInterrupted) as stop:
        _run(tree, tmp_path / "out", workers=1, batch_size=1)  # chunks of 2
    assert stop.value.result.done == 4 == len(list(Manifest(tmp_path / "out").records()))
    monkeypatch.setattr(worker.Worker, "__call__", original)
    rest = _run(tree, tmp_path / "out", workers=1)
    assert (rest.skipped, rest.done) == (4, 4)


KILLED_RUN = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from test_run import tiny_spec
from atelier.batch import run_batch
from atelier.nets import VGGDecoder
spec = tiny_spec()
decoder = spec.method_kwargs["decoders"]["relu4_1"]
forward = decoder.forward
def slow(*args, **kwargs):
    time.sleep(0.15)
    return forward(*args, **kwargs)
decoder.forward = slow
torch.set_num_threads(1)
run_batch({contents!r}, {out!r}, {styles!r}, spec, size=None, progress=False, batch_size=1, workers=1)
"""


def test_killed_mid_way_then_rerun_nothing_done_twice_or_lost(tree, tmp_path, one_thread):
    contents, styles = tree
    out = tmp_path / "out"
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), contents=str(contents), out=str(out),
                             styles=str(styles))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parents[1])])}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    manifest = Manifest(out)
    deadline = time.monotonic() + 60
    while len(list(manifest.records())) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = {r["output"] for r in manifest.records()}
    assert 3 <= len(before) < 8, child.stderr.read().decode()[-2000:] if child.stderr else ""
    rest = _run(tree, out, workers=1)
    after = [r["output"] for r in manifest.records()]
    assert rest.skipped == len(before) and rest.done == 8 - len(before)
    assert len(after) == len(set(after)) == 8  # each image recorded (and made) once
    assert sorted(after) == sorted(_outputs(out))


def test_cli_batch_exit_status_and_rerun(tree, tmp_path, monkeypatch, capsys, one_thread):
    contents, styles = tree
    networks = tiny_spec().method_kwargs
    monkeypatch.setattr(MethodSpec, "build", lambda self: get_method(self.name)(**self.options, **networks))
    (contents / "broken.jpg").write_bytes(b"not an image")
    argv = ["batch", str(contents), "-o", str(tmp_path / "out"), "--styles", str(styles), "--workers", "1",
            "--size", "32", "--precision", "fp32", "--format", "jpg", "--style-per-image", "cycle"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of 9 images failed" in err and "manifest.jsonl" in err
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == 8
    (contents / "broken.jpg").unlink()
    assert cli.main([*argv, "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_refuses_bad_options_in_one_line(tree, tmp_path, capsys):
    contents, styles = tree
    cases = [
        (["--styles", str(tmp_path / "none")], "no such folder"),
        (["--styles", str(styles), "--engine", "local", "--address", "ray://h:1"], "--engine ray"),
        (["--styles", str(styles), "--alpha", "2"], "alpha"),
        (["--styles", str(styles), "--method", "adian"], "did you mean"),
        (["--styles", str(styles), "--method", "johnson"], "holds its own styles"),
    ]
    for extra, message in cases:
        status = cli.main(["batch", str(contents), "-o", str(tmp_path / "out"), "-q", *extra])
        err = capsys.readouterr().err.strip()
        assert status == 2 and message in err and len(err.splitlines()) == 1, (extra, err)
    assert not (tmp_path / "out").exists()


# -- the Ray engine ------------------------------------------------------------------------------
def _ray():
    return pytest.importorskip("ray", reason="Ray is not installed here (pip install 'atelier[ray]'; the dev extra "
                                             "includes it)")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on 127.0.0.1 with two CPUs, shut down after the module."""
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


# Starting a local Ray takes ~10 s on 2 idle cores (30 s on a busy machine): the one Ray test of the default run.
def test_ray_actors_make_the_same_pairs_and_pixels_as_a_local_run(tree, tmp_path, local_ray):
    _check_same_run(tree, tmp_path, lambda out: _run(tree, out, engine="ray", workers=2, seed=5, batch_size=3))
    again = _run(tree, tmp_path / "two", engine="ray", workers=2, seed=5)
    assert (again.skipped, again.done) == (8, 0)

