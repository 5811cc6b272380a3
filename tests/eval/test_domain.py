from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.eval import DomainJudge
from helpers import smooth_image


def _summer(seed: int) -> torch.Tensor:
    # Greenish, mid-bright smooth images.
    return (smooth_image(40, 48, seed=seed) * torch.tensor([0.4, 0.8, 0.3])[:, None, None]).clamp(0, 1)


def _winter(seed: int) -> torch.Tensor:
    # Pale, bluish images of low contrast.
    return (0.6 + 0.35 * smooth_image(36, 52, seed=seed) * torch.tensor([0.8, 0.9, 1.0])[:, None, None]).clamp(0, 1)


def test_judge_separates_two_domains_and_labels_held_out_images(tiny_encoder):
    judge = DomainJudge(tiny_encoder, size=32)
    a = judge.features(_summer(s) for s in range(6))
    b = judge.features(_winter(10 + s) for s in range(6))
    assert a.shape == (6, 2 * sum(tiny_encoder.channels(layer) for layer in judge.layers))
    assert judge.fit(a, b) == 1.0
    held_a = judge.features(_summer(s) for s in range(20, 26))
    held_b = judge.features(_winter(s) for s in range(30, 36))
    assert judge.share_b(held_a) <= 1 / 6 and judge.share_b(held_b) >= 5 / 6
    # Probabilities, one per row; a winter image scores higher than a summer one.
    probabilities = judge.predict(torch.cat([held_a, held_b]))
    assert probabilities.shape == (12,) and float(probabilities.min()) >= 0 and float(probabilities.max()) <= 1
    assert float(probabilities[6:].mean()) > float(probabilities[:6].mean()) + 0.5


def test_judge_errors(tiny_encoder):
    judge = DomainJudge(tiny_encoder, size=32)
    features = judge.features(_summer(0))
    with pytest.raises(OptionError, match="not fitted"):
        judge.predict(features)
    with pytest.raises(OptionError, match="at least 2 images per domain"):
        judge.fit(features, judge.features(_winter(1)))
    with pytest.raises(OptionError, match="at least one image"):
        judge.features([])
    with pytest.raises(OptionError, match="at least 16 px"):
        DomainJudge(tiny_encoder, size=8)
    judge.fit(judge.features(_summer(s) for s in range(3)), judge.features(_winter(s) for s in range(3)))
    with pytest.raises(OptionError, match="columns"):
        judge.predict(features[:, :5])
