"""Networks of content-style disentanglement: codes on the sphere, centred, and a decoder that listens to them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atelier.nets.disentangle import DisentangledGenerator, StyleEncoder, unit_code
from atelier.nets.style_aware import UpBlock
from helpers import smooth_image, stripes_image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_style_codes_are_unit_vectors_and_the_decoder_reads_only_their_direction():
    torch.manual_seed(0)
    net = DisentangledGenerator(width=2, blocks=1, code_dim=6).eval()
    codes = net.style(torch.cat([smooth_image(24, 24, seed=1), stripes_image(24, 24)]))
    assert torch.allclose(codes.norm(dim=1), torch.ones(2), atol=1e-5)
    photo = smooth_image(32, 32, seed=2)
    # A blend (shorter than a unit code) decodes as its direction: interpolation and the average stay on the sphere.
    blend = 0.5 * codes[0] + 0.5 * codes[1]
    assert torch.allclose(net(photo, blend), net(photo, 3 * blend), atol=1e-6)
    assert unit_code(torch.zeros(4)).abs().sum() == 0  # no division by zero


def test_style_encoder_centres_codes_on_the_paintings_it_follows():
    torch.manual_seed(0)
    encoder = StyleEncoder(width=4, code_dim=8)
    images = torch.cat([smooth_image(32, 32, seed=s) for s in range(4)] + [stripes_image(32, 32, period=3)])
    before = encoder(images)
    encoder.train()
    encoder(images)
    assert encoder.center.abs().sum() == 0  # encoding alone never moves the centre (train or eval)
    encoder.follow(encoder.raw(images))
    assert torch.allclose(encoder.center, encoder.raw(images).mean(0))  # the first call sets it
    after = encoder(images)
    # Uncentred, every image shares the pooled features' common part and the unit codes start nearly
    # alike; centred, they spread over the sphere (the collapse the fixpoint triplet loss could not undo).
    spread = lambda codes: torch.pdist(codes).mean()  # noqa: E731
    assert spread(before) < 0.2 < spread(after)


def _colour_shift(up: nn.Module) -> float:
    """Mean change of the output's channel means when the style code changes, for a decoder with ``up``."""
    shifts = []
    for seed in range(4):
        torch.manual_seed(seed)
        net = DisentangledGenerator(width=4, blocks=1, code_dim=8).eval()
        if up is not None:
            net.up = nn.Sequential(*up(net), *list(net.up)[4:])
        a, b = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
        photo = smooth_image(32, 32, seed=seed)
        with torch.no_grad():
            shifts.append((net(photo, a).mean((2, 3)) - net(photo, b).mean((2, 3))).abs().mean().item())
    return sum(shifts) / len(shifts)


def test_the_style_code_reaches_the_output_colours():
    # With instance norm after the AdaIN blocks (the style-aware generator's up path) each per-channel
    # shift the code sets is removed again; with layer norm it reaches the output.
    def instance_norm_path(net: DisentangledGenerator) -> nn.Sequential:
        w = net.width
        return nn.Sequential(UpBlock(8 * w, 8 * w), UpBlock(8 * w, 4 * w), UpBlock(4 * w, 2 * w), UpBlock(2 * w, w))

    layer_norm, instance_norm = _colour_shift(None), _colour_shift(instance_norm_path)
    assert layer_norm > 2 * instance_norm
