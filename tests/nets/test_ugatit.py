from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from atelier.errors import ImageTooSmallError, OptionError
from atelier.methods.ugatit import UGATITOptions, UGATITTraining
from atelier.nets.gan import patch_size
from atelier.nets.ugatit import CAM, LIN, AdaLIN, UGATITDiscriminator, UGATITGenerator, clip_rho

pytestmark = pytest.mark.usefixtures("one_thread")


def _adalin(channels: int, rho: float) -> AdaLIN:
    norm = AdaLIN(channels)
    with torch.no_grad():
        norm.rho.fill_(rho)
    return norm


def test_adalin_is_instance_norm_at_rho_1_and_layer_norm_at_rho_0():
    x = torch.randn(2, 5, 7, 9) * 3 + 1
    gamma, beta = torch.ones(2, 5), torch.zeros(2, 5)
    instance = nn.InstanceNorm2d(5)(x)
    layer = nn.LayerNorm([5, 7, 9], elementwise_affine=False)(x)
    assert torch.allclose(_adalin(5, 1.0)(x, gamma, beta), instance, atol=1e-5)
    assert torch.allclose(_adalin(5, 0.0)(x, gamma, beta), layer, atol=1e-5)
    assert not torch.allclose(instance, layer, atol=1e-2)  # the two really differ here
    mixed = _adalin(5, 0.25)(x, gamma, beta)
    assert torch.allclose(mixed, 0.25 * instance + 0.75 * layer, atol=1e-5)
    # gamma and beta per sample and channel scale and shift the normalised features.
    gamma, beta = torch.rand(2, 5) + 0.5, torch.randn(2, 5)
    out = _adalin(5, 1.0)(x, gamma, beta)
    assert torch.allclose(out, instance * gamma[:, :, None, None] + beta[:, :, None, None], atol=1e-5)


def test_rho_acts_clamped_and_is_clipped_after_updates():
    x = torch.randn(1, 3, 6, 6)
    ones, zeros = torch.ones(1, 3), torch.zeros(1, 3)
    assert torch.allclose(_adalin(3, 1.7)(x, ones, zeros), _adalin(3, 1.0)(x, ones, zeros))
    assert torch.allclose(_adalin(3, -0.4)(x, ones, zeros), _adalin(3, 0.0)(x, ones, zeros))
    net = UGATITGenerator(width=2, blocks=1, light=True, size=16)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (AdaLIN, LIN)):
                module.rho.uniform_(-1, 2)
    norms = [m for m in net.modules() if isinstance(m, (AdaLIN, LIN))]
    assert len(norms) == 2 * 1 + 2  # two AdaLIN per block, one LIN per upsampling stage
    before = torch.cat([m.rho.detach().flatten() for m in norms])
    clip_rho(net)
    after = torch.cat([m.rho.detach().flatten() for m in norms])
    assert before.min() < 0 and before.max() > 1
    assert torch.equal(after, before.clamp(0, 1))


def test_lin_starts_as_layer_norm():
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(LIN(4)(x), nn.LayerNorm([4, 5, 5], elementwise_affine=False)(x), atol=1e-5)


def test_adalin_gradients():
    norm = AdaLIN(3).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    # float32 statistics inside: check the analytic gradient against float64 finite differences loosely.
    assert torch.autograd.gradcheck(lambda *t: norm(*t).double(), (x, gamma, beta), eps=1e-3, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("spectral", [False, True])
def test_cam_logits_and_attention_shapes(spectral):
    cam = CAM(6, spectral=spectral, slope=0.2 if spectral else 0.0)
    features, logits, heatmap = cam(torch.randn(3, 6, 9, 11))
    assert features.shape == (3, 6, 9, 11) and logits.shape == (3, 2) and heatmap.shape == (3, 1, 9, 11)
    # The logits are the shared classifier on the average- and max-pooled features.
    x = torch.randn(1, 6, 4, 4)
    cam.eval()  # no power iteration between the two calls
    _, logits, _ = cam(x)
    expected = torch.stack([cam.fc(x.mean((2, 3))), cam.fc(x.amax((2, 3)))], 1).flatten(1)
    assert torch.allclose(logits, expected, atol=1e-6)


@pytest.mark.parametrize("light", [True, False])
@pytest.mark.parametrize(("height", "width"), [(37, 53), (32, 32)])
def test_generator_keeps_any_size(light, height, width):
    net = UGATITGenerator(width=4, blocks=1, light=light, size=32)
    image = torch.rand(2, 3, height, width)
    out, cam_logit, heatmap = net.translate(image)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert cam_logit.shape == (2, 2) and heatmap.shape == (2, 1, math.ceil(height / 4), math.ceil(width / 4))
    assert torch.equal(net(image), out)


def test_light_generator_pools_before_the_mlp():
    light = UGATITGenerator(width=4, blocks=1, light=True, size=64)
    full = UGATITGenerator(width=4, blocks=1, light=False, size=64)
    assert light.mlp[0].in_features == 16 and full.mlp[0].in_features == 16 * 16 * 16
    with pytest.raises(OptionError):
        UGATITGenerator(size=30)


@pytest.mark.parametrize(("layers", "height", "width"), [(7, 96, 131), (5, 37, 53), (4, 37, 53)])
def test_discriminator_shapes(layers, height, width):
    net = UGATITDiscriminator(width=2, layers=layers)
    scores, cam_logit = net(torch.rand(2, 3, height, width))
    assert scores.shape == (2, 1, patch_size(height, layers - 2), patch_size(width, layers - 2))
    assert cam_logit.shape == (2, 2)


def test_discriminator_refuses_small_images():
    assert UGATITDiscriminator(width=2, layers=7).min_size == 96
    with pytest.raises(ImageTooSmallError, match="at least 24 px"):
        UGATITDiscriminator(width=2, layers=5)(torch.rand(1, 3, 20, 64))


class _Same(nn.Module):
    """A generator returning its input and zero CAM logits."""

    def translate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return x, torch.zeros(x.shape[0], 2), x[:, :1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_ugatit_losses_with_identity_generators():
    options = UGATITOptions(width=2, blocks=0, disc_width=2, global_layers=4, local_layers=3, light=True, size=32)
    task = UGATITTraining(options)
    model = task.build_model()
    assert sorted(model.keys()) == ["a2b", "b2a", "d_global_a", "d_global_b", "d_local_a", "d_local_b"]
    model["a2b"], model["b2a"] = _Same(), _Same()
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    context: dict = {}
    terms = task.generator_losses(model, a, b, context)
    assert terms["cycle"] == 0 and terms["identity"] == 0
    # Zero logits: each of the four BCE terms is ln 2, weighted by lambda4 = 1000.
    assert terms["cam"] == pytest.approx(1000 * 4 * math.log(2), rel=1e-5)
    assert torch.equal(context["fake_b"], a) and torch.equal(context["fake_a"], b)
    d_terms = task.discriminator_terms(model, a, b, context["fake_a"], context["fake_b"])
    assert set(d_terms) == {"d_a", "d_b"} and all(v > 0 for v in d_terms.values())
