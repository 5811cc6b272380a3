from __future__ import annotations

import torch

from atelier.io.images import load_image
from atelier.ops import channels_last


def test_an_image_from_an_hwc_array_gets_canonical_channels_last_strides(tmp_path):
    hwc = torch.rand(20, 30, 3)
    image = hwc.permute(2, 0, 1)[None]  # what loading an image or a video frame gives
    assert image.is_contiguous(memory_format=torch.channels_last) and image.stride() == (3, 1, 90, 3)
    fixed = channels_last(image)
    assert fixed.stride() == (1800, 1, 90, 3) and torch.equal(fixed, image)
    # The convolution keeps channels-last on the fixed tensor (and so does everything after it).
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        assert conv(fixed).is_contiguous(memory_format=torch.channels_last)


def test_canonical_tensors_are_returned_as_they_are_and_others_converted():
    ready = torch.rand(2, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    assert channels_last(ready) is ready
    nchw = torch.rand(2, 4, 5, 6)
    converted = channels_last(nchw)
    assert converted.stride() == (120, 1, 24, 4) and torch.equal(converted, nchw)
    flat = torch.rand(3, 4)
    assert channels_last(flat) is flat


def test_loaded_images_reach_the_encoder_in_channels_last(tmp_path, tiny_encoder):
    from PIL import Image

    from atelier.losses.perceptual import encode

    path = tmp_path / "photo.png"
    Image.fromarray((torch.rand(40, 52, 3) * 255).byte().numpy()).save(path)
    features = encode(tiny_encoder, load_image(path), ["relu2_1"])
    assert features["relu2_1"].is_contiguous(memory_format=torch.channels_last)
