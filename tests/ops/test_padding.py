from __future__ import annotations

import torch

from atelier.ops import pad_to_multiple


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
