"""Attention over style positions (SANet, Park & Lee 2019) and its zero-temperature limit."""

from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.nets.sanet import SANet
from atelier.ops import attend, instance_normalize
from atelier.ops import attention as attention_module


def _features(seed, channels=5, size=(6, 7)):
    return torch.randn(1, channels, *size, generator=torch.Generator().manual_seed(seed))


def test_zero_temperature_copies_the_value_of_the_best_key():
    query, key, value = _features(0), _features(1, size=(4, 4)), _features(2, channels=3, size=(4, 4))
    out = attend(query, key, value, temperature=0)
    best = (query.flatten(2)[0].T @ key.flatten(2)[0]).argmax(1)
    assert torch.equal(out.flatten(2)[0].T, value.flatten(2)[0].T[best])
    # A low temperature approaches it; temperature 1 blends (differs).
    assert torch.allclose(attend(query, key, value, temperature=1e-3), out, atol=1e-3)
    assert (attend(query, key, value) - out).abs().max() > 1e-2


def test_attention_rows_are_convex_combinations_and_chunks_agree(monkeypatch):
    query, key = _features(3), _features(4, size=(5, 5))
    constant = torch.full((1, 2, 5, 5), 0.7)
    assert torch.allclose(attend(query, key, constant), torch.full((1, 2, 6, 7), 0.7), atol=1e-6)
    value = _features(5, channels=2, size=(5, 5))
    whole = attend(query, key, value)
    monkeypatch.setattr(attention_module, "SCORE_BYTES", 4 * 25 * 4)  # 4 query rows per chunk
    assert torch.allclose(attend(query, key, value), whole, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_attention_is_the_softmax_of_the_unscaled_scores(temperature):
    # Eq. 1-2: no 1/sqrt(C) factor (the fused call would add one by default), and a temperature divides.
    query, key = _features(8, channels=6), _features(9, channels=6, size=(4, 5))
    value = _features(10, channels=3, size=(4, 5))
    scores = query.flatten(2)[0].T.double() @ key.flatten(2)[0].double()
    expected = torch.softmax(scores / temperature, dim=-1) @ value.flatten(2)[0].T.double()
    out = attend(query, key, value, temperature=temperature)
    torch.testing.assert_close(out.flatten(2)[0].T.double(), expected, rtol=1e-5, atol=1e-5)


def test_attention_input_errors():
    with pytest.raises(OptionError, match="temperature"):
        attend(_features(0), _features(1), _features(2), temperature=-1)
    with pytest.raises(OptionError, match="share channels"):
        attend(_features(0), _features(1, channels=4), _features(2))


def test_sanet_with_identity_projections_and_zero_temperature_is_nearest_neighbour_copying():
    content, style = _features(6, channels=4), _features(7, channels=4, size=(5, 6))
    module = SANet(4)
    with torch.no_grad():
        for conv in (module.f, module.g, module.h, module.out):
            conv.weight.copy_(torch.eye(4)[..., None, None])
            conv.bias.zero_()
    out = module(content, style, temperature=0) - content  # remove the residual
    normalised_c = instance_normalize(content).flatten(2)[0].T
    normalised_s = instance_normalize(style).flatten(2)[0]
    nearest = (normalised_c @ normalised_s).argmax(1)
    assert torch.allclose(out.flatten(2)[0].T, style.flatten(2)[0].T[nearest], atol=1e-5)


def test_untrained_sanet_passes_the_content_through():
    module = SANet(4)  # W_out starts at zero
    content = _features(8, channels=4)
    assert torch.equal(module(content, _features(9, channels=4)), content)
