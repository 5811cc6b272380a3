"""Controls generated from method configs, option checks, mask paintings and the reproducing command."""

from __future__ import annotations

import dataclasses
import shlex

import numpy as np
import pytest

from atelier.cli import _build, build_parser
from atelier.errors import MaskError, OptionError, UnknownNameError
from atelier.methods import available_methods, get_method
from atelier.web.forms import (
    HIDDEN_OPTIONS,
    PALETTE,
    check_options,
    masks_from_painting,
    method_controls,
    reproduce_command,
    segmentation_from_painting,
)


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_every_cli_option_but_file_ones_becomes_a_control(name):
    cls = get_method(name)
    controls = {c["name"]: c for c in method_controls(cls, models=("wave",))}
    cli_fields = [f for f in dataclasses.fields(cls.Config) if f.metadata.get("cli", True)]
    assert set(controls) == {f.name for f in cli_fields} - HIDDEN_OPTIONS
    for f in cli_fields:
        if f.name not in controls:
            continue
        control = controls[f.name]
        assert control["help"] == f.metadata["help"]
        if f.metadata.get("choices"):
            assert control["kind"] == "menu" and control["choices"] == list(f.metadata["choices"])
        elif isinstance(f.default, bool):
            assert control["kind"] == "toggle"
        elif isinstance(f.default, float) and control["kind"] == "slider":
            assert control["min"] <= f.default <= control["max"]


def test_alpha_is_a_unit_slider_and_model_a_menu_of_the_served_models():
    adain = {c["name"]: c for c in method_controls(get_method("adain"))}
    assert (adain["alpha"]["kind"], adain["alpha"]["min"], adain["alpha"]["max"]) == ("slider", 0.0, 1.0)
    johnson = {c["name"]: c for c in method_controls(get_method("johnson"), models=("wave", "cin8"))}
    assert johnson["model"]["choices"] == ["wave", "cin8"]


def test_unknown_hidden_and_path_options_are_refused_with_one_line():
    with pytest.raises(UnknownNameError, match="did you mean alpha"):
        check_options("adain", {"alfa": 0.5})
    with pytest.raises(OptionError, match="names a file"):
        check_options("gatys", {"save_dir": "/tmp"})
    with pytest.raises(OptionError, match="init must be one of content, noise"):
        check_options("gatys", {"init": "../../etc/passwd"})
    with pytest.raises(OptionError, match="model must be one of wave"):
        check_options("johnson", {"model": "/etc/x.safetensors"}, models=("wave",))
    with pytest.raises(OptionError, match="alpha must be between 0 and 1"):
        check_options("adain", {"alpha": 3})
    assert check_options("adain", {"alpha": 0.25}) == {"alpha": 0.25}


def test_a_painting_becomes_one_mask_per_palette_colour():
    painting = np.zeros((4, 6, 4), np.uint8)
    painting[:, :2, :3], painting[:, :2, 3] = PALETTE[0], 255
    painting[:, 4:, :3], painting[:, 4:, 3] = np.array(PALETTE[1]) + 3, 128  # brush anti-aliasing: near, soft
    masks = masks_from_painting(painting, 2)
    assert masks.shape == (2, 4, 6)
    assert (masks[0, :, :2] == 255).all() and (masks[0, :, 2:] == 0).all()
    assert (masks[1, :, 4:] == 128).all() and (masks[1, :, :4] == 0).all()
    with pytest.raises(MaskError, match="empty"):
        masks_from_painting(np.zeros((4, 6, 4), np.uint8), 2)
    with pytest.raises(MaskError, match="RGBA"):
        masks_from_painting(np.zeros((4, 6, 3), np.uint8), 2)


def test_the_reproducing_command_parses_to_the_same_method_and_options():
    options = {"alpha": 0.4, "style_scale": 1.0}
    command = reproduce_command(method="adain", options=options, styles=["my style.jpg", "b.png"],
                                content="photo.jpg", style_weights=[0.3, 0.7], masks=2, size=384, seed=3)
    words = shlex.split(command)
    assert words[:3] == ["atelier", "stylize", "photo.jpg"]
    assert "--style-scale" not in words  # at its default
    args = build_parser().parse_args(words[1:])
    method, _ = _build(args)
    assert method.name == "adain" and method.config.alpha == 0.4
    assert args.style == ["my style.jpg", "b.png"] and args.style_weights == [0.3, 0.7]
    assert args.mask == ["mask1.png", "mask2.png"] and args.size == 384 and args.seed == 3
    johnson = shlex.split(reproduce_command(method="johnson", options={"model": "wave"}, styles=[]))
    assert johnson[3:5] == ["--model", "wave"] and "--method" not in johnson


def test_a_region_painting_becomes_a_segmentation_map_in_luan_et_als_palette():
    from atelier.io.segmentation import load_segmentation

    painting = np.zeros((4, 6, 4), np.uint8)
    painting[:, :3, :3], painting[:, :3, 3] = PALETTE[1], 255
    labels = load_segmentation(segmentation_from_painting(painting))
    # region 2 (brush 1) -> the second colour after black (green, label 1); the rest -> black (label 2)
    assert (labels[..., :3] == 1).all() and (labels[..., 3:] == 2).all()
