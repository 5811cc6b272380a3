from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.ops import pad_to_multiple
from atelier.ops.padding import reflect_conv3x3, upsample_reflect_conv3x3


def test_pads_right_and_bottom_to_the_multiple_by_reflection():
    image = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded, pad = pad_to_multiple(image, 4)
    assert pad == (0, 1, 0, 3) and padded.shape == (2, 3, 8, 8)
    torch.testing.assert_close(padded[..., :5, :7], image)
    torch.testing.assert_close(padded[..., 5, :7], image[..., 3, :])  # reflection, not replication
    torch.testing.assert_close(padded[..., :5, 7], image[..., :, 5])


def test_replicates_when_the_image_is_too_small_to_reflect_and_leaves_multiples_alone():
    tiny = torch.rand(1, 1, 2, 3)
    padded, pad = pad_to_multiple(tiny, 8)
    assert padded.shape == (1, 1, 8, 8) and pad == (0, 5, 0, 6)
    torch.testing.assert_close(padded[..., 7, 7], tiny[..., 1, 2])
    even = torch.rand(1, 3, 16, 32)
    same, pad = pad_to_multiple(even, 16)
    assert pad == (0, 0, 0, 0) and same is even


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 4, 2, 2), (1, 3, 3, 11)])
def test_reflect_conv_equals_the_convolution_of_the_reflection_padded_input(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    weight, bias = torch.randn(6, shape[1], 3, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias)
    torch.testing.assert_close(reflect_conv3x3(x, weight, bias), expected, rtol=0, atol=1e-12)
    # Channels-last input (what the decoders get) and no bias.
    x_last = x.contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight)
    torch.testing.assert_close(reflect_conv3x3(x_last, weight), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("convolution", [reflect_conv3x3, upsample_reflect_conv3x3])
def test_padded_convolution_gradients_are_right(convolution):
    torch.manual_seed(1)
    x = torch.randn(1, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(convolution, (x, weight, bias))


def _upsampled(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


@pytest.mark.parametrize(("convolution", "before"), [(reflect_conv3x3, lambda x: x),
                                                     (upsample_reflect_conv3x3, _upsampled)])
def test_padded_convolutions_in_bf16_autocast_stay_in_bf16(convolution, before):
    # CPU autocast runs reflection_pad2d in float32; the full-size map must not take that detour.
    torch.manual_seed(2)
    x = torch.randn(1, 16, 16, 16).bfloat16().contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 16, 3, 3), torch.randn(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = convolution(x, weight, bias)
    expected = F.conv2d(F.pad(before(x.float()), (1, 1, 1, 1), mode="reflect"), weight, bias)
    assert out.dtype == torch.bfloat16
    # bf16 keeps 8 bits: errors up to about 1% of the largest output.
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=0.01 * float(expected.abs().max()))


@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 4, 1, 1), (1, 3, 1, 6), (1, 2, 2, 3)])
def test_upsample_conv_equals_upsampling_then_the_reflection_padded_convolution(shape):
    torch.manual_seed(3)
    x = torch.randn(*shape, dtype=torch.float64)
    weight, bias = torch.randn(6, shape[1], 3, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    upsampled = F.interpolate(x, scale_factor=2, mode="nearest")
    expected = F.conv2d(F.pad(upsampled, (1, 1, 1, 1), mode="reflect"), weight, bias)
    out = upsample_reflect_conv3x3(x.contiguous(memory_format=torch.channels_last), weight, bias)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # Without a bias, and a kernel that is not 3x3 is refused.
    torch.testing.assert_close(upsample_reflect_conv3x3(x, weight),
                               F.conv2d(F.pad(upsampled, (1, 1, 1, 1), mode="reflect"), weight), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="3, 3"):
        upsample_reflect_conv3x3(x, torch.randn(6, shape[1], 5, 5, dtype=torch.float64))
