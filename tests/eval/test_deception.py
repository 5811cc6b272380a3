"""The deception rate (Sanakoyeu et al. 2018, sec. 4.1): genre classifier and report."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from atelier.cli import main
from atelier.eval.deception import StyleClassifier, deception_report, find_collections
from atelier.nets.style_aware import StyleAwareGenerator
from atelier.train.data import MIN_COLLECTION_IMAGES, DatasetError
from conftest import _write_folder
from helpers import smooth_image, stripes_image

pytestmark = pytest.mark.usefixtures("one_thread")


def _collections(root):
    stripes = [stripes_image(32, 32, period=3 + i % 4) for i in range(MIN_COLLECTION_IMAGES + 2)]
    smooth = [smooth_image(32, 32, seed=i) for i in range(MIN_COLLECTION_IMAGES)]
    _write_folder(root / "stripes", stripes)
    _write_folder(root / "smooth", smooth)
    # A sub-collection of stripes (as kaokore_* inside kaokore): left out, so each image has one genre.
    files = sorted(p.relative_to(root) for p in (root / "stripes").rglob("img*"))
    (root / "some_stripes.txt").write_text("\n".join(str(p) for p in files[:MIN_COLLECTION_IMAGES]))
    return root


def test_find_collections_drops_sub_collections_and_refuses_one(tmp_path):
    found, notes = find_collections(_collections(tmp_path / "c"))
    assert sorted(found) == ["smooth", "stripes"] and notes == ["collection some_stripes is part of stripes: left out"]
    alone = tmp_path / "alone"
    _write_folder(alone / "only", [smooth_image(20, 20, seed=i) for i in range(MIN_COLLECTION_IMAGES)])
    with pytest.raises(DatasetError, match="at least 2 are needed"):
        find_collections(alone)


def test_classifier_tells_genres_apart(tiny_encoder):
    classifier = StyleClassifier(tiny_encoder, size=32)
    stripes = classifier.features(torch.cat([stripes_image(32, 32, period=p) for p in (3, 4, 5, 6)]))
    smooth = classifier.features(torch.cat([smooth_image(32, 32, seed=s) for s in range(4)]))
    assert classifier.fit_genres({"stripes": stripes, "smooth": smooth}) == 1.0
    held = classifier.features(torch.cat([stripes_image(32, 32, period=7), smooth_image(32, 32, seed=9)]))
    assert classifier.genres_of(held) == ["stripes", "smooth"]


def test_report_scores_models_and_untouched_photos(tmp_path, tiny_encoder, capsys):
    collections = _collections(tmp_path / "c")
    photos = _write_folder(tmp_path / "photos", [smooth_image(40, 48, seed=20 + i) for i in range(3)])
    model = tmp_path / "stripes_model.safetensors"
    save_file(StyleAwareGenerator(width=2, blocks=0).state_dict(), str(model),
              metadata={"task": "style_aware", "collection": "stripes", "width": "2", "blocks": "0"})
    report = deception_report(collections, photos, models=[str(model)], methods=[], size=48, per_genre=8,
                              classifier_size=32, output=tmp_path / "report", progress=False, encoder=tiny_encoder)
    assert report.genres == ["smooth", "stripes"] and report.counts == {"smooth": 8, "stripes": 8}  # per_genre
    assert report.accuracy["held_out"] == 1.0
    assert report.rates["photos (untouched)"] == {"stripes": 0.0}  # smooth photos are not stripes
    # The one painting Gatys/AdaIN would get: a file of the target collection.
    assert report.paintings["stripes"] in {p.name for p in (collections / "stripes").rglob("img*")}
    assert 0.0 <= report.rates["stripes_model (model)"]["stripes"] <= 1.0
    saved = json.loads((tmp_path / "report" / "deception.json").read_text())
    assert saved["rates"] == report.rates
    assert "| stripes_model (model) |" in (tmp_path / "report" / "deception.md").read_text()

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(other), metadata={"task": "style_aware", "collection": "cubism"})
    assert main(["eval", "--collections", str(collections), "--contents", str(photos), "--models", str(other),
                 "-o", str(tmp_path / "r2"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "collection 'cubism' is not among the collections" in err[0]
