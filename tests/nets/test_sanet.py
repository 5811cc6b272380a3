"""The SANet transform (Park & Lee 2019) and its soft-swap start."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.errors import OptionError
from atelier.nets.sanet import SOFT_SWAP_WEIGHT, SANetTransform


def _pair(seed: int, channels: int, size: tuple[int, int]) -> torch.Tensor:
    return torch.randn(1, channels, *size, generator=torch.Generator().manual_seed(seed))


def test_default_start_passes_the_content_through():
    net = SANetTransform(32)
    c4, c5 = _pair(0, 32, (6, 8)), _pair(1, 32, (3, 4))
    s4, s5 = _pair(2, 32, (5, 5)), _pair(3, 32, (3, 3))
    with torch.no_grad():
        out = net((c4, c5), (s4, s5))
    torch.testing.assert_close(out, c4 + F.interpolate(c5, size=(6, 8)))


def test_soft_swap_start_takes_each_positions_nearest_style_feature():
    # The style is the content's relu4_1 vectors in another order (its normalised statistics are the
    # content's), so every content position has one exact match, hundreds of score units above the
    # rest: the attention picks it, and the relu4_1 module adds SOFT_SWAP_WEIGHT x the matched vector.
    net = SANetTransform(256)
    net.start_as_soft_swap()
    c4, c5 = _pair(4, 256, (6, 7)), _pair(5, 256, (3, 4))
    order = torch.randperm(42, generator=torch.Generator().manual_seed(6))
    s4 = c4.flatten(2)[..., order].reshape(1, 256, 6, 7)
    s5 = _pair(7, 256, (3, 3))
    with torch.no_grad():
        out = net((c4, c5), (s4, s5))
    weight = SOFT_SWAP_WEIGHT
    expected = ((1 + weight) * c4 + F.interpolate(c5, size=(6, 7))) / (1 + weight)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    # Another style changes the result: the style is carried (the identity start ignores it).
    with torch.no_grad():
        other = net((c4, c5), (_pair(8, 256, (6, 7)), s5))
    assert float((other - out).abs().mean()) > 0.1


def test_a_module_with_zero_output_is_skipped_exactly_and_frees_the_styles_relu5_1():
    # The soft-swap start leaves the relu5_1 module's W_out at zero: without a gradient it adds nothing,
    # so the style's relu5_1 features are not needed and the result is the one computed with them.
    net = SANetTransform(64)
    net.start_as_soft_swap()
    c4, c5 = _pair(9, 64, (6, 7)), _pair(10, 64, (3, 4))
    s4, s5 = _pair(11, 64, (5, 6)), _pair(12, 64, (3, 3))
    with torch.no_grad():
        assert not net.needs_style_relu5_1()
        skipped = net((c4, c5), (s4, None))
        net.sanet5_1.out.weight[0, 0] = 1e-30  # any non-zero weight: the module attends again
        assert net.needs_style_relu5_1()
        full = net((c4, c5), (s4, s5))
        with pytest.raises(OptionError, match="style features are required"):
            net((c4, c5), (s4, None))
    torch.testing.assert_close(skipped, full)


def test_a_zero_output_that_learns_is_not_skipped():
    # Training from the soft swap with the transform trainable: W_out = 0 still has a gradient.
    net = SANetTransform(16)
    net.start_as_soft_swap()
    assert net.needs_style_relu5_1()
    c4, c5 = _pair(13, 16, (4, 4)), _pair(14, 16, (2, 2))
    out = net((c4, c5), (_pair(15, 16, (4, 4)), _pair(16, 16, (2, 2))))
    out.square().sum().backward()
    assert net.sanet5_1.out.weight.grad is not None and float(net.sanet5_1.out.weight.grad.abs().sum()) > 0
    net.requires_grad_(False)
    assert not net.needs_style_relu5_1()
