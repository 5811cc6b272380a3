"""Style-aware content loss (Sanakoyeu et al. 2018): losses, generator, training, export, stylize."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from atelier.api import stylize_tensor
from atelier.cli import main
from atelier.errors import WeightsError
from atelier.methods.style_aware import (
    StyleAware,
    StyleAwareOptions,
    StyleAwareTraining,
    load_generator,
    style_aware_content_loss,
    transformed_image_loss,
)
from atelier.nets.style_aware import StyleAwareGenerator
from atelier.train import TrainConfig, train
from conftest import _write_folder
from helpers import smooth_image, stripes_image

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 2, "blocks": 1, "disc_width": 2, "name": "genre", "collection": "stripes"}


@pytest.mark.parametrize("size", [(61, 47), (16, 16), (5, 9), (33, 100)])
def test_generator_keeps_any_size(size):
    net = StyleAwareGenerator(width=2, blocks=1)
    out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size) and 0 <= out.min() and out.max() <= 1
    assert net.encode(torch.rand(1, 3, *size)).shape[1] == 16  # 8 x width at 1/16


def test_style_aware_content_loss_is_zero_for_an_identity_generator():
    task = StyleAwareTraining(StyleAwareOptions(**TINY))
    model = task.build_model()
    photo = smooth_image(40, 48)
    painting = stripes_image(40, 48)
    trained = task.generator_losses(model, photo, painting, {})
    assert trained["style_aware_content"] > 0 and trained["transformed"] > 0
    model["generator"].forward = lambda image: image  # G = identity: E(G(x)) = E(x), T(G(x)) = T(x)
    identity = task.generator_losses(model, photo, painting, {})
    assert identity["style_aware_content"] == 0 and identity["transformed"] == 0


def test_transformed_image_loss_ignores_fine_texture_but_not_layout():
    photo = smooth_image(48, 48)
    checker = (torch.arange(48)[:, None] + torch.arange(48)[None, :]) % 2 * 0.2 - 0.1  # period-2 texture
    textured = (photo + checker).clamp(0, 1)
    shifted = torch.roll(photo, 12, dims=3)
    mse = torch.nn.functional.mse_loss
    # Per unit of pixel change, T barely sees the texture and fully sees the moved layout.
    texture_ratio = transformed_image_loss(photo, textured) / mse(textured, photo)
    layout_ratio = transformed_image_loss(photo, shifted) / mse(shifted, photo)
    assert texture_ratio < 0.05 * layout_ratio
    features = torch.rand(2, 8, 3, 3)
    assert style_aware_content_loss(features, features) == 0 < style_aware_content_loss(features, features + 0.1)


def test_discriminator_sees_photos_as_fake_only_when_asked():
    photo, painting = smooth_image(40, 40), stripes_image(40, 40)
    for as_fake in (True, False):
        task = StyleAwareTraining(StyleAwareOptions(**TINY, photos_as_fake=as_fake))
        terms = task.losses(task.build_model(), photo, painting)
        assert ("d_photo" in terms) is as_fake and {"g_adv", "d_real", "d_fake"} <= set(terms)


@pytest.fixture(scope="module")
def collection_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("style_aware")
    photos = _write_folder(root / "photos", [smooth_image(40, 44, seed=s) for s in range(4)])
    paintings = _write_folder(root / "stripes", [stripes_image(36, 36, period=3 + s % 5) for s in range(8)])
    cfg = TrainConfig(task="style_aware", content=str(photos), style=str(paintings), output=str(root / "run"),
                      steps=3, batch_size=1, crop_size=32, lr=2e-4, betas=(0.5, 0.999), schedule="constant",
                      checkpoint_every=1, sample_every=0, eval_content=str(photos), eval_count=2, eval_size=32,
                      precision="fp32", options=dict(TINY))
    return cfg, root


def test_three_steps_resume_exactly_then_export_and_stylize(collection_run, monkeypatch, tmp_path):
    from atelier.train.trainer import _Run

    cfg, root = collection_run
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
    assert [h["step"] for h in resumed.history] == [1, 2, 3]
    for key in ("loss_generator", "loss_discriminator", "style_aware_content", "d_photo"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in straight.history], rel=1e-5)

    exported = resumed.exported[0]
    assert exported.name == "genre.safetensors"
    with safe_open(str(exported), framework="pt") as file:
        header = file.metadata()
        assert not any(key.startswith("d.") for key in file.keys())  # the generator only
    assert header["task"] == "style_aware" and header["collection"] == "stripes" and header["width"] == "2"
    card = json.loads(exported.with_suffix(".json").read_text())
    assert "eval_d_fooled" in card["metrics"] and card["data"]["style"]["images"] == 8

    net, info = load_generator(str(exported))
    assert info["collection"] == "stripes" and info["steps"] == 3
    photo = smooth_image(37, 51)
    result = stylize_tensor(photo, [], StyleAware(model=str(exported)), progress=False)
    assert result.image.shape == photo.shape and result.info["collection"] == "stripes"
    assert torch.allclose(result.image, net(photo).clamp(0, 1), atol=1e-6)

    # The CLI picks the method from the file's header: no --method needed.
    from PIL import Image

    source = root / "photo.png"
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(source)
    out = tmp_path / "out.png"
    assert main(["stylize", str(source), "--model", str(exported), "-o", str(out), "--size", "70", "-q"]) == 0
    assert Image.open(out).size == (70, round(37 * 70 / 51))


def test_a_translation_model_is_refused_with_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"task": "cyclegan"})
    with pytest.raises(WeightsError, match="not a style-aware collection model"):
        load_generator(str(path))
