from __future__ import annotations

import pytest
import torch
from torch import nn

from atelier.errors import ImageTooSmallError, OptionError
from atelier.methods.cyclegan import CycleGANOptions, CycleGANTraining
from atelier.nets.gan import ImagePool, PatchDiscriminator, ResnetGenerator, lsgan_loss, patch_size

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("height", "width"), [(37, 53), (32, 32), (9, 14)])
def test_generator_keeps_any_size_and_the_unit_range(height, width):
    net = ResnetGenerator(width=4, blocks=2)
    image = torch.rand(2, 3, height, width)
    out = net(image)
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    # Padding happens only on the right and bottom: the top-left of an odd input matches the
    # same pixels of the input padded by hand to a multiple of 4.
    padded = torch.nn.functional.pad(image, (0, -width % 4, 0, -height % 4), mode="replicate")
    if min(height, width) > 4:
        padded = torch.nn.functional.pad(image, (0, -width % 4, 0, -height % 4), mode="reflect")
    assert torch.allclose(net(padded)[..., :height, :width], out, atol=1e-6)


def test_generator_has_the_paper_layout():
    net = ResnetGenerator()  # width 64, 9 blocks: the 256 px generator of appendix 7.2
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.kernel_size[0] for m in (convs[0], convs[-1])] == [7, 7]
    assert [m.out_channels for m in convs[:3]] == [64, 128, 256]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in convs) == 2
    assert len(convs) == 3 + 2 * 9 + 2 + 1
    with pytest.raises(OptionError):
        ResnetGenerator(width=0)


@pytest.mark.parametrize(("height", "width"), [(37, 53), (64, 64), (24, 30)])
def test_patchgan_scores_one_value_per_patch(height, width):
    net = PatchDiscriminator(width=4, layers=3)
    scores = net(torch.rand(2, 3, height, width))
    assert scores.shape == (2, 1, patch_size(height, 3), patch_size(width, 3))
    # 256 px: the 70x70 PatchGAN of the paper scores a 30x30 grid of patches.
    assert patch_size(256, 3) == 30


def test_patchgan_refuses_images_below_its_receptive_field():
    net = PatchDiscriminator(width=4)
    assert net.min_size == 24
    with pytest.raises(ImageTooSmallError, match="at least 24 px"):
        net(torch.rand(1, 3, 23, 40))


def test_lsgan_loss_targets():
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert lsgan_loss(ones, True) == 0 and lsgan_loss(zeros, False) == 0
    assert lsgan_loss(zeros, True) == 1 and lsgan_loss(ones, False) == 1
    assert lsgan_loss(torch.full((1, 1, 2, 2), 0.5), True) == pytest.approx(0.25)


def test_image_pool_fills_then_swaps_about_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(5)
    first = torch.arange(5.0).view(5, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: the new images come back
    assert len(pool) == 5
    stored = swapped = 0
    for step in range(400):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        out = pool.query(new)
        assert len(pool) == 5  # never more than its size
        if out.item() != new.item():
            swapped += 1
            assert out.item() < 100 + step  # an older image came back...
            stored += 1
        assert (new.item() in [t.item() for t in pool.images]) == (out.item() != new.item())  # ...and the new one stays
    assert 160 < swapped < 240  # the 50% rule


def test_image_pool_is_deterministic_and_round_trips():
    images = [torch.rand(2, 3, 4, 4) for _ in range(6)]

    def run(pool: ImagePool, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        return [pool.query(batch) for batch in batches]

    torch.manual_seed(1)
    straight = run(ImagePool(3), images)
    torch.manual_seed(1)
    pool = ImagePool(3)
    first = run(pool, images[:3])
    state, rng = pool.state_dict(), torch.get_rng_state()
    restored = ImagePool(3)
    restored.load_state_dict(state)
    torch.set_rng_state(rng)
    rest = run(restored, images[3:])
    assert all(torch.equal(a, b) for a, b in zip(straight, first + rest))
    assert ImagePool(3).state_dict() == {}
    off = ImagePool(0)
    assert torch.equal(off.query(images[0]), images[0]) and len(off) == 0
    with pytest.raises(OptionError):
        ImagePool(-1)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_cycle_and_identity_losses_vanish_for_identity_generators():
    task = CycleGANTraining(CycleGANOptions(width=2, blocks=0, disc_width=2, pool_size=0))
    model = task.build_model()
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    model["a2b"], model["b2a"] = nn.Identity(), nn.Identity()
    terms = task.generator_losses(model, a, b, {})
    assert terms["cycle"] == 0 and terms["identity"] == 0 and terms["g_adv"] > 0
    # Halving generators: cycle a -> a/4 and identity a -> a/2, on the [-1, 1] scale (x2), lambda 10.
    model["a2b"], model["b2a"] = Scale(0.5), Scale(0.5)
    terms = task.generator_losses(model, a, b, {})
    expected_cycle = 10 * 2 * (0.75 * a.mean() + 0.75 * b.mean())
    expected_identity = 5 * 2 * (0.5 * a.mean() + 0.5 * b.mean())
    assert terms["cycle"] == pytest.approx(float(expected_cycle), rel=1e-5)
    assert terms["identity"] == pytest.approx(float(expected_identity), rel=1e-5)
    no_identity = CycleGANTraining(CycleGANOptions(width=2, blocks=0, disc_width=2, lambda_identity=0))
    assert "identity" not in no_identity.generator_losses(model, a, b, {})


def test_discriminator_loss_is_halved_lsgan_on_real_and_fake():
    task = CycleGANTraining(CycleGANOptions(width=2, blocks=0, disc_width=2, pool_size=0))
    model = task.build_model()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fake_a, fake_b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        terms = task.discriminator_terms(model, a, b, fake_a, fake_b)
        expected = 0.5 * (lsgan_loss(model["d_a"](a), True) + lsgan_loss(model["d_a"](fake_a), False))
    assert float(terms["d_a"]) == pytest.approx(float(expected)) and float(expected) > 0
