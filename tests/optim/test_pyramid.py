from __future__ import annotations

import torch

from atelier.io.images import resize_to
from atelier.optim import coarse_to_fine
from helpers import stripes_image

SIZES = [(24, 32), (48, 64)]


def pull_towards(target):
    """A criterion whose minimum is ``target`` (resized to the image's size)."""
    def criterion(image):
        loss = (image - resize_to(target, tuple(image.shape[-2:]))).pow(2).sum() * 100
        return loss, {"pull": float(loss.detach())}
    return criterion


def test_detail_restores_the_band_the_coarse_level_cannot_hold():
    """Content detail on: a finer level starts from the coarse result plus the content's detail band.

    Without optimisation steps the coarse result is the downsized content, so the detail band
    gives the content back exactly, where plain upsampling gives a blurred copy.
    """
    content = stripes_image(48, 64) * 0.8 + 0.1  # fine texture: most of it lives in the detail band
    plain = coarse_to_fine(content, SIZES, lambda *_: pull_towards(content), iterations=[0, 0])
    detailed = coarse_to_fine(content, SIZES, lambda *_: pull_towards(content), iterations=[0, 0], detail=content)
    assert torch.allclose(detailed.image, content, atol=1e-5)
    assert (plain.image - content).abs().mean() > 0.05


def test_detail_keeps_what_the_coarse_level_changed():
    """The coarse level's colour change survives into the finer start; only the band is added."""
    content = stripes_image(48, 64) * 0.6 + 0.1
    brighter = content + 0.2

    def criterion_at(level, size):
        return pull_towards(brighter if level == 0 else content)

    run = coarse_to_fine(content, SIZES, criterion_at, iterations=[60, 0], detail=content)
    assert torch.allclose(run.image, brighter, atol=0.02)
