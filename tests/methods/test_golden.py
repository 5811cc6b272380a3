"""Every registered method on tiny random networks: a smoke test and golden output slices.

Each method in :func:`atelier.methods.available_methods` needs a builder in :data:`BUILDERS`
(tiny seeded random networks, no shipped weights), so a new method gets the smoke test for
free and fails loudly until it has one. The golden values (a 3x3 slice of the output's green
channel and the output's mean) were taken from the code before the framework layer was moved
out of the method modules; a move must leave them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from atelier.encoders import random_vgg19
from atelier.methods import Method, available_methods, get_method
from atelier.nets import DECODER_LAYERS, VGGDecoder
from atelier.nets.disentangle import DisentangledGenerator
from atelier.nets.hourglass import HourglassDecoder
from atelier.nets.linear import LinearTransform
from atelier.nets.multimodal import MultimodalNet
from atelier.nets.sanet import SANetTransform
from atelier.nets.style_aware import StyleAwareGenerator
from atelier.nets.transformer import TransformerNet

HEIGHT, WIDTH = 32, 48
#: The slice compared: green channel, rows and columns around the centre.
ROWS, COLS = slice(15, 18), slice(23, 26)


def _tame(decoder: VGGDecoder) -> VGGDecoder:
    """Scale a random decoder's last convolution around a 0.5 bias so its output stays inside
    (0, 1) (a random decoder's output would be clamped flat, hiding any difference)."""
    with torch.no_grad():
        last = decoder.stages.to_rgb[1]
        last.weight.mul_(0.5 / last.weight.abs().sum((1, 2, 3), keepdim=True))
        last.bias.fill_(0.5)
    return decoder


def _decoders(encoder: Any, layers: tuple[str, ...]) -> dict[str, VGGDecoder]:
    return {layer: _tame(VGGDecoder(layer, widths=encoder.widths)) for layer in layers}


def _feedforward(name: str, layers: tuple[str, ...]) -> Callable[[Any], Method]:
    def build(encoder: Any) -> Method:
        return get_method(name)(encoder=encoder, decoders=_decoders(encoder, layers), precision="fp32")

    return build


def _avatar(encoder: Any) -> Method:
    decoder = _tame(HourglassDecoder(encoder.widths))
    return get_method("avatar")(encoder=encoder, decoders={"relu4_1": decoder}, precision="fp32")


def _lst(encoder: Any) -> Method:
    decoders = _decoders(encoder, ("relu4_1",))
    networks = {"relu4_1": LinearTransform(encoder.channels("relu4_1"))}
    return get_method("lst")(encoder=encoder, decoders=decoders, networks=networks, precision="fp32")


def _attention(name: str) -> Callable[[Any], Method]:
    def build(encoder: Any) -> Method:
        decoders = _decoders(encoder, ("relu4_1",))
        transform = SANetTransform(encoder.channels("relu4_1"))
        for module in (transform.sanet4_1.out, transform.sanet5_1.out):  # trained-like: non-zero output conv
            torch.nn.init.normal_(module.weight, std=0.1)
        return get_method(name)(encoder=encoder, decoders=decoders, networks={"transform": transform},
                                precision="fp32")

    return build


def _johnson(encoder: Any) -> Method:
    net = TransformerNet(width=4, blocks=1, styles=2)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith(("norm.weight", "norm.bias")):
                parameter.add_(torch.randn(parameter.shape) * 0.5)
    return get_method("johnson")(network=net.eval(), precision="fp32")


def _gatys(encoder: Any) -> Method:
    return get_method("gatys")(encoder=encoder, iterations=3, scales=1, precision="fp32")


def _photo(encoder: Any) -> Method:
    return get_method("photo")(encoder=encoder, iterations=2, refine_iterations=0, scales=1)


def _network(name: str, build: Callable[[], torch.nn.Module]) -> Callable[[Any], Method]:
    """A method that runs one trained network (no VGG at inference): a tiny random one."""
    def make(encoder: Any) -> Method:
        cls = get_method(name)
        options = {"precision": "fp32"} if "precision" in cls.Config.field_names() else {}
        return cls(network=build().eval(), **options)

    return make


#: ``name -> build(encoder)``: the method on tiny random networks (seeded by the caller).
BUILDERS: dict[str, Callable[[Any], Method]] = {
    "adain": _feedforward("adain", ("relu4_1",)),
    "avatar": _avatar,
    "disentangle": _network("disentangle", lambda: DisentangledGenerator(width=4, blocks=1, code_dim=8)),
    "efdm": _feedforward("efdm", ("relu4_1",)),
    "gatys": _gatys,
    "iecontraast": _attention("iecontraast"),  # SANet's network: the same networks give SANet's output
    "johnson": _johnson,
    "lst": _lst,
    "multimodal": _network("multimodal", lambda: MultimodalNet(width=4)),
    "photo": _photo,
    "sanet": _attention("sanet"),
    "style_aware": _network("style_aware", lambda: StyleAwareGenerator(width=4, blocks=1)),
    "style_swap": _feedforward("style_swap", ("relu3_1",)),
    "wct": _feedforward("wct", DECODER_LAYERS),
}

#: ``name -> (3x3 slice of the output's green channel, mean of the output)``, taken before the move
#: (efdm, disentangle, multimodal, style_aware: when each was added, after the move).
GOLDEN: dict[str, tuple[list[list[float]], float]] = {
    "adain": ([
                [0.4895805, 0.4895956, 0.4895936],
                [0.4895877, 0.4895962, 0.4896036],
                [0.4895866, 0.4895954, 0.4896016]],
                0.4927784),
    "avatar": ([
                [0.4948881, 0.4889507, 0.49224],
                [0.5008428, 0.499047, 0.4980325],
                [0.5054379, 0.5048913, 0.5009177]],
                0.4837414),
    "disentangle": ([  # retaken when the decoder's up path moved to layer norm and codes to the sphere
                [0.5807258, 0.6013119, 0.6086211],
                [0.5941858, 0.6074924, 0.6155494],
                [0.5808917, 0.5836011, 0.5861643]],
                0.5177129),
    "efdm": ([
                [0.4895883, 0.4895994, 0.4895985],
                [0.4895945, 0.4895986, 0.4896079],
                [0.4895966, 0.4895992, 0.4896093]],
                0.492778),
    "gatys": ([
                [0.0812916, 0.4932463, 0.5596446],
                [0.248297, 0.6234135, 0.8315655],
                [0.5857453, 0.4454837, 0.8475066]],
                0.4934338),
    "johnson": ([
                [0.5018305, 0.4393065, 0.6339858],
                [0.5658157, 0.4843555, 0.6938255],
                [0.5027285, 0.4647598, 0.668513]],
                0.5425945),
    "lst": ([
                [0.4896069, 0.4896147, 0.4896095],
                [0.4896155, 0.4896245, 0.4896219],
                [0.4896142, 0.4896259, 0.4896194]],
                0.492779),
    # Retaken when the upsampling layers became one transposed convolution (same products, summed
    # in another order; the tiny net's instance norms amplify that float32 rounding to 1e-4).
    "multimodal": ([
                [0.5092511, 0.6632972, 0.5171118],
                [0.423121, 0.5585528, 0.5656853],
                [0.9215229, 0.9755384, 0.5101398]],
                0.4816775),
    "photo": ([
                [0.072571, 0.5041437, 0.5428094],
                [0.2528286, 0.6461634, 0.864773],
                [0.5594085, 0.4587131, 0.8668805]],
                0.5014657),
    "sanet": ([
                [0.489571, 0.4895813, 0.4895897],
                [0.489574, 0.4895744, 0.4895962],
                [0.4895714, 0.4895712, 0.4895902]],
                0.4927724),
    "style_aware": ([
                [0.4560776, 0.4799333, 0.49485],
                [0.4702953, 0.4962509, 0.5180882],
                [0.4911688, 0.5033391, 0.5008362]],
                0.5062925),
    "style_swap": ([
                [0.4984904, 0.4983454, 0.4982505],
                [0.4983018, 0.4983101, 0.4982079],
                [0.4983563, 0.4986005, 0.4986331]],
                0.4964775),
    "wct": ([
                [0.5190044, 0.5190044, 0.5190044],
                [0.5190044, 0.5190044, 0.5190044],
                [0.5190044, 0.5190044, 0.5190044]],
                0.4923879),
}
GOLDEN["iecontraast"] = GOLDEN["sanet"]  # the shared attention pipeline: same networks, same output


@pytest.fixture(scope="module")
def encoder():
    return random_vgg19(seed=0)


def _stylize(name: str, encoder: Any) -> torch.Tensor:
    builder = BUILDERS.get(name)
    if builder is None:
        pytest.fail(f"method {name!r} is registered but has no tiny builder in tests/methods/test_golden.py; "
                    "add one to BUILDERS (and its golden values)")
    torch.manual_seed(0)
    method = builder(encoder)
    generator = torch.Generator().manual_seed(1)
    content = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)
    style = torch.rand(1, 3, 40, 40, generator=generator)
    if method.uses_style_images:
        styles, weights = [style], [1.0]
    else:
        count = method.style_count()
        styles, weights = [], [1.0 / count] * count
    torch.manual_seed(2)
    result = method.stylize(content, styles, style_weights=weights, progress=False, seed=3)
    return result.image


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_every_registered_method_runs_on_tiny_networks(name, encoder):
    image = _stylize(name, encoder)
    assert image.shape == (1, 3, HEIGHT, WIDTH)
    assert torch.isfinite(image).all() and 0 <= float(image.min()) and float(image.max()) <= 1


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_golden_slices_are_unchanged(name, encoder):
    if name not in GOLDEN:
        pytest.fail(f"method {name!r} has no golden values in tests/methods/test_golden.py")
    values, mean = GOLDEN[name]
    image = _stylize(name, encoder)
    torch.testing.assert_close(image[0, 1, ROWS, COLS], torch.tensor(values), atol=2e-6, rtol=0)
    assert abs(float(image.mean()) - mean) < 2e-6


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_every_method_refuses_what_does_not_fit_in_atelier_memory_gb(name, encoder, monkeypatch):
    """Under a tiny ``ATELIER_MEMORY_GB`` every method refuses, in one line with the budget, before it runs.

    ``pipelines.memory.check_fits`` is the one place that refuses; a method that never calls it, or
    calls it only after doing work, fails here (its networks would be called).
    """
    from atelier.errors import ImageTooLargeError

    method = BUILDERS[name](encoder)
    calls: list[str] = []
    modules = {id(m): m for m in [encoder, *method.__dict__.values()] if isinstance(m, torch.nn.Module)}
    hooks = [m.register_forward_pre_hook(lambda m, _: calls.append(type(m).__name__)) for m in modules.values()]
    content = torch.rand(1, 3, HEIGHT, WIDTH)
    styles, weights = ([torch.rand(1, 3, 40, 40)], [1.0]) if method.uses_style_images else \
        ([], [1.0 / method.style_count()] * method.style_count())
    try:
        monkeypatch.setenv("ATELIER_MEMORY_GB", "0.00001")  # about 10 KB: nothing fits
        with pytest.raises(ImageTooLargeError) as refused:
            method.stylize(content, styles, style_weights=weights, progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    message = str(refused.value)
    assert "\n" not in message and "GiB available" in message and "ATELIER_MEMORY_GB" in message
    assert name in message or "generator" in message or "network" in message, f"the refusal says no what: {message}"
    assert "optimization's" not in message  # photo's stages name the method the user chose
    assert not calls, f"{name} ran its networks before refusing"
