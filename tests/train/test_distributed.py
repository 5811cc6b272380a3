"""Data-parallel training: 2 CPU processes under torchrun (gloo) take the steps 1 process takes.

Tolerance: the two processes each average the loss and gradients of half the global batch,
then average those; one process averages over the whole batch. The results differ only in
float32 summation order, far below 1e-4 relative after 2 Adam steps (measured for AdaIN: 3e-8 at
step 1, 3e-7 at step 2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from atelier import cli
from atelier.encoders import random_vgg19
from atelier.errors import OptionError
from atelier.train import TrainConfig, train
from atelier.train.distributed import World, launch_command

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[2] / "src"
TOLERANCE = 1e-4
CYCLEGAN = {"width": 4, "blocks": 1, "disc_width": 4, "pool_size": 0, "name": "s2w"}

#: Each process trains every config it is given; rank 0 writes the histories. The script joins the
#: process group itself, so that the trainer keeps it between the runs (it ends only groups it began),
#: and so it ends the group itself: a process leaving with a live gloo group can abort at interpreter
#: exit ("terminate called without an active exception", pytorch#190489), which CI hit once.
SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
torch.distributed.init_process_group("gloo")
from atelier.encoders import random_vgg19
from atelier.train import TrainConfig, train
histories = {}
for name, values in json.loads(sys.argv[1]).items():
    result = train(TrainConfig(**values), encoder=random_vgg19(), progress=False)
    histories[name] = {"history": result.history, "exported": [str(p) for p in result.exported]}
if os.environ["RANK"] == "0":
    open(sys.argv[2], "w").write(json.dumps(histories))
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""


def _configs(folders, tmp_path, folder):
    content, style = folders
    common = dict(content=str(content), style=str(style), steps=2, batch_size=4, crop_size=32, sample_every=0,
                  checkpoint_every=0, eval_content="", precision="fp32", device="cpu")
    return {
        "adain": dict(common, task="adain", output=str(tmp_path / folder / "adain")),
        "cyclegan": dict(common, task="cyclegan", output=str(tmp_path / folder / "cyclegan"), lr=2e-4,
                         betas=(0.5, 0.999), options=CYCLEGAN),
        # A per-style network (its one style image is in the options, not a folder).
        "johnson": dict(common, task="johnson", style="", output=str(tmp_path / folder / "johnson"), lr=1e-2,
                        options={"styles": [str(style / "img0.jpg")], "width": 4, "blocks": 1, "style_size": 48}),
    }


def _losses(history):
    return [{k: v for k, v in step.items() if k != "step"} for step in history]


def test_two_processes_match_one_and_resume_under_one(folders, tmp_path):
    configs = _configs(folders, tmp_path, "two")
    script = tmp_path / "train_two.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
               json.dumps(configs), str(tmp_path / "histories.json")]
    # Its own session, so that a hang kills torchrun's workers too, not only torchrun.
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        _, stderr = child.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise
    assert child.returncode == 0, stderr[-3000:]
    two = json.loads((tmp_path / "histories.json").read_text())
    encoder = random_vgg19()
    for name, values in _configs(folders, tmp_path, "one").items():
        one = train(TrainConfig(**values), encoder=encoder, progress=False)
        assert len(two[name]["history"]) == 2 and len(two[name]["exported"]) == 1  # rank 0 exports, once
        for a, b in zip(_losses(two[name]["history"]), _losses(one.history)):
            assert a.keys() == b.keys()
            assert list(a.values()) == pytest.approx(list(b.values()), rel=TOLERANCE), name
        # The 2-process checkpoint resumes in 1 process exactly where a 1-process run goes on.
        resumed = train(TrainConfig(**configs[name]).replace(steps=3), encoder=encoder, progress=False)
        straight = train(TrainConfig(**values).replace(steps=3), encoder=encoder, progress=False)
        assert resumed.history[-1]["step"] == 3
        assert list(_losses(resumed.history)[-1].values()) == pytest.approx(
            list(_losses(straight.history)[-1].values()), rel=TOLERANCE), name


def test_world_shards_the_global_batch_and_refuses_an_uneven_one():
    import torch

    batch = torch.arange(8).view(8, 1)
    assert World(rank=1, size=2).shard(batch).flatten().tolist() == [4, 5, 6, 7]
    assert World().shard(batch) is batch and World(rank=2, size=4).shard(None) is None
    with pytest.raises(OptionError, match="multiple of 3"):
        World(rank=0, size=3).check_batch(4)


def test_nproc_runs_the_same_command_under_torchrun(tmp_path, monkeypatch):
    calls = []
    distributed = sys.modules["atelier.train.distributed"]  # (atelier.train is the train function)
    monkeypatch.setattr(distributed, "launch", lambda n, args: calls.append(launch_command(n, args)) or 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = tmp_path / "c.yaml"
    assert cli.main(["train", str(config), "--nproc", "2", "--steps", "5", "--set", "batch_size=4", "--quiet"]) == 0
    assert calls == [launch_command(2, [str(config), "--set=batch_size=4", "--steps=5", "--quiet"])]
    assert calls[0][1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["train", str(config), "--nproc", "2"]) == 2
