"""The hierarchical network of multimodal transfer (Wang et al. 2017): stage sizes and structure."""

from __future__ import annotations

import itertools

import pytest
import torch

from atelier.errors import OptionError
from atelier.nets.multimodal import MultimodalNet, stage_sizes, tiled_subnet
from atelier.nets.transformer import ConditionalInstanceNorm2d

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MultimodalNet(width=4).eval()


@pytest.mark.parametrize("size", [(64, 96), (37, 53), (20, 21), (75, 40)])
def test_each_stage_doubles_the_size_and_the_last_is_the_input_size(net, size):
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        outputs = net.stages(image)
    shapes = [tuple(o.shape[-2:]) for o in outputs]
    assert shapes == stage_sizes(*size) and shapes[-1] == size
    assert all(o.shape[:2] == (2, 3) and torch.isfinite(o).all() for o in outputs)
    for small, large in itertools.pairwise(shapes):  # each stage at most twice, at least twice minus one px
        assert all(2 * s - 1 <= t <= 2 * s for s, t in zip(small, large))
    if size[0] % 4 == 0 and size[1] % 4 == 0:
        assert shapes[0] == (size[0] // 4, size[1] // 4) and shapes[1] == (size[0] // 2, size[1] // 2)


def test_forward_is_the_refine_stage_and_the_first_two_stages_are_images(net):
    image = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        style, enhance, refine = net.stages(image)
        assert torch.equal(net(image), refine)
    assert 0 <= float(style.min()) and float(style.max()) <= 1 and 0 <= float(enhance.min()) <= 1


def test_refine_subnet_adds_detail_to_the_upsampled_enhance_output(net):
    """With its last convolution zeroed the refine subnet is the identity (it only adds a residual)."""
    image = torch.rand(1, 3, 40, 44)
    refine = net.refine
    saved = refine.output.weight.detach().clone(), refine.output.bias.detach().clone()
    try:
        with torch.no_grad():
            refine.output.weight.zero_()
            refine.output.bias.zero_()
            x = torch.rand(1, 3, 40, 44)
            assert torch.equal(refine(x), x)
            _, enhance, out = net.stages(image)
            upsampled = torch.nn.functional.interpolate(enhance, size=(40, 44), mode="bilinear", align_corners=False)
            assert torch.allclose(out, upsampled)
    finally:
        with torch.no_grad():
            refine.output.weight.copy_(saved[0])
            refine.output.bias.copy_(saved[1])


def test_style_subnet_has_separate_rgb_and_luminance_blocks(net):
    assert net.style.rgb[0].conv.in_channels == 3 and net.style.luminance[0].conv.in_channels == 1
    # A pure luminance change reaches the output through both blocks: zeroing the RGB block's
    # first convolution still leaves the output dependent on the image's brightness.
    torch.manual_seed(1)
    probe = MultimodalNet(width=4).eval()
    with torch.no_grad():
        probe.style.rgb[0].conv.weight.zero_()
        dark, bright = torch.full((1, 3, 32, 32), 0.2), torch.full((1, 3, 32, 32), 0.2)
        bright[..., 8:24, 8:24] = 0.9
        assert not torch.allclose(probe.style(dark), probe.style(bright))


def test_sizes_below_the_minimum_and_bad_widths_are_refused(net):
    with pytest.raises(OptionError, match="at least 20 px"):
        net.stages(torch.rand(1, 3, 19, 64))
    with pytest.raises(OptionError, match="width >= 2"):
        MultimodalNet(width=1)


def test_gradients_reach_every_subnet(net):
    torch.manual_seed(2)
    model = MultimodalNet(width=4)
    loss = sum(o.mean() for o in model.stages(torch.rand(1, 3, 32, 32)))
    loss.backward()
    for part in (model.style, model.enhance, model.refine):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_tiled_refine_subnet_equals_the_whole_image():
    """Instance norm statistics fixed layer by layer over the tiles' cores: the same output."""
    torch.manual_seed(3)
    refine = MultimodalNet(width=2).refine.eval()
    image = torch.rand(1, 3, 90, 150)  # 3 x 5 tiles of 32 px with 48 px halos
    with torch.no_grad():
        whole, tiles = refine(image), tiled_subnet(refine, image, 32)
    assert tiles.shape == whole.shape and torch.allclose(tiles, whole, atol=1e-5)
    assert all(norm.frozen is None and norm.probe is None for norm in refine.modules()
               if isinstance(norm, ConditionalInstanceNorm2d))  # nothing left behind


@pytest.mark.slow  # 19 statistics passes over 20 tiles, then the whole network tiled: 2 min on a busy 2-core CPU
def test_tiled_enhance_subnet_and_whole_network_equal_the_whole_image():
    torch.manual_seed(4)
    net = MultimodalNet(width=2).eval()
    with torch.no_grad():
        image = torch.rand(1, 3, 200, 264)
        assert torch.allclose(tiled_subnet(net.enhance, image, 64), net.enhance(image), atol=1e-5)
        assert torch.equal(tiled_subnet(net.enhance, image, 160), net.enhance(image))  # one tile would hold it
        image = torch.rand(1, 3, 400, 528)
        difference = float((net(image, tile=128) - net(image)).abs().max())
        assert difference < 1e-4, difference
