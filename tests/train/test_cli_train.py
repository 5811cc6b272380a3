"""`atelier train` and `atelier models` through the CLI entry point."""

from __future__ import annotations

import json

import pytest
import yaml

from atelier import cli
from atelier.encoders import random_vgg19
from atelier.train import task as task_module


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(task_module, "load_vgg19", lambda *a, **k: random_vgg19())


def _config(tmp_path, folders, **changes):
    content, style = folders
    values = {"task": "adain", "content": str(content), "style": str(style), "output": str(tmp_path / "run"),
              "steps": 2, "batch_size": 2, "crop_size": 32, "sample_every": 0, "checkpoint_every": 0}
    values.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_train_then_list_and_use_the_model(tmp_path, folders, tiny, monkeypatch, capsys):
    path = _config(tmp_path, folders)
    assert cli.main(["train", str(path), "--quiet", "--set", "lr=0.001", "--steps", "3"]) == 0
    card = json.loads((tmp_path / "run" / "adain_decoder.json").read_text())
    assert card["training"]["steps"] == 3 and card["training"]["config"]["lr"] == 0.001
    # A trained file in $ATELIER_HOME/weights is what `atelier models` lists and adain loads.
    from atelier.encoders.weights import atelier_home

    weights = atelier_home() / "weights"
    weights.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        (weights / f"adain_decoder{suffix}").write_bytes((tmp_path / "run" / f"adain_decoder{suffix}").read_bytes())
    capsys.readouterr()
    assert cli.main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "adain_decoder" in listing and "3 steps" in listing and "user:" in listing
    from atelier.pipelines import base

    monkeypatch.setattr(base, "load_vgg19", lambda *a, **k: random_vgg19())
    content, style = folders
    output = tmp_path / "styled.png"
    assert cli.main(["stylize", str(content / "img0.jpg"), "--style", str(style / "img0.jpg"), "--method", "adain",
                     "--size", "32", "--alpha", "0.5", "-o", str(output), "--quiet"]) == 0
    assert output.is_file()


@pytest.mark.parametrize("args, message", [
    (["--set", "batch_size"], "KEY=VALUE"),
    (["--set", "batchsize=4"], "did you mean batch_size"),
    (["--steps", "0"], "steps must be"),
    (["--set", "content=/nonexistent/folder"], "no such folder"),
    (["--set", "lr=.nan"], "lr must be a finite number, got nan"),
    (["--set", "crop_scale=[abc, 1]"], "crop_scale must be a finite number, got 'abc'"),
    (["--set", "crop_scale=[0.1, 0.5, 1]"], "crop_scale must be a list of two numbers"),
    (["--set", "betas=[0.9]"], "betas must be a list of two numbers"),
    (["--set", "betas=[1.5, 0.9]"], "betas must be two numbers in [0, 1)"),
    (["--set", "seed=abc"], "seed must be a whole number"),
    (["--set", "seed=99999999999999999999999"], "seed 99999999999999999999999 is out of range"),
    (["--set", "content=5"], "content must be text"),
    (["--set", "task=7"], "task must be text"),
    (["--set", "flip=maybe"], "flip must be true or false, not 'maybe'"),
    (["--set", "crop_size=["], "not valid YAML"),
    (["--set", "options=[1]"], "options must be a mapping"),
])
def test_train_errors_exit_2_with_one_line(tmp_path, folders, tiny, capsys, args, message):
    path = _config(tmp_path, folders)
    assert cli.main(["train", str(path), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def test_interrupted_training_exits_130_and_says_how_to_resume(tmp_path, folders, tiny, monkeypatch, capsys):
    from atelier.train import trainer

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer._Run, "train_step", interrupt)
    assert cli.main(["train", str(_config(tmp_path, folders)), "--quiet"]) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_unwritable_training_output_refused_before_work(tmp_path, folders, tiny, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    path = _config(tmp_path, folders, output=str(blocker / "run"))
    assert cli.main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the training output" in err[0], err


def test_checkpoint_pickle_with_objects_is_one_line(tmp_path, folders, tiny, capsys):
    from fractions import Fraction

    import torch

    path = _config(tmp_path, folders)
    (tmp_path / "run").mkdir()
    torch.save({"config": {"task": "adain"}, "lr": Fraction(1, 2)}, tmp_path / "run" / "checkpoint.pt")
    assert cli.main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Python objects besides tensors" in err[0] and "--fresh" in err[0], err


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path, folders):
    from atelier.train.config import load_config

    path = _config(tmp_path, folders)
    assert load_config(path, {"lr": "1e-4", "flip": False}).lr == 1e-4  # PyYAML reads 1e-4 as text
