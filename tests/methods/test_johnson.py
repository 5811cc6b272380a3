from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import atelier
from atelier.cli import main
from atelier.errors import OptionError, WeightsError
from atelier.methods.johnson import Johnson, JohnsonTraining, JohnsonTrainingOptions, load_transformer
from atelier.nets.transformer import TransformerNet
from atelier.train import TrainConfig, train
from helpers import export_transformer, smooth_image, stripes_image


def _save(image: torch.Tensor, path) -> str:
    Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def style_files(tmp_path):
    return [_save(stripes_image(48, 48, period=p), tmp_path / f"style{p}.png") for p in (4, 7, 10)]


def _config(folders, tmp_path, styles, name="run", **changes):
    content, _ = folders
    values = dict(task="johnson", content=str(content), output=str(tmp_path / name), steps=5, batch_size=2,
                  crop_size=32, lr=1e-2, schedule="constant", checkpoint_every=0, sample_every=0,
                  eval_content="", options={"styles": styles, "width": 4, "blocks": 1, "style_size": 48})
    values.update(changes)
    return TrainConfig(**values)


def _fixed_loss(task: JohnsonTraining, model: torch.nn.Module, content: torch.Tensor) -> float:
    with torch.no_grad():
        return sum(task.evaluate(model, content, None).values())


def test_five_steps_lower_the_loss_on_held_out_crops(folders, tmp_path, tiny_encoder, style_files):
    cfg = _config(folders, tmp_path, style_files[:1])
    task = JohnsonTraining(JohnsonTrainingOptions.from_dict(cfg.options), encoder=tiny_encoder)
    torch.manual_seed(cfg.seed)  # the trainer seeds before building: same initial weights
    initial = task.build_model().eval()
    result = train(cfg, encoder=tiny_encoder, progress=False)
    trained, info = load_transformer(str(result.exported[0]))
    content = torch.stack([smooth_image(32, 32, seed=s)[0] for s in (10, 11, 12)])
    before, after = _fixed_loss(task, initial, content), _fixed_loss(task, trained.float(), content)
    assert after < 0.8 * before, (before, after)
    assert info["style_names"] == ["style4"] and result.exported[0].stem == "style4"


def test_multi_style_resume_continues_where_it_stopped(folders, tmp_path, tiny_encoder, style_files):
    cfg = _config(folders, tmp_path, style_files[:2], steps=3, checkpoint_every=3)
    train(cfg, encoder=tiny_encoder, progress=False)
    resumed = train(cfg.replace(steps=5), encoder=tiny_encoder, progress=False)
    straight = train(cfg.replace(steps=5, output=str(tmp_path / "straight")), encoder=tiny_encoder, progress=False)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    with safe_open(str(resumed.exported[0]), framework="pt") as file:
        header = file.metadata()
    assert resumed.exported[0].stem == "cin2" and header["styles"] == "2" and header["task"] == "johnson"


def test_adding_a_style_trains_only_its_gamma_beta(folders, tmp_path, tiny_encoder, style_files):
    base = train(_config(folders, tmp_path, style_files[:2], name="base", steps=2), encoder=tiny_encoder,
                 progress=False).exported[0]
    options = {"styles": style_files[2:], "style_names": ["third"], "base": str(base), "style_size": 48,
               "name": "extended"}
    extended = train(_config(folders, tmp_path, [], name="more", steps=3, options=options),
                     encoder=tiny_encoder, progress=False).exported[0]
    old, _ = load_transformer(str(base))
    new, info = load_transformer(str(extended))
    assert new.styles == 3 and info["style_names"] == ["style4", "style7", "third"]
    old_state, new_state = old.state_dict(), new.state_dict()
    for key, value in new_state.items():
        if key.endswith(("norm.weight", "norm.bias")):
            torch.testing.assert_close(value[:2], old_state[key])  # the base styles are untouched
        else:
            torch.testing.assert_close(value, old_state[key])  # frozen convolutions
    moved = [float((new_state[k][2] - old_state[k].mean(0)).abs().max()) for k in new_state if k.endswith("norm.bias")]
    assert max(moved) > 1e-4  # the new style's beta was trained away from its start


def test_training_options_are_checked():
    with pytest.raises(OptionError, match="at least one style"):
        JohnsonTrainingOptions.from_dict({})
    with pytest.raises(OptionError, match="one per style"):
        JohnsonTrainingOptions.from_dict({"styles": ["a.png", "b.png"], "style_names": ["a"]})


# -- inference ------------------------------------------------------------------------------------
@pytest.fixture
def cin_net():
    torch.manual_seed(3)
    net = TransformerNet(width=4, blocks=1, styles=2)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith(("norm.weight", "norm.bias")):
                parameter.add_(torch.randn(parameter.shape) * 0.5)
    return net.eval()


def test_api_normalises_blend_weights_over_the_models_styles(cin_net):
    content = smooth_image(40, 48)
    image = atelier.stylize(content, None, Johnson(network=cin_net, precision="fp32"), style_weights=[3, 1],
                            size=None, progress=False)
    with torch.no_grad():
        expected = cin_net(content, torch.tensor([0.75, 0.25]))
    got = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert float((got - expected[0]).abs().max()) <= 1 / 255 + 1e-6


def test_api_rejects_style_images_and_wrong_weight_counts(cin_net):
    content = smooth_image(40, 48)
    method = Johnson(network=cin_net)
    with pytest.raises(OptionError, match="drop --style"):
        atelier.stylize(content, stripes_image(), method, progress=False)
    with pytest.raises(OptionError, match="for 2 style"):
        atelier.stylize(content, None, method, style_weights=[1, 1, 1], progress=False)
    with pytest.raises(OptionError, match="histogram"):
        atelier.stylize(content, None, method, style_weights=[1, 0], preserve_color="histogram", progress=False)
    with pytest.raises(OptionError, match="needs at least one style image"):
        atelier.stylize(content, None, "adain", progress=False)


def test_masks_place_the_models_styles(cin_net):
    content = smooth_image(48, 64)
    left = torch.zeros(48, 64)
    left[:, :32] = 1
    image = atelier.stylize(content, None, Johnson(network=cin_net, precision="fp32"), masks=[left, 1 - left],
                            size=None, progress=False)
    got = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255
    with torch.no_grad():
        first, second = cin_net(content, [1.0, 0.0]), cin_net(content, [0.0, 1.0])
    def distance(a, b, columns):
        return float((a[..., columns] - b[..., columns]).abs().mean())

    left_cols, right_cols = slice(0, 8), slice(-8, None)
    assert distance(got, first, left_cols) < distance(got, second, left_cols)
    assert distance(got, second, right_cols) < distance(got, first, right_cols)


def test_cli_model_file_folder_and_errors(cin_net, tmp_path, capsys):
    model = export_transformer(cin_net, tmp_path / "duo.safetensors", ["warm", "cold"])
    photo = _save(smooth_image(36, 52), tmp_path / "photo.png")
    assert main(["stylize", photo, "--model", model, "--style-weights", "1", "1", "--size", "52",
                 "-o", str(tmp_path / "a.png"),
                 "-q"]) == 0
    assert Image.open(tmp_path / "a.png").size == (52, 36)
    assert main(["stylize", photo, "--model", model, "--style", photo, "-o", str(tmp_path / "b.png")]) == 2
    assert "drop --style" in capsys.readouterr().err
    assert main(["stylize", photo, "--model", model, "--style-weights", "1", "-o", str(tmp_path / "c.png")]) == 2
    assert "1 style weight(s) for 2 style(s)" in capsys.readouterr().err
    # A folder: every readable image, one unreadable reported, exit status 2 at the end.
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        _save(smooth_image(30, 40, seed=i), folder / f"p{i}.jpg")
    (folder / "broken.png").write_bytes(b"no image")
    out = tmp_path / "styled"
    assert main(["stylize", str(folder), "--model", model, "--style-weights", "0", "1", "-o", str(out), "-q"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    assert "skipped" in capsys.readouterr().err
    assert main(["stylize", str(folder), "--model", model, "--style-weights", "0", "1", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    # A bad style image stops a folder run before any image is written, in one line.
    assert main(["stylize", str(folder), "--style", str(tmp_path / "missing.png"), "--method", "adain",
                 "-o", str(tmp_path / "none")]) == 2
    assert "missing.png" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_models_lists_user_networks_with_their_styles(cin_net, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("ATELIER_HOME", str(home))
    export_transformer(cin_net, home / "weights" / "duo.safetensors", ["warm", "cold"])
    (home / "weights" / "duo.json").write_text(json.dumps({"name": "duo", "task": "johnson",
                                                           "header": {"style_names": '["warm", "cold"]'}}))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "--model duo" in out and "warm, cold" in out
    net, info = load_transformer("duo")
    assert net.styles == 2 and info["style_names"] == ["warm", "cold"]


def test_unknown_or_foreign_model_files_fail_clearly(tmp_path):
    with pytest.raises(WeightsError, match="no trained weights"):
        load_transformer("no_such_style")
    with pytest.raises(OptionError, match="give a trained model"):
        load_transformer("")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"task": "adain"})
    with pytest.raises(WeightsError, match="not a per-style transformer"):
        load_transformer(str(tmp_path / "other.safetensors"))


def test_onnxruntime_backend_matches_torch_and_caches_its_graph(cin_net, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    content = smooth_image(37, 51)  # not a multiple of 4: padding and cropping around the graph
    onnx = Johnson(network=cin_net, backend="onnxruntime")
    result = onnx.stylize(content, [], style_weights=[0.3, 0.7])
    expected = Johnson(network=cin_net, backend="torch", precision="fp32").stylize(content, [],
                                                                                 style_weights=[0.3, 0.7])
    assert result.info["backend"] == "onnxruntime" and expected.info["backend"] == "torch"
    assert result.image.shape == content.shape
    torch.testing.assert_close(result.image, expected.image, atol=1e-4, rtol=0)
    cached = list((tmp_path / "home" / "cache" / "onnx").glob("transformer-*.onnx"))
    assert len(cached) == 1
    # A second method object reuses the cached graph (no export) and gives the same image.
    again = Johnson(network=cin_net, backend="onnxruntime").stylize(content, [], style_weights=[0.3, 0.7])
    torch.testing.assert_close(again.image, result.image)
    # Per-pixel style maps are a torch-only feature: auto picks torch for them.
    masks = torch.ones(1, 2, 37, 51) / 2
    assert Johnson(network=cin_net).stylize(content, [], style_weights=[0.5, 0.5],
                                            masks=masks).info["backend"] == "torch"
    with pytest.raises(OptionError, match="runs on the CPU"):
        Johnson(network=cin_net, backend="onnxruntime").backend(torch.device("cuda"), spatial=False)


def test_content_below_the_networks_minimum_is_one_line(cin_net, tmp_path, capsys):
    model = export_transformer(cin_net, tmp_path / "duo.safetensors", ["warm", "cold"])
    photo = _save(smooth_image(36, 52), tmp_path / "photo.png")
    out = tmp_path / "tiny.png"
    assert main(["stylize", photo, "--model", model, "--size", "1", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 5 px" in err[0] and not out.exists()
    assert main(["stylize", photo, "--model", model, "--size", "8", "-o", str(out), "-q"]) == 0  # 8x6 runs


def test_weights_that_load_but_are_wrong_fail_in_one_line(cin_net, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    model = export_transformer(cin_net, tmp_path / "duo.safetensors", ["warm", "cold"])
    photo = _save(smooth_image(36, 52), tmp_path / "photo.png")
    # Another network's tensors under this header: every layer mismatches, one line says so.
    other = export_transformer(TransformerNet(width=6, blocks=1, styles=2), tmp_path / "six.safetensors", ["a", "b"])
    with safe_open(model, framework="pt") as file:
        header = file.metadata()
    save_file(load_file(other), str(tmp_path / "wrong.safetensors"), metadata=header)
    # NaN weights (a diverged training) would give a black image.
    state = load_file(model)
    state[next(iter(state))].fill_(float("nan"))
    save_file(state, str(tmp_path / "nan.safetensors"), metadata=header)
    for name, message in (("wrong", "size mismatch for"), ("nan", "NaN or infinite")):
        out = tmp_path / f"{name}.png"
        assert main(["stylize", photo, "--model", str(tmp_path / f"{name}.safetensors"), "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and not out.exists(), err
    with pytest.raises(WeightsError, match="NaN"):
        load_transformer(str(tmp_path / "nan.safetensors"))


@pytest.mark.parametrize("card", ["null", "[1, 2]", '{"name": 5, "training": "lots", "bytes": "big"}',
                                  '{"task": "johnson", "header": {"style_names": "[oops"}}',
                                  '{"header": {"style_names": "[1, 2]"}}', "{not json"])
def test_models_tolerates_a_malformed_user_card(cin_net, tmp_path, monkeypatch, capsys, card):
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("ATELIER_HOME", str(home))
    export_transformer(cin_net, home / "weights" / "duo.safetensors", ["warm", "cold"])
    (home / "weights" / "duo.json").write_text(card)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "duo " in out and "wave" in out  # the file is listed, and so are the shipped ones
    assert "note: duo.json:" in out


@pytest.mark.parametrize("home", ["file", "under_a_file"])
def test_onnxruntime_backend_skips_an_unwritable_cache_with_a_warning(cin_net, tmp_path, monkeypatch, home):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    blocker = tmp_path / "home"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("ATELIER_HOME", str(blocker if home == "file" else blocker / "inner"))
    content = smooth_image(20, 24)
    with pytest.warns(RuntimeWarning, match="cannot cache the ONNX graph"):
        result = Johnson(network=cin_net, backend="onnxruntime").stylize(content, [], style_weights=[0.5, 0.5])
    assert result.info["backend"] == "onnxruntime" and result.image.shape == content.shape
