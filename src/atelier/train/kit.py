"""Moving a training kit to a GPU machine and its results back, within a device tool's limits.

The tool that drives a lent GPU carries at most 64 MiB per call (the checkout plus up to 8
ignored paths) and brings back at most 8 files of at most 16 MiB each (64 MiB together) per
call. This module holds the transport pieces of ``atelier recipe`` (:mod:`atelier.train.recipe`
decides *what* goes into a kit):

* weights quantized for transport: int8 per output channel with absmax scales
  (:func:`quantize_state`, :func:`dequantize_state`; they only start the trainings);
* a kit split into *parts* of a byte budget (:func:`assign_parts`), each part a folder with
  the kit manifest ``kit.json``; :func:`stage_part` copies a carried part into the persistent
  kit folder on the machine (checking sha256), :func:`staged_manifest` checks all arrived;
* results as one uncompressed tar in chunks with a manifest (:func:`build_results`), handed out
  a few chunks per call (:func:`collect`) and put back together locally with every sha256
  checked (:func:`unpack`); a prefix of the chunks already yields the files it covers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..errors import AtelierError, WeightsError
from ..io.atomic import atomic_path
from ..nets.pretrained import read_weights

__all__ = [
    "KIT_FORMAT",
    "MIB",
    "RESULTS_FORMAT",
    "KitError",
    "assign_parts",
    "build_results",
    "collect",
    "dequantize_file",
    "dequantize_state",
    "quantize_file",
    "quantize_state",
    "sha256_file",
    "stage_part",
    "staged_manifest",
    "unpack",
]

MIB = 2**20
KIT_FORMAT = "atelier-gpu-kit/1"
RESULTS_FORMAT = "atelier-recipe-results/1"
#: Suffix of the per-channel scale stored next to each quantized tensor.
SCALE_SUFFIX = ".__scale__"
#: Header key listing the quantized tensors (removed again by :func:`dequantize_state`).
QUANTIZED_KEY = "atelier_quantized"
#: Tensors with fewer values than this stay float16 (biases, norms: tiny, and sensitive).
MIN_QUANTIZED = 256


class KitError(AtelierError):
    """A kit or results file is missing, incomplete or corrupt."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(MIB):
            digest.update(block)
    return digest.hexdigest()


# -- int8 transport of weights ----------------------------------------------------------------
def quantize_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """int8 per-output-channel absmax quantization of the float tensors with >= 2 dims.

    ``w[c] ~ q[c] * scale[c]`` with ``scale[c] = max|w[c]| / 127`` (float32) and ``q`` int8, so
    every value is off by at most ``scale[c] / 2``; small and 1-d tensors stay float16.

    Returns:
        The tensors to store (``name`` int8 plus ``name + SCALE_SUFFIX``, or float16) and the
        quantized names.
    """
    out: dict[str, Tensor] = {}
    quantized: list[str] = []
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.ndim < 2 or tensor.numel() < MIN_QUANTIZED:
            out[name] = tensor.half() if tensor.is_floating_point() else tensor
            continue
        flat = tensor.float().reshape(tensor.shape[0], -1)
        scale = flat.abs().amax(dim=1) / 127.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        out[name] = (flat / safe[:, None]).round().clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
        out[name + SCALE_SUFFIX] = scale.contiguous()
        quantized.append(name)
    return out, quantized


def dequantize_state(tensors: dict[str, Tensor], quantized: Iterable[str], dtype: torch.dtype = torch.float16
                     ) -> dict[str, Tensor]:
    """Inverse of :func:`quantize_state`: ``q * scale`` per output channel, in ``dtype``."""
    names = set(quantized)
    out: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if name in names:
            scale = tensors[name + SCALE_SUFFIX].float()
            shape = [-1] + [1] * (tensor.ndim - 1)
            out[name] = (tensor.float() * scale.reshape(shape)).to(dtype)
        else:
            out[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        return read_weights(path)
    except WeightsError as error:
        raise KitError(str(error)) from None


def quantize_file(source: str | Path, target: str | Path, *, exact: bool = False) -> dict[str, Any]:
    """Write the int8 transport copy of a weights file (``exact``: a float16 copy instead), its header kept.

    Returns ``{sha256 and bytes of the original, bytes, max_abs_error}``.
    """
    source, target = Path(source), Path(target)
    state, metadata = _read(source)
    quantized: list[str] = []
    if exact:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    else:
        tensors, quantized = quantize_state(state)
    error = 0.0
    restored = dequantize_state(tensors, quantized, torch.float32)
    for name, tensor in state.items():
        if tensor.is_floating_point():
            error = max(error, float((restored[name] - tensor.float()).abs().max()) if tensor.numel() else 0.0)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(temp),
                  metadata=metadata | {QUANTIZED_KEY: json.dumps(quantized)})
    return {"sha256": sha256_file(source), "original_bytes": source.stat().st_size,
            "bytes": target.stat().st_size, "max_abs_error": error, "int8": bool(quantized)}


def dequantize_file(source: str | Path, target: str | Path) -> Path:
    """Write the float16 weights file of a transport copy, with the original header."""
    source, target = Path(source), Path(target)
    tensors, metadata = _read(source)
    quantized = json.loads(metadata.pop(QUANTIZED_KEY, "[]"))
    state = dequantize_state(tensors, quantized)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(temp), metadata=metadata)
    return target


# -- kit parts --------------------------------------------------------------------------------
def assign_parts(items: Sequence[tuple[str, int]], budget: int) -> list[list[str]]:
    """Split ``(name, bytes)`` items into parts of at most ``budget`` bytes.

    First-fit in order (each item into the earliest part with room), so the items listed first (encoder, weights)
    open part 1 and the shards of one folder stay mostly together. An item above the budget
    raises :class:`KitError`.
    """
    parts: list[list[str]] = []
    sizes: list[int] = []
    for name, size in items:
        if size > budget:
            raise KitError(f"{name} has {size / MIB:.1f} MiB, more than a part may hold ({budget / MIB:.1f} MiB)")
        for index, used in enumerate(sizes):
            if used + size <= budget:
                parts[index].append(name)
                sizes[index] += size
                break
        else:
            parts.append([name])
            sizes.append(size)
    return parts


def _checked_relpath(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise KitError(f"unsafe path in a manifest: {name!r}")
    return path.as_posix()


def stage_part(part_dir: str | Path, kit: str | Path) -> str:
    """Copy a carried part folder into the kit folder ``kit``, checking every file's sha256.

    A kit folder holding another kit (another ``id``) is emptied first. Returns a summary line.
    """
    part_dir, kit = Path(part_dir), Path(kit)
    manifest_path = part_dir / "kit.json"
    if not manifest_path.is_file():
        raise KitError(f"{part_dir}: no kit.json; carry a part folder made by `atelier recipe pack` (gpu_kit/partN)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != KIT_FORMAT:
        raise KitError(f"{manifest_path}: not a kit manifest ({manifest.get('format')!r})")
    name = part_dir.name
    parts = {p["name"]: p for p in manifest["parts"]}
    if name not in parts:
        raise KitError(f"{part_dir}: the manifest has no part {name!r} (parts: {', '.join(parts)})")
    existing = kit / "kit.json"
    if existing.is_file() and json.loads(existing.read_text()).get("id") != manifest["id"]:
        shutil.rmtree(kit)
    kit.mkdir(parents=True, exist_ok=True)
    total = 0
    for relpath, entry in parts[name]["files"].items():
        relpath = _checked_relpath(relpath)
        source, target = part_dir / relpath, kit / relpath
        if not source.is_file():
            raise KitError(f"{source}: missing from the carried part (was the part folder carried whole?)")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if sha256_file(target) != entry["sha256"]:
            target.unlink()
            raise KitError(f"{source}: sha256 mismatch; the part is corrupt, run `atelier recipe pack` again")
        total += entry["bytes"]
    with atomic_path(existing) as temp:
        temp.write_text(json.dumps(manifest, indent=1) + "\n")
    (kit / "staged").mkdir(exist_ok=True)
    (kit / "staged" / name).write_text("ok\n")
    done = sorted(p.name for p in (kit / "staged").iterdir())
    return (f"staged {name}: {len(parts[name]['files'])} files, {total / MIB:.1f} MiB into {kit} "
            f"(parts staged: {', '.join(done)} of {len(parts)})")


def staged_manifest(kit: str | Path) -> dict[str, Any]:
    """The manifest of the kit in ``kit``, checking that every part was staged."""
    kit = Path(kit)
    path = kit / "kit.json"
    if not path.is_file():
        raise KitError(f"{kit}: no staged kit; carry gpu_kit/part1 and run `atelier recipe stage gpu_kit/part1 "
                       f"--kit {kit}` first")
    manifest = json.loads(path.read_text())
    missing = [p["name"] for p in manifest["parts"] if not (kit / "staged" / p["name"]).is_file()]
    if missing:
        raise KitError(f"{kit}: parts not staged yet: {', '.join(missing)} (carry gpu_kit/<part> and run "
                       "`atelier recipe stage` for each)")
    return manifest


# -- results ----------------------------------------------------------------------------------
def build_results(root: str | Path, files: Sequence[str], target: str | Path, *, chunk_bytes: int,
                  chunks_per_part: int) -> dict[str, Any]:
    """Tar ``files`` into ``target``/results.tar, split into chunks, and write their manifest.

    ``files`` are paths relative to ``root``, in this order: most important first. The tar is split into
    chunks of ``chunk_bytes``; the manifest ``target``/results_manifest.json holds every file's and chunk's
    sha256 and the part of each chunk.
    """
    root, target = Path(root), Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    entries = []
    tar_path = target / "results.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            path = root / name
            info = tar.gettarinfo(str(path), arcname=_checked_relpath(name))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(path, "rb") as file:
                tar.addfile(info, file)
            entries.append({"path": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    chunks: list[dict[str, Any]] = []
    with open(tar_path, "rb") as tar_file:
        index = 0
        while block := tar_file.read(chunk_bytes):
            name = f"results.tar.{index:03d}"
            (target / name).write_bytes(block)
            chunks.append({"name": name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest(),
                           "part": index // chunks_per_part + 1})
            index += 1
    manifest = {"format": RESULTS_FORMAT, "tar_sha256": sha256_file(tar_path), "tar_bytes": tar_path.stat().st_size,
                "chunk_bytes": chunk_bytes, "parts": max((c["part"] for c in chunks), default=0),
                "chunks": chunks, "files": entries}
    tar_path.unlink()
    (target / "results_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def collect(results: str | Path, out: str | Path, part: int, *, extras: Sequence[str | Path] = ()) -> list[Path]:
    """Copy the chunks of ``part`` (1-based) and the manifest from the results folder into ``out``.

    Also copies ``extras``: plain files worth reading without unpacking, e.g. the run log.
    """
    results, out = Path(results), Path(out)
    path = results / "results_manifest.json"
    if not path.is_file():
        raise KitError(f"{results}: no results yet; run `atelier recipe run` first")
    manifest = json.loads(path.read_text())
    if not 1 <= part <= manifest["parts"]:
        raise KitError(f"part {part} does not exist: the results have {manifest['parts']} parts")
    out.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copyfile(path, out / path.name))]
    for extra in extras:
        extra = Path(extra)
        if extra.is_file():
            written.append(Path(shutil.copyfile(extra, out / extra.name)))
    for chunk in manifest["chunks"]:
        if chunk["part"] == part:
            written.append(Path(shutil.copyfile(results / chunk["name"], out / chunk["name"])))
    return written


class _Concatenated:
    """A read-only file object over several files back to back (the chunks of a tar)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.handle = open(self.paths[0], "rb") if self.paths else None
        self.index = 0

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while self.handle is not None and (size < 0 or len(out) < size):
            block = self.handle.read(-1 if size < 0 else size - len(out))
            if block:
                out += block
                continue
            self.handle.close()
            self.index += 1
            self.handle = open(self.paths[self.index], "rb") if self.index < len(self.paths) else None
        return bytes(out)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def unpack(files: Sequence[str | Path], into: str | Path) -> dict[str, Any]:
    """Put results chunks back together into the folder ``into``, checking every sha256.

    ``files`` are whatever came back (from one or several collect calls): the manifest and
    chunks, in any order; other files are ignored. The chunks present from the first on are
    read; every file they hold completely is written (and checked), so part 1 alone already
    yields the logs, cards and samples. Returns ``{"written": [...], "missing_chunks": [...],
    "incomplete": [...], "complete": bool}``.
    """
    paths = [Path(f) for f in files]
    manifests = [p for p in paths if p.name == "results_manifest.json"]
    if not manifests:
        raise KitError("no results_manifest.json among the files; pass every file a collect call brought back")
    manifest = json.loads(manifests[0].read_text())
    if manifest.get("format") != RESULTS_FORMAT:
        raise KitError(f"{manifests[0]}: not a results manifest")
    for other in manifests[1:]:
        if json.loads(other.read_text()).get("tar_sha256") != manifest["tar_sha256"]:
            raise KitError(f"{other} and {manifests[0]} belong to different runs; unpack one run at a time")
    by_name = {p.name: p for p in paths}
    present: list[Path] = []
    missing: list[str] = []
    for chunk in manifest["chunks"]:
        path = by_name.get(chunk["name"])
        if path is None or missing:
            missing.append(chunk["name"])
            continue
        if path.stat().st_size != chunk["bytes"] or sha256_file(path) != chunk["sha256"]:
            raise KitError(f"{path}: size or sha256 differs from the manifest; fetch this part again")
        present.append(path)
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    expected = {e["path"]: e for e in manifest["files"]}
    written, incomplete = [], []
    stream = _Concatenated(present)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = _checked_relpath(member.name)
                if not member.isfile() or name not in expected:
                    raise KitError(f"unexpected member {member.name!r} in the results")
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                try:
                    with atomic_path(target) as temp, open(temp, "wb") as out:
                        shutil.copyfileobj(source, out)
                        if out.tell() != member.size:
                            raise EOFError
                except (EOFError, tarfile.ReadError):
                    incomplete.append(name)
                    break
                if sha256_file(target) != expected[name]["sha256"]:
                    target.unlink()
                    raise KitError(f"{name}: sha256 differs from the manifest after unpacking")
                written.append(target)
    except (tarfile.ReadError, EOFError):
        if not missing:
            raise KitError("the results tar is corrupt although every chunk matches its sha256") from None
    finally:
        stream.close()
    done = {p.relative_to(into).as_posix() for p in written}
    not_written = [name for name in expected if name not in done and name not in incomplete]
    return {"written": written, "missing_chunks": missing, "incomplete": incomplete + not_written,
            "complete": not missing and not not_written and not incomplete,
            "parts_missing": sorted({c["part"] for c in manifest["chunks"] if c["name"] in missing})}

