from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.errors import OptionError
from atelier.ops.winograd import conv3x3, winograd_conv3x3, winograd_filter, winograd_pays


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: str) -> torch.Tensor:
    if padding == "reflect":
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias)
    return F.conv2d(x, weight, bias, padding=1)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
@pytest.mark.parametrize("shape", [(2, 5, 6, 8), (1, 3, 5, 7), (1, 4, 2, 3), (1, 2, 9, 2)])
def test_equals_the_direct_convolution_in_float64(shape, padding):
    # Odd sides (a tile row/column cut off), 2 px sides (reflection's limit), a batch, no bias.
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    weight, bias = torch.randn(7, shape[1], 3, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    filters = winograd_filter(weight)
    got = winograd_conv3x3(x, filters, bias, padding=padding)
    assert got.shape == (shape[0], 7, *shape[2:])
    torch.testing.assert_close(got, _direct(x, weight, bias, padding), rtol=0, atol=1e-12)
    torch.testing.assert_close(winograd_conv3x3(x, filters, padding=padding), _direct(x, weight, None, padding),
                               rtol=0, atol=1e-12)


def test_bands_of_tile_rows_join_without_seams(monkeypatch):
    # A map taller than one band: every band boundary must read the rows of its neighbours.
    import atelier.ops.winograd as winograd

    # 16 * 4 channels * 8 bytes = 512 bytes per tile: 6 tiles per band, 2 tile rows of 3.
    monkeypatch.setattr(winograd, "_BAND_BYTES", 6 * 512)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 11, 6, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    for padding in ("zeros", "reflect"):
        torch.testing.assert_close(winograd_conv3x3(x, winograd_filter(weight), padding=padding),
                                   _direct(x, weight, None, padding), rtol=0, atol=1e-12)


def test_bf16_error_stays_near_the_direct_convolutions():
    # F(2x2, 3x3) rounds its transforms once more than the direct convolution; it must stay
    # within 3x of the direct bf16 convolution's own error against float64 (measured: 2x).
    torch.manual_seed(2)
    x = torch.relu(torch.randn(1, 256, 12, 14)).bfloat16().contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(128, 256, 3, 3) / 48, torch.randn(128) / 10
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    direct = F.conv2d(x, weight.bfloat16(), bias.bfloat16(), padding=1)
    fast = winograd_conv3x3(x, winograd_filter(weight, torch.bfloat16), bias)
    assert fast.dtype == torch.bfloat16 and fast.is_contiguous(memory_format=torch.channels_last)

    def error(y: torch.Tensor) -> float:
        return float((y.double() - exact).norm() / exact.norm())

    assert error(fast) < 3 * error(direct) < 3e-2


def test_filter_and_input_shapes_are_checked():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(OptionError, match=r"\(C_out, C_in, 3, 3\)"):
        winograd_filter(torch.randn(2, 4, 5, 5))
    with pytest.raises(OptionError, match="winograd_filter"):
        winograd_conv3x3(x, torch.randn(16, 3, 2))
    with pytest.raises(OptionError, match="padding"):
        winograd_conv3x3(x, winograd_filter(torch.randn(2, 4, 3, 3)), padding="circular")


def test_pays_for_wide_layers_only():
    assert winograd_pays(512, 512) and winograd_pays(256, 128) and winograd_pays(128, 256)
    assert not winograd_pays(128, 128) and not winograd_pays(64, 512) and not winograd_pays(3, 64)


def _wide_layer() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    x = torch.randn(1, 128, 6, 7)
    return x, torch.randn(256, 128, 3, 3) / 34, torch.randn(256) / 10


def _used_winograd(monkeypatch, call) -> bool:
    import atelier.ops.winograd as winograd

    calls = []
    real = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    call()
    return bool(calls)


def test_conv3x3_takes_the_winograd_route_only_in_bf16_where_it_pays(monkeypatch):
    x, weight, bias = _wide_layer()
    with torch.no_grad():
        assert not _used_winograd(monkeypatch, lambda: conv3x3(x, weight, bias))  # float32
        assert _used_winograd(monkeypatch, lambda: conv3x3(x.bfloat16(), weight, bias))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _used_winograd(monkeypatch, lambda: conv3x3(x, weight, bias))
            narrow = weight[:128]
            assert not _used_winograd(monkeypatch, lambda: conv3x3(x, narrow, bias[:128]))
        monkeypatch.setenv("ATELIER_WINOGRAD", "0")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not _used_winograd(monkeypatch, lambda: conv3x3(x, weight, bias))


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_conv3x3_matches_the_direct_route_in_bf16(padding):
    x, weight, bias = _wide_layer()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = conv3x3(x, weight, bias, padding=padding)
    exact = _direct(x.double(), weight.double(), bias.double(), padding)
    assert fast.dtype == torch.bfloat16
    assert float((fast.double() - exact).norm() / exact.norm()) < 1e-2


def test_conv3x3_input_gradient_is_the_adjoint_and_weight_gradients_take_the_direct_route(monkeypatch):
    x, weight, bias = _wide_layer()
    image = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv3x3(image, weight, bias)
    seed = torch.randn(out.shape)
    (out.float() * seed).sum().backward()
    reference = x.double().requires_grad_()
    (F.conv2d(reference, weight.double(), bias.double(), padding=1) * seed.double()).sum().backward()
    assert image.grad is not None and reference.grad is not None
    assert float((image.grad.double() - reference.grad).norm() / reference.grad.norm()) < 1e-2
    # A weight that learns (training) must get its gradient: that route is the direct one.
    trained = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _used_winograd(monkeypatch, lambda: conv3x3(x, trained, bias))
        assert not _used_winograd(monkeypatch, lambda: conv3x3(x.requires_grad_(), weight, bias, padding="reflect"))


def test_cached_filters_follow_in_place_changes_of_the_weight():
    x, weight, bias = _wide_layer()
    with torch.no_grad():
        first = conv3x3(x.bfloat16(), weight, bias)
        weight.mul_(2)  # as load_state_dict's copy_ would
        second = conv3x3(x.bfloat16(), weight, bias)
        expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    assert float((second.double() - expected).norm() / expected.norm()) < 1e-2
    assert not torch.allclose(first.float(), second.float())
