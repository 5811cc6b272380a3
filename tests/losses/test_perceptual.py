from __future__ import annotations

import torch

from atelier.losses import (
    ContentLoss,
    GramStyleLoss,
    HistogramStyleLoss,
    PerceptualCriterion,
    StyleTarget,
    TotalVariationLoss,
)
from atelier.ops import gram_matrix


def test_criterion_runs_encoder_once_for_union_of_layers(tiny_encoder, content_image, style_image, monkeypatch):
    with torch.no_grad():
        c = tiny_encoder(content_image, ["relu4_2"])
        s = tiny_encoder(style_image, ["relu1_1", "relu2_1"])
    terms = [ContentLoss(c, {"relu4_2": 1.0}, 1.0),
             GramStyleLoss([StyleTarget(s)], {"relu1_1": 0.5, "relu2_1": 0.5}, 1.0)]
    criterion = PerceptualCriterion(tiny_encoder, terms)
    assert set(criterion.layers) == {"relu4_2", "relu1_1", "relu2_1"}
    calls = []
    original = tiny_encoder.forward
    monkeypatch.setattr(tiny_encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    total, parts = criterion(content_image)
    assert len(calls) == 1
    assert parts["content"] < 1e-9 and parts["style"] > 0
    assert torch.isclose(total, torch.tensor(parts["style"] + parts["content"]), rtol=1e-5)


def test_style_blend_weights_mix_targets(tiny_encoder, content_image, style_image):
    layers = {"relu2_1": 1.0}
    with torch.no_grad():
        a = tiny_encoder(style_image, ["relu2_1"])
        b = tiny_encoder(content_image, ["relu2_1"])
        x = tiny_encoder(torch.rand_like(content_image), ["relu2_1"])
    only_a = GramStyleLoss([StyleTarget(a, 1.0)], layers, 1.0)(x, content_image)
    only_b = GramStyleLoss([StyleTarget(b, 1.0)], layers, 1.0)(x, content_image)
    blend = GramStyleLoss([StyleTarget(a, 0.3), StyleTarget(b, 0.7)], layers, 1.0)(x, content_image)
    assert torch.isclose(blend, 0.3 * only_a + 0.7 * only_b, rtol=1e-5)


def test_masked_style_loss_ignores_outside(tiny_encoder, style_image):
    with torch.no_grad():
        s = tiny_encoder(style_image, ["relu1_1"])
    mask = torch.zeros(1, 1, 48, 64)
    mask[..., :32] = 1
    loss = GramStyleLoss([StyleTarget(s, 1.0, output_mask=mask)], {"relu1_1": 1.0}, 1.0)
    image = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        f1 = tiny_encoder(image, ["relu1_1"])
        changed = image.clone()
        changed[..., 40:] = torch.rand(1, 3, 48, 24)  # outside the mask (1 px receptive margin)
        f2 = tiny_encoder(changed, ["relu1_1"])
    assert torch.isclose(loss(f1, image), loss(f2, changed), rtol=1e-4)
    # Target gram uses the whole style when no style mask is given.
    assert torch.allclose(loss.targets[0]["relu1_1"], gram_matrix(s["relu1_1"]))


def test_histogram_loss_zero_on_style_itself(tiny_encoder, style_image):
    with torch.no_grad():
        s = tiny_encoder(style_image, ["relu1_1"])
    loss = HistogramStyleLoss([StyleTarget(s)], {"relu1_1": 1.0}, 1.0)
    assert loss(s, style_image).item() < 1e-8
    with torch.no_grad():
        other = tiny_encoder(torch.rand_like(style_image), ["relu1_1"])
    assert loss(other, style_image).item() > 1e-4


def test_bf16_criterion_close_to_fp32(tiny_encoder, content_image, style_image):
    with torch.no_grad():
        s = tiny_encoder(style_image, ["relu1_1", "relu3_1"])
    terms = [GramStyleLoss([StyleTarget(s)], {"relu1_1": 0.5, "relu3_1": 0.5}, 1.0), TotalVariationLoss(0.1)]
    fp32 = PerceptualCriterion(tiny_encoder, terms, precision="fp32")(content_image)[0]
    bf16 = PerceptualCriterion(tiny_encoder, terms, precision="bf16")(content_image)[0]
    assert bf16.dtype == torch.float32
    assert torch.isclose(fp32, bf16, rtol=0.05)
