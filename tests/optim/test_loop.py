from __future__ import annotations

import pytest
import torch

from atelier.errors import OptionError
from atelier.optim import optimize_image, pyramid_sizes
from atelier.optim.schedule import auto_scales
from atelier.progress import Progress, format_duration


def quadratic(target):
    def criterion(image):
        loss = (image - target).pow(2).sum() * 1e6  # large scale, as with caffe features
        return loss, {"quad": float(loss.detach())}
    return criterion


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loop_decreases_loss(optimizer):
    target = torch.rand(1, 3, 8, 8)
    result = optimize_image(quadratic(target), torch.zeros(1, 3, 8, 8), iterations=60, optimizer=optimizer,
                            lr=0.05 if optimizer == "adam" else None)
    assert result.loss < 0.01 * result.history[0]
    assert result.iterations == 60 and not result.interrupted
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_keyboard_interrupt_returns_best_so_far():
    target = torch.rand(1, 3, 8, 8)
    crit = quadratic(target)
    calls = []

    def interrupting(image):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return crit(image)

    result = optimize_image(interrupting, torch.zeros(1, 3, 8, 8), iterations=50)
    assert result.interrupted and result.iterations == 5
    assert result.loss == min(result.history) < result.history[0]


def test_non_finite_loss_stops_with_warning():
    def exploding(image):
        loss = image.sum() * (float("nan") if exploding.n > 2 else 1.0)
        exploding.n += 1
        return loss, {}
    exploding.n = 0
    with pytest.warns(RuntimeWarning, match="loss became nan"):
        result = optimize_image(exploding, torch.full((1, 3, 4, 4), 0.5), iterations=10, optimizer="adam")
    assert result.iterations < 10 and result.loss == pytest.approx(24.0, rel=0.1)


def test_bad_optimizer_and_iterations():
    with pytest.raises(OptionError, match="optimizer"):
        optimize_image(quadratic(torch.zeros(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2), iterations=1, optimizer="sgd")
    with pytest.raises(OptionError, match="iterations"):
        optimize_image(quadratic(torch.zeros(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2), iterations=-1)


def test_on_iteration_and_progress(capsys):
    import io
    stream = io.StringIO()
    seen = []
    bar = Progress(5, label="x ", stream=stream, interval=0)
    optimize_image(quadratic(torch.rand(1, 3, 4, 4)), torch.zeros(1, 3, 4, 4), iterations=5, progress=bar,
                   on_iteration=lambda i, img: seen.append(i))
    assert seen == [1, 2, 3, 4, 5]
    lines = stream.getvalue().strip().splitlines()
    assert lines[-1].startswith("x 5/5 it loss") and "s/it" in lines[-1]
    assert "ETA" in lines[0]


def test_pyramid_sizes_and_auto_scales():
    assert pyramid_sizes(300, 512, 3) == [(75, 128), (150, 256), (300, 512)]
    assert pyramid_sizes(40, 64, 3, min_side=32) == [(40, 64)]
    assert [auto_scales(s) for s in (256, 512, 1024, 2048)] == [1, 2, 3, 4]
    with pytest.raises(OptionError):
        pyramid_sizes(10, 10, 0)


def test_format_duration():
    assert format_duration(75.2) == "1m15s" and format_duration(3700) == "1h01m" and format_duration(3) == "3s"
