from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.nets.transformer import TransformerNet, style_weight_matrix


def _randomise_norms(net: TransformerNet, seed: int = 0) -> TransformerNet:
    """Distinct gamma/beta per style (fresh nets start with identical rows)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith(("norm.weight", "norm.bias")):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5 + parameter)
    return net.eval()


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (17, 90), (5, 9)])
def test_fully_convolutional_any_size_round_trips(size):
    net = TransformerNet(width=4, blocks=1).eval()
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = net(image)
    assert out.shape == image.shape
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_cin_one_hot_equals_the_single_style_network():
    torch.manual_seed(0)
    net = _randomise_norms(TransformerNet(width=4, blocks=2, styles=3))
    image = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        outputs = [net(image, torch.eye(3)[k]) for k in range(3)]
        singles = [net.extract_style(k)(image) for k in range(3)]
    for output, single in zip(outputs, singles):
        torch.testing.assert_close(output, single, atol=1e-5, rtol=1e-5)
    # ... and the styles really differ, so the comparison means something.
    assert float((outputs[0] - outputs[1]).abs().mean()) > 1e-3


def test_blending_mixes_gamma_beta_and_spatial_maps_select_per_pixel():
    torch.manual_seed(1)
    net = _randomise_norms(TransformerNet(width=4, blocks=1, styles=2), seed=1)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        first, second = net(image, [1.0, 0.0]), net(image, [0.0, 1.0])
        half = net(image, [0.5, 0.5])
        left_right = torch.zeros(1, 2, 32, 32)
        left_right[:, 0, :, :16] = 1
        left_right[:, 1, :, 16:] = 1
        spatial = net(image, left_right)
    # A blend is neither endpoint.
    assert float((half - first).abs().mean()) > 1e-3 and float((half - second).abs().mean()) > 1e-3
    # Far from the seam (the receptive field is wide), each half follows its own style.
    def distance(a, b, columns):
        return float((a[..., columns] - b[..., columns]).abs().mean())

    left, right = slice(0, 4), slice(-4, None)
    assert distance(spatial, first, left) < distance(spatial, second, left)
    assert distance(spatial, second, right) < distance(spatial, first, right)


def test_style_weights_are_validated():
    with pytest.raises(OptionError, match="one weight per style"):
        style_weight_matrix([0.5, 0.5], styles=3, batch=1)
    with pytest.raises(OptionError, match=">= 0"):
        style_weight_matrix([1.0, -0.5], styles=2, batch=1)
    with pytest.raises(OptionError, match="not all 0"):
        style_weight_matrix([0.0, 0.0], styles=2, batch=1)
    with pytest.raises(OptionError, match="finite"):
        style_weight_matrix([float("nan"), 1.0], styles=2, batch=1)
    with pytest.raises(OptionError, match="give style weights"):
        style_weight_matrix(None, styles=4, batch=1)
    assert style_weight_matrix([0.2, 0.8], styles=2, batch=3).shape == (3, 2)
    with pytest.raises(OptionError, match="out of range"):
        TransformerNet(width=2, blocks=0, styles=2).extract_style(2)
