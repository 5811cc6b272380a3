"""The trainer with several optimizer phases (GANs): order, gradients, checkpoints, resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from atelier.options import MethodConfig, option
from atelier.train import TrainConfig, TrainingError, TrainingInterrupted, train
from atelier.train import task as task_module
from atelier.train.task import Phase, TrainingTask

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class ToyOptions(MethodConfig):
    scale: float = option(1.0, "weight of the first phase's loss")


class TwoPhaseTask(TrainingTask):
    """``first`` maps content towards style through ``second``; ``second`` learns to undo ``first``."""

    name = "two_phase"
    Options = ToyOptions
    needs_encoder = False
    seen: list[tuple[str, bool]] = []  # noqa: RUF012  (a record for the test)

    def __init__(self, options: MethodConfig, *, encoder: Any = None) -> None:
        super().__init__(options, encoder=encoder)
        self.count = torch.zeros(())

    def build_model(self) -> nn.Module:
        return nn.ModuleDict({"first": nn.Conv2d(3, 3, 1), "second": nn.Conv2d(3, 3, 1)})

    def phases(self, model: nn.Module) -> list[Phase]:
        return [Phase("first", list(model["first"].parameters()), self._first),
                Phase("second", list(model["second"].parameters()), self._second, lr_scale=0.5,
                      after_step=lambda: self.seen.append(("after_second", True)))]

    def _first(self, model: nn.Module, content: Tensor, style: Tensor | None, context: dict) -> dict[str, Tensor]:
        assert style is not None
        self.seen.append(("first_second_requires_grad", model["second"].weight.requires_grad))
        out = model["first"](content)
        context["out"] = out.detach()
        return {"match": self.options.scale * (model["second"](out) - style).pow(2).mean()}

    def _second(self, model: nn.Module, content: Tensor, style: Tensor | None, context: dict) -> dict[str, Tensor]:
        self.seen.append(("second_sees_context", "out" in context))
        self.seen.append(("second_grad_at_entry", model["second"].weight.grad is not None))
        self.count += 1
        return {"undo": (model["second"](context["out"]) - content).pow(2).mean()}

    def losses(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        raise AssertionError("a task with phases is trained through them")

    def sample(self, model: nn.Module, content: Tensor, style: Tensor | None) -> Tensor:
        return model["first"](content)

    def export(self, model: nn.Module) -> dict[str, dict[str, Tensor]]:
        return {"toy": model["first"].state_dict()}

    def state_dict(self) -> dict[str, Tensor]:
        return {"count": self.count.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.count = state["count"].clone()


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(task_module._TASKS._classes, "two_phase", TwoPhaseTask)
    TwoPhaseTask.seen = []
    return TwoPhaseTask


def _config(folders, tmp_path, name="run", **changes) -> TrainConfig:
    content, style = folders
    values = dict(task="two_phase", content=str(content), style=str(style), output=str(tmp_path / name), steps=3,
                  batch_size=2, crop_size=16, lr=1e-2, schedule="linear", betas=(0.5, 0.999), checkpoint_every=0,
                  sample_every=0, eval_content="", precision="fp32")
    values.update(changes)
    return TrainConfig(**values)


def test_phases_run_in_order_with_their_own_optimizers(folders, tmp_path, toy):
    result = train(_config(folders, tmp_path), progress=False)
    assert [h["step"] for h in result.history] == [1, 2, 3]
    for row in result.history:
        assert row["loss"] == pytest.approx(row["loss_first"] + row["loss_second"])
        assert row["loss_first"] == row["match"] and row["loss_second"] == row["undo"]
    seen = toy.seen
    # The other phase's parameters are frozen while a phase runs (no gradient for them), the
    # context is shared, after_step runs, and the flags are restored afterwards.
    assert ("first_second_requires_grad", False) in seen and ("first_second_requires_grad", True) not in seen
    assert seen[:4] == [("first_second_requires_grad", False), ("second_sees_context", True),
                        ("second_grad_at_entry", False), ("after_second", True)]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert "optimizer" not in state and sorted(state["optimizers"]) == ["first", "second"]
    assert state["task"]["count"] == 3
    # Each optimizer follows the schedule (linear: at step 3 of 3, (3 - 2) / 1.5 of lr) times its lr_scale.
    assert state["optimizers"]["first"]["param_groups"][0]["lr"] == pytest.approx(1e-2 / 1.5)
    assert state["optimizers"]["second"]["param_groups"][0]["lr"] == pytest.approx(0.5e-2 / 1.5)
    assert state["optimizers"]["first"]["param_groups"][0]["betas"] == (0.5, 0.999)
    model = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert all(v.requires_grad is False for v in model.values())


def test_resume_reproduces_the_uninterrupted_run(folders, tmp_path, toy, monkeypatch):
    import os
    import signal

    cfg = _config(folders, tmp_path, steps=6)
    original = TwoPhaseTask._second
    calls = {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C between the phases of step 4: the step completes, then the run stops
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(TwoPhaseTask, "_second", interrupting)
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in a background job
    with pytest.raises(TrainingInterrupted) as stop:
        train(cfg, progress=False)
    assert stop.value.step == 4 and calls["n"] == 4
    assert signal.getsignal(signal.SIGINT) is handler_before
    monkeypatch.setattr(TwoPhaseTask, "_second", original)
    resumed = train(cfg, progress=False)
    straight = train(cfg.replace(output=str(tmp_path / "straight")), progress=False)
    assert [h["step"] for h in resumed.history] == list(range(1, 7))
    for key in ("loss", "match", "undo"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in straight.history], rel=1e-6)
    resumed_state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    straight_state = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert resumed_state["task"]["count"] == straight_state["task"]["count"] == 6
    for name in ("first", "second"):
        a, b = resumed_state["optimizers"][name]["state"], straight_state["optimizers"][name]["state"]
        assert all(torch.allclose(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)


def test_a_single_optimizer_checkpoint_cannot_resume_a_phased_task(folders, tmp_path, toy):
    cfg = _config(folders, tmp_path, steps=1, checkpoint_every=1)
    train(cfg, progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["optimizer"] = state.pop("optimizers")["first"]
    torch.save(state, path)
    with pytest.raises(TrainingError, match="does not fit"):
        train(cfg.replace(steps=2), progress=False)


def test_a_diverging_phase_is_named(folders, tmp_path, toy):
    with pytest.raises(TrainingError, match="phase 'first' became"):
        train(_config(folders, tmp_path, options={"scale": 1e39}), progress=False)


def test_single_optimizer_checkpoints_have_one_layout_and_old_ones_resume(folders, tmp_path):
    from atelier.encoders import random_vgg19

    content, _ = folders
    encoder = random_vgg19(widths=(4, 4, 4, 4, 4))
    cfg = TrainConfig(task="wct", content=str(content), output=str(tmp_path / "wct"), steps=1, batch_size=1,
                      crop_size=32, sample_every=0, eval_content="", options={"layers": ["relu1_1"]})
    train(cfg, encoder=encoder, progress=False)
    path = tmp_path / "wct" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    assert sorted(state["optimizers"]) == ["model"] and "optimizer" not in state and "task" not in state
    # A checkpoint written before tasks had phases (one "optimizer" entry) still resumes.
    state["optimizer"] = state.pop("optimizers")["model"]
    torch.save(state, path)
    train(cfg.replace(steps=2), encoder=encoder, progress=False)
    assert torch.load(path, weights_only=True)["step"] == 2
