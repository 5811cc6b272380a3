"""What a batch job does, independent of the engine that runs it: the jobs and the manifest.

:func:`plan_jobs` lists the input tree, gives every input its style(s) and mirrors the tree in
the output folder. The assignment depends only on the seed, the relative paths and the style
list, never on worker counts or the order work finishes in, so every engine (and a re-run)
stylizes the same pairs.

:class:`Manifest` is the JSONL log in the output folder: one line per finished image (input,
style, options, output, seconds, status and, for a failure, its one-line reason). A re-run
reads it and skips every job whose output is recorded as done with the same options.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ImageError, OptionError
from ..io.images import IMAGE_SUFFIXES, SAVE_FORMATS, image_files

__all__ = ["ASSIGNMENTS", "MANIFEST", "Job", "Manifest", "job_seed", "list_images", "plan_jobs"]

#: How inputs get styles: ``random`` (one style each, drawn from the seed and the input's path, the
#: Stylized-ImageNet recipe), ``cycle`` (the styles in a seeded order, round-robin over the sorted
#: inputs: each style used equally often) or ``all`` (every input with every style).
ASSIGNMENTS = ("random", "cycle", "all")
#: The manifest's name in the output folder.
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Job:
    """One image to make.

    Paths are relative (input to the input folder, style to the style folder, output to the
    output folder) so a manifest stays valid when the folders move or are mounted elsewhere on
    cluster nodes.
    """

    input: str
    style: str
    output: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """The job as a plain dict (what Ray Data rows and manifest lines hold)."""
        return asdict(self)


def list_images(folder: str | os.PathLike, what: str) -> list[str]:
    """Relative POSIX paths of the images below ``folder``.

    Recursive and sorted; hidden files and folders are skipped.

    Raises:
        ImageError: the folder does not exist or holds no images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{root}: no such folder of {what}; give a folder of images")
    found = [path.relative_to(root).as_posix() for path in image_files(root, recursive=True)]
    if not found:
        raise ImageError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) below this folder of {what}")
    return found


def job_seed(seed: int, name: str) -> int:
    """A 63-bit seed for ``name`` (an input path) under the job seed.

    Stable across processes and Python versions (sha256, not ``hash()``, which is salted per process).
    """
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _output_name(input_path: str, style: str | None, suffix: str) -> str:
    """``a/b/photo.jpg`` -> ``a/b/photo.png``; with a style (``all``), ``a/b/photo__<style>.png``.

    The style's own folders are joined by ``-`` (so styles with the same name in two
    sub-folders do not collide).
    """
    stem = input_path.rsplit(".", 1)[0]
    if style is not None:
        stem += "__" + style.rsplit(".", 1)[0].replace("/", "-")
    return stem + suffix


def plan_jobs(inputs: Iterable[str], styles: list[str], mode: str, seed: int, suffix: str = ".png") -> list[Job]:
    """The jobs of a batch: every input (relative path) with its style(s) and output path.

    ``random`` draws each input's style from :func:`job_seed` of the input's path alone, so adding
    inputs never changes the styles of the others; ``cycle`` shuffles the styles with ``seed`` and
    walks them round-robin over the sorted inputs; ``all`` pairs every input with every style.

    Raises:
        OptionError: an unknown mode or output suffix, or no styles.
    """
    if mode not in ASSIGNMENTS:
        raise OptionError(f"--style-per-image must be one of {', '.join(ASSIGNMENTS)}, not {mode!r}")
    if suffix.lower() not in SAVE_FORMATS:
        raise OptionError(f"output format {suffix!r} is not one of {', '.join(sorted(SAVE_FORMATS))}")
    if not styles:
        raise OptionError("no style images given; pass --styles with a folder of images")
    inputs = sorted(inputs)
    styles = sorted(styles)
    if mode == "all":
        return [Job(name, style, _output_name(name, style, suffix), job_seed(seed, name))
                for name in inputs for style in styles]
    order = list(styles)
    random.Random(seed).shuffle(order)
    jobs = []
    for index, name in enumerate(inputs):
        own = job_seed(seed, name)
        style = order[index % len(order)] if mode == "cycle" else styles[own % len(styles)]
        jobs.append(Job(name, style, _output_name(name, None, suffix), own))
    return jobs


class Manifest:
    """The JSONL manifest of a batch output folder (see the module docstring).

    Lines are appended and flushed one record at a time; a line cut short by a crash is
    ignored when read (its image is simply done again).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / MANIFEST

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record, oldest first."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a killed run
                if isinstance(record, dict) and "output" in record:
                    yield record

    def done(self, options: dict[str, Any]) -> set[str]:
        """Outputs recorded as done with these ``options`` whose file is still there."""
        key = _options_key(options)
        finished = set()
        for record in self.records():
            if record.get("status") == "done" and _options_key(record.get("options", {})) == key:
                finished.add(record["output"])
        return {name for name in finished if (self.path.parent / name).is_file()}

    def pending(self, jobs: list[Job], options: dict[str, Any]) -> list[Job]:
        """The ``jobs`` not yet done (failed ones are tried again)."""
        finished = self.done(options)
        return [job for job in jobs if job.output not in finished]

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Add records (one JSON line each) and make them durable before returning."""
        lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as file:
            # A line cut short by a killed run is ended first, so it does not swallow this record.
            if file.tell() and (file.seek(file.tell() - 1), file.read(1))[1] != b"\n":
                lines = "\n" + lines
            file.write(lines.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)
