"""CycleGAN and U-GAT-IT on the one trainer, their export, and ``atelier translate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import atelier
from atelier.cli import main
from atelier.errors import ImageTooSmallError, OptionError, UnknownNameError, WeightsError
from atelier.nets.gan import ResnetGenerator
from atelier.pipelines.translation import Translator, load_translator, multiple_of_four
from atelier.train import TrainConfig, train
from helpers import smooth_image

CYCLEGAN = {"width": 4, "blocks": 1, "disc_width": 4, "pool_size": 2, "name": "s2w", "domain_a": "summer",
            "domain_b": "winter"}
UGATIT = {"width": 4, "blocks": 1, "disc_width": 4, "global_layers": 4, "local_layers": 3, "light": True,
          "size": 32, "name": "s2w_ugatit"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(folders, tmp_path, task="cyclegan", name="run", **changes) -> TrainConfig:
    content, style = folders
    values = dict(task=task, content=str(content), style=str(style), output=str(tmp_path / name), steps=3,
                  batch_size=2, crop_size=32, lr=2e-4, betas=(0.5, 0.999), schedule="linear", checkpoint_every=0,
                  sample_every=0, eval_content="", precision="fp32",
                  options=dict(CYCLEGAN if task == "cyclegan" else UGATIT))
    values.update(changes)
    return TrainConfig(**values)


def _save(image: torch.Tensor, path) -> str:
    Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory):
    """A 3-step CycleGAN run with samples and evaluation (shared by the inference tests)."""
    from conftest import _write_folder

    root = tmp_path_factory.mktemp("cyclegan")
    content = _write_folder(root / "a", [smooth_image(40, 44, seed=s) for s in range(4)])
    style = _write_folder(root / "b", [smooth_image(36, 40, seed=10 + s) ** 0.3 for s in range(3)])
    cfg = _config((content, style), root, checkpoint_every=2, sample_every=2, sample_count=2,
                  eval_content=str(content), eval_style=str(style), eval_count=2, eval_size=32)
    return cfg, train(cfg, progress=False)


def test_cyclegan_three_steps_export_one_file_with_both_generators(cyclegan_run):
    _, result = cyclegan_run
    assert result.step == 3 and [h["step"] for h in result.history] == [1, 2, 3]
    row = result.history[-1]
    assert {"g_adv", "cycle", "identity", "d_a", "d_b", "loss_generators", "loss_discriminators"} <= set(row)
    assert all(np.isfinite(v) for v in row.values())
    assert [p.name for p in result.exported] == ["s2w.safetensors"]
    with safe_open(str(result.exported[0]), framework="pt") as file:
        header = file.metadata()
        keys = list(file.keys())
        assert all(file.get_tensor(k).dtype == torch.float16 for k in keys)
    assert header["task"] == "cyclegan" and header["width"] == "4" and header["blocks"] == "1"
    assert header["domain_a"] == "summer" and header["domain_b"] == "winter" and header["steps"] == "3"
    assert {k.split(".")[0] for k in keys} == {"a2b", "b2a"}  # generators only, no discriminators
    card = json.loads(result.exported[0].with_suffix(".json").read_text())
    assert card["task"] == "cyclegan" and card["options"]["pool_size"] == 2
    assert 0 < card["metrics"]["eval_cycle_l1_a"] < 1 and "eval_d_b" in card["metrics"]
    state = torch.load(result.output / "checkpoint.pt", weights_only=True)
    assert sorted(state["optimizers"]) == ["discriminators", "generators"]
    assert state["task"]["pool_a.images"].shape == (2, 3, 32, 32)  # full pool: 2 images
    sample = Image.open(result.output / "samples" / "step_000003.png")
    assert sample.size == (36 + 36 + 68, 2 * 36)  # rows: A | B | A->B next to B->A (2 px borders)


def test_the_exported_file_rebuilds_the_trained_generators(cyclegan_run):
    _, result = cyclegan_run
    nets, info = load_translator(str(result.exported[0]))
    assert info["domain_a"] == "summer" and info["task"] == "cyclegan"
    model = torch.load(result.output / "checkpoint.pt", weights_only=True)["model"]
    image = smooth_image(36, 44, seed=5)
    for direction in ("a2b", "b2a"):
        trained = ResnetGenerator(width=4, blocks=1)
        trained.load_state_dict({k[4:]: v for k, v in model.items() if k.startswith(f"{direction}.")})
        with torch.no_grad():
            assert torch.allclose(nets[direction](image), trained.eval()(image), atol=1e-2)
    with torch.no_grad():
        assert not torch.allclose(nets["a2b"](image), nets["b2a"](image), atol=1e-3)


def test_translate_an_image_and_a_folder_from_the_exported_file(cyclegan_run, tmp_path):
    _, result = cyclegan_run
    model = str(result.exported[0])
    photo = _save(smooth_image(37, 53, seed=3), tmp_path / "odd.png")
    out = tmp_path / "winter.png"
    assert main(["translate", photo, "--model", model, "-o", str(out), "-q"]) == 0
    assert Image.open(out).size == (53, 37)  # odd sizes keep their size
    assert main(["translate", photo, "--model", model, "-o", str(out), "-q"]) == 2  # exists
    back = tmp_path / "summer.png"
    assert main(["translate", photo, "--model", model, "--direction", "b2a", "--size", "40", "-o", str(back)]) == 0
    assert Image.open(back).size == (40, 28)
    assert not np.array_equal(np.asarray(Image.open(out).resize((40, 28))), np.asarray(Image.open(back)))
    # The API gives the same image as the CLI wrote.
    api = atelier.translate(photo, model, direction="a2b")
    assert np.abs(np.asarray(api, dtype=int) - np.asarray(Image.open(out), dtype=int)).max() <= 1

    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, (h, w) in enumerate([(33, 41), (48, 40)]):
        _save(smooth_image(h, w, seed=seed), folder / f"p{seed}.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    target = tmp_path / "translated"
    # One unreadable image: the others are written, exit status 2 at the end.
    assert main(["translate", str(folder), "--model", model, "-o", str(target), "-q"]) == 2
    assert sorted(p.name for p in target.iterdir()) == ["p0.png", "p1.png"]
    assert Image.open(target / "p0.png").size == (41, 33)
    assert main(["translate", str(folder), "--model", model, "-o", str(target), "-q"]) == 2  # outputs exist
    (folder / "broken.png").unlink()
    assert main(["translate", str(folder), "--model", model, "-o", str(target), "-q", "--overwrite"]) == 0


def test_translate_a_video_frame_by_frame(cyclegan_run, tmp_path, capsys):
    pytest.importorskip("av")
    from fractions import Fraction

    from atelier.io.video import probe_video, read_frames, write_video

    _, result = cyclegan_run
    model = str(result.exported[0])
    source = tmp_path / "clip.mp4"
    write_video(source, [smooth_image(36, 44, seed=s) for s in range(4)], fps=6)
    output = tmp_path / "winter.mp4"
    assert main(["translate", str(source), "--model", model, "-d", "b2a", "-o", str(output), "-q",
                 "--no-temporal"]) == 0
    info = probe_video(output)
    assert (info.width, info.height, info.fps) == (44, 36, Fraction(6))
    translator = Translator(model)
    # Each output frame is the generator applied to its own input frame (up to H.264 loss, which is
    # large on an untrained GAN's noise: measured 0.045 against a change of 0.18-0.24 by the generator).
    done = list(read_frames(output))
    expected = [translator(frame, "b2a") for frame in read_frames(source)]
    distance = torch.tensor([[float((d - e).abs().mean()) for e in expected] for d in done])
    changes = [float((e - f).abs().mean()) for e, f in zip(expected, read_frames(source))]
    assert distance.shape == (4, 4) and float(distance.diagonal().max()) < 0.4 * min(changes), (distance, changes)
    assert bool((distance.argmin(dim=1) == torch.arange(4)).all()), distance
    assert main(["translate", str(source), "--model", model, "-o", str(output), "-q"]) == 2  # exists
    assert main(["translate", str(source), "--model", model, "-o", str(tmp_path / "x.png")]) == 2
    assert "must be a video" in capsys.readouterr().err
    # The API refuses a bad direction and frames above the pixel limit before writing anything.
    with pytest.raises(OptionError, match="direction"):
        atelier.translate_video(source, model, output=tmp_path / "a.mp4", direction="up")
    with pytest.raises(OptionError, match="above the limit"):
        atelier.translate_video(source, model, output=tmp_path / "b.mp4", max_pixels=1000)
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "b.mp4").exists()


def test_translate_errors_exit_2(cyclegan_run, tmp_path, capsys, monkeypatch):
    _, result = cyclegan_run
    photo = _save(smooth_image(32, 32), tmp_path / "p.png")
    assert main(["translate", photo, "--model", "no_such_model", "-o", str(tmp_path / "a.png")]) == 2
    assert "no trained weights no_such_model.safetensors" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "missing.png"), "--model", str(result.exported[0])]) == 2
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"task": "johnson"})
    assert main(["translate", photo, "--model", str(other), "-o", str(tmp_path / "b.png")]) == 2
    assert "not an image-to-image translation model" in capsys.readouterr().err
    assert main(["translate", photo, "--model", str(result.exported[0]), "-o", str(tmp_path / "c.txt")]) == 2
    with pytest.raises(SystemExit) as bad:
        main(["translate", photo, "--model", "x", "--direction", "sideways"])
    assert bad.value.code == 2
    with pytest.raises(OptionError, match="direction"):
        atelier.translate(photo, str(result.exported[0]), direction="up")
    with pytest.raises(WeightsError):
        Translator(str(tmp_path / "nothing.safetensors")).nets  # noqa: B018
    # A name is looked up in $ATELIER_HOME/weights first.
    import os
    import shutil

    weights = os.path.join(os.environ["ATELIER_HOME"], "weights")
    os.makedirs(weights)
    shutil.copy(result.exported[0], os.path.join(weights, "mine.safetensors"))
    assert main(["translate", photo, "--model", "mine", "-o", str(tmp_path / "d.png"), "-q"]) == 0


def test_multiple_of_four_rounds_like_cyclegan():
    assert multiple_of_four(37, 53) == (36, 52)
    assert multiple_of_four(2, 255) == (4, 256)


def test_cyclegan_resume_reproduces_the_uninterrupted_run(folders, tmp_path, monkeypatch):
    # The pool (size 2, batch 2) is full after step 1 and swaps from step 2 on: the resumed run
    # matches only if the pool, both optimizers and the random state come back.
    from atelier.train.trainer import _Run

    cfg = _config(folders, tmp_path, steps=4, checkpoint_every=2)
    original = _Run.train_step
    calls = {"n": 0}

    def crashing(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash after the step-2 checkpoint")
        return original(self)

    monkeypatch.setattr(_Run, "train_step", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, progress=False)
    monkeypatch.setattr(_Run, "train_step", original)
    resumed = train(cfg, progress=False)
    straight = train(cfg.replace(output=str(tmp_path / "straight")), progress=False)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    for key in ("loss_generators", "loss_discriminators", "d_a", "d_b"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in straight.history], rel=1e-5)


def test_ugatit_light_three_steps_and_translate(folders, tmp_path):
    result = train(_config(folders, tmp_path, "ugatit"), progress=False)
    row = result.history[-1]
    assert {"g_adv", "cycle", "identity", "cam", "d_a", "d_b"} <= set(row)
    assert row["cam"] > 100  # lambda4 = 1000 on the CAM classifier losses
    state = torch.load(result.output / "checkpoint.pt", weights_only=True)["model"]
    rhos = torch.cat([v.flatten() for k, v in state.items() if k.endswith(".rho")])
    assert len(rhos) > 0 and rhos.min() >= 0 and rhos.max() <= 1
    assert any(k.startswith("d_global_a.") for k in state) and any(k.startswith("d_local_b.") for k in state)
    with safe_open(str(result.exported[0]), framework="pt") as file:
        header = file.metadata()
    assert header["task"] == "ugatit" and header["light"] == "true" and header["size"] == "32"
    image = smooth_image(37, 53, seed=1)
    out = atelier.translate(image, str(result.exported[0]), direction="b2a")
    assert out.size == (53, 37)


def test_options_and_data_errors(folders, tmp_path):
    with pytest.raises(UnknownNameError, match="lambda_cycle"):
        train(_config(folders, tmp_path, options={"lambda_cycel": 5}), progress=False)
    with pytest.raises(OptionError, match="pool_size"):
        train(_config(folders, tmp_path, options={"pool_size": -1}), progress=False)
    with pytest.raises(OptionError, match="multiple of 4"):
        train(_config(folders, tmp_path, "ugatit", options={"size": 30}), progress=False)
    with pytest.raises(OptionError, match="needs a 'style' folder"):
        train(_config(folders, tmp_path, style=""), progress=False)
    # The 7-layer global discriminator cannot score 32 px crops: a clear error, not a crash.
    with pytest.raises(ImageTooSmallError, match="at least 96 px"):
        train(_config(folders, tmp_path, "ugatit", options={**UGATIT, "global_layers": 7}), progress=False)


def test_tiny_images_translate_at_their_own_size(cyclegan_run, tmp_path):
    """1x1 to 5x5 inputs run at the network's 8 px minimum and come back at their size."""
    _, result = cyclegan_run
    model = str(result.exported[0])
    for size in [(1, 1), (2, 7), (5, 4)]:
        image = atelier.translate(np.zeros((*size, 3), np.uint8), model)
        assert image.size == size[::-1]
    photo = _save(smooth_image(30, 40), tmp_path / "photo.png")
    assert atelier.translate(photo, model, size=4).size == (4, 3)


def test_translator_refuses_what_does_not_fit_in_atelier_memory_gb_before_running(monkeypatch):
    """The translation pipeline's bound: one line with the budget, and the generator never runs."""
    from atelier.errors import ImageTooLargeError

    net = ResnetGenerator(width=4, blocks=1).eval()
    calls = []
    net.register_forward_pre_hook(lambda *_: calls.append(1))
    translator = Translator("tiny", nets={"a2b": net, "b2a": net})
    monkeypatch.setenv("ATELIER_MEMORY_GB", "0.00001")
    with pytest.raises(ImageTooLargeError) as refused:
        translator(torch.rand(1, 3, 64, 64))
    assert "\n" not in str(refused.value) and "GiB available" in str(refused.value) and not calls
