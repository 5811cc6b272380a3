"""The deception rate (Sanakoyeu et al. 2018, sec. 4.1): genre classifier and report."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from atelier.cli import main
from atelier.eval.deception import PHOTO, StyleClassifier, deception_report, find_collections
from atelier.eval.domain import DOMAIN_LAYERS
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
    # DOMAIN_LAYERS: a random narrow encoder's relu5_1 at 2 x 2 positions is noise.
    report = deception_report(collections, photos, models=[str(model)], methods=[], control=None, size=48,
                              per_genre=8, classifier_size=32, layers=DOMAIN_LAYERS, output=tmp_path / "report",
                              progress=False, encoder=tiny_encoder)
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


def _checker(period: int, seed: int) -> torch.Tensor:
    """A two-colour checkerboard (1, 3, 32, 32): a second hard-edged "genre" next to stripes."""
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    board = ((x // period + y // period) % 2).float()
    colour = torch.rand(3, 1, 1, generator=torch.Generator().manual_seed(seed))
    return (board * colour + (1 - board) * (1 - colour))[None]


def test_photo_class_turns_a_saturated_rate_into_a_ranking(tiny_encoder):
    """Without a photo class every output must be a genre; photo-like outputs then count as the target."""
    classifier = StyleClassifier(tiny_encoder, size=32)
    features = classifier.features
    genres = {"stripes": features(torch.cat([stripes_image(32, 32, period=p) for p in (3, 4, 5, 6, 7, 8)])),
              "checker": features(torch.cat([_checker(p, seed=p) for p in (2, 3, 4, 5, 6, 8)]))}
    photos = features(torch.cat([smooth_image(32, 32, seed=s) for s in range(8)]))

    def outputs(genre, strength):  # "stylized photos": the genre's texture blended over a photo
        texture = (lambda i: _checker(2 + i % 5, seed=50 + i)) if genre == "checker" else (
            lambda i: stripes_image(32, 32, period=3 + i % 5))
        return features(torch.cat([strength * texture(i) + (1 - strength) * smooth_image(32, 32, seed=100 + i)
                                   for i in range(6)]))

    rows = {"strong": outputs("checker", 0.9), "medium": outputs("checker", 0.5),
            "control": outputs("stripes", 0.2)}  # barely stylized, and towards the other genre

    def rates():
        return {row: classifier.genres_of(x).count("checker") / len(x) for row, x in rows.items()}

    classifier.fit_genres(genres)
    assert rates() == {"strong": 1.0, "medium": 1.0, "control": 1.0}  # saturated: no ranking, control fails
    classifier.fit_genres({**genres, PHOTO: photos})
    ranked = rates()
    assert ranked["strong"] == 1.0 and 0.0 < ranked["medium"] < 1.0 and ranked["control"] == 0.0
    assert classifier.genres_of(outputs("stripes", 0.2)) == [PHOTO] * 6


def test_calibration_keeps_labels_and_softens_probabilities(tiny_encoder):
    classifier = StyleClassifier(tiny_encoder, size=32)
    stripes = classifier.features(torch.cat([stripes_image(32, 32, period=p) for p in (3, 4, 5, 6)]))
    smooth = classifier.features(torch.cat([smooth_image(32, 32, seed=s) for s in range(4)]))
    classifier.fit_genres({"stripes": stripes, "smooth": smooth}, decay=1e-4)
    # A held-out set the classifier gets half wrong: its confident probabilities must come down.
    held = torch.cat([stripes, smooth])
    wrong = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    before = classifier.probabilities(held).max(dim=1).values.mean()
    labels = classifier.classify(held)
    assert classifier.calibrate(held, wrong) > 1.0
    assert torch.equal(classifier.classify(held), labels)
    assert classifier.probabilities(held).max(dim=1).values.mean() < before


def test_report_with_photo_class_and_control(tmp_path, tiny_encoder, monkeypatch):
    import atelier.pipelines.base

    monkeypatch.setattr(atelier.pipelines.base, "load_vgg19", lambda *a, **k: tiny_encoder)  # the control's Gatys
    collections = _collections(tmp_path / "c")
    contents = _write_folder(tmp_path / "contents", [smooth_image(40, 48, seed=20 + i) for i in range(3)])
    photos = _write_folder(tmp_path / "photos", [smooth_image(40, 40, seed=40 + i) for i in range(10)])
    (photos / "copy.jpg").write_bytes((contents / "img0.jpg").read_bytes())  # a stylized photo: left out
    model = tmp_path / "stripes_model.safetensors"
    save_file(StyleAwareGenerator(width=2, blocks=0).state_dict(), str(model),
              metadata={"task": "style_aware", "collection": "stripes", "width": "2", "blocks": "0"})
    listed = tmp_path / "contents.txt"  # --contents may be a text list, as the collections are
    listed.write_text("\n".join(str(p) for p in sorted(contents.rglob("img*"))))
    report = deception_report(collections, listed, photos=photos, models=[str(model)], methods=[],
                              control="gatys:iterations=1,scales=1", size=48, per_genre=10, classifier_size=32,
                              layers=DOMAIN_LAYERS, output=tmp_path / "report", progress=False, encoder=tiny_encoder)
    assert report.genres == ["smooth", "stripes", PHOTO] and report.counts[PHOTO] == 10
    assert set(report.class_accuracy) == {"smooth", "stripes", PHOTO}
    assert any("1 left out: they are being stylized" in note for note in report.notes)
    assert sum(report.labels["photos (untouched)"]["stripes"].values()) == pytest.approx(1.0)
    control = "gatys:iterations=1,scales=1, one painting of another genre (control)"
    assert set(report.rates[control]) == {"stripes"} and set(report.controls["stripes"]) == {"smooth"}
    assert report.paintings.keys() == {"smooth", "stripes"}  # the control needs every genre's painting
    assert 0.0 <= report.confidence[control]["stripes"] <= 1.0
    written = (tmp_path / "report" / "deception.md").read_text()
    assert "control for stripes, painting of smooth:" in written and "held-out recall" in written


def test_bad_photo_class_and_collections_give_one_line(tmp_path, capsys):
    collections = _collections(tmp_path / "c")
    contents = _write_folder(tmp_path / "contents",
                             [smooth_image(32, 32, seed=i) for i in range(MIN_COLLECTION_IMAGES)])
    few = _write_folder(tmp_path / "few", [smooth_image(32, 32, seed=50 + i) for i in range(3)])
    base = ["eval", "--collections", str(collections), "--contents", str(contents), "--models", "kaokore",
            "-o", str(tmp_path / "r"), "-q"]
    cases = [
        ([*base, "--photos", str(few)], f"fewer than the {MIN_COLLECTION_IMAGES} needed"),
        ([*base, "--photos", str(contents)], "photos for the photo class once the"),  # all of them being stylized
        ([*base, "--photos", str(tmp_path / "nowhere")], "no such file or folder"),
        (["eval", "--photos", str(few), "--contents", str(contents), "-o", str(tmp_path / "r")], "use it with"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ink.txt").write_text("missing.jpg\n" * MIN_COLLECTION_IMAGES)
    cases.append(([*base[:2], str(broken), *base[3:]], "do not exist"))  # a list naming missing paintings
    cases.append(([*base[:2], str(tmp_path / "no_collections"), *base[3:]], "no such folder of collections"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "r").exists()
