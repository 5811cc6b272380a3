"""The work of one engine worker: stylize a chunk of jobs and write their outputs.

Both engines run this same code (a local process, a Ray actor): a worker builds its method once
(:class:`MethodSpec`), then for each chunk reads the inputs and styles, stacks the inputs that
share a size into one network call (:meth:`~atelier.pipelines.feedforward.FeedForwardMethod.stylize_batch`
for the feed-forward methods, one :func:`~atelier.api.stylize_tensor` per image otherwise),
writes every output atomically and returns one manifest record per job. A job that fails
becomes a ``failed`` record with its one-line reason; it never stops the chunk.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..api import stylize_tensor
from ..errors import OptionError
from ..io.images import DEFAULT_MAX_PIXELS, load_image, resize_longest, save_image
from ..methods import Method, get_method
from ..pipelines.feedforward import FeedForwardMethod
from .plan import Job

__all__ = ["BatchSettings", "MethodSpec", "Worker"]

#: Style images a worker keeps decoded (the style memo of the method hangs on these tensors).
STYLE_CACHE = 64


@dataclass(frozen=True)
class MethodSpec:
    """How a worker builds its method: a registered name and its config options.

    ``method_kwargs`` are passed to the constructor as well (tests give tiny networks there);
    they travel to the workers by pickling and are not part of the manifest's options.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    method_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Method:
        """A new method object (its networks load on first use)."""
        return get_method(self.name)(**self.options, **self.method_kwargs)


@dataclass(frozen=True)
class BatchSettings:
    """What every worker needs besides the method: folders and per-image options."""

    input_dir: str
    style_dir: str
    output_dir: str
    size: int | None = 512
    device: str = "cpu"
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Images stacked into one network call (those of a chunk that share a size).
    batch_size: int = 8
    #: Intra-op threads of a worker (0 = leave torch's default).
    threads: int = 0

    def manifest_options(self, spec: MethodSpec) -> dict[str, Any]:
        """The options a manifest record holds: a re-run with other options redoes the work."""
        return {"method": spec.name, **spec.options, "size": self.size}


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class Worker:
    """Holds one built method and stylizes chunks of jobs (see the module docstring)."""

    def __init__(self, spec: MethodSpec, settings: BatchSettings) -> None:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.spec = spec
        self.settings = settings
        self.options = settings.manifest_options(spec)
        self.method = spec.build()
        self._styles: OrderedDict[str, Tensor] = OrderedDict()

    def style(self, name: str) -> Tensor:
        """The style image ``name`` (relative to the style folder), decoded once per worker."""
        if name in self._styles:
            self._styles.move_to_end(name)
            return self._styles[name]
        image = load_image(Path(self.settings.style_dir) / name, max_pixels=self.settings.max_pixels,
                           name=f"style {name}")
        self._styles[name] = image
        while len(self._styles) > STYLE_CACHE:
            self._styles.popitem(last=False)
        return image

    def record(self, job: Job, seconds: float, error: BaseException | None = None) -> dict[str, Any]:
        """The manifest line of ``job``."""
        entry = {"input": job.input, "style": job.style, "output": job.output, "options": self.options,
                 "seconds": round(seconds, 4), "status": "done" if error is None else "failed"}
        if error is not None:
            entry["error"] = _one_line(error)
        return entry

    def __call__(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Stylize ``jobs`` and write their outputs; one record per job, in order."""
        settings = self.settings
        records: dict[int, dict[str, Any]] = {}
        loaded: dict[tuple[int, int], list[tuple[int, Tensor, Tensor, float]]] = {}
        for index, job in enumerate(jobs):
            start = time.perf_counter()
            try:
                content = load_image(Path(settings.input_dir) / job.input, max_pixels=settings.max_pixels,
                                     name=job.input)
                if settings.size is not None:
                    content = resize_longest(content, settings.size)
                style = self.style(job.style)
            except Exception as error:  # any failure is recorded; the job goes on
                records[index] = self.record(job, time.perf_counter() - start, error)
                continue
            key = (content.shape[-2], content.shape[-1])
            loaded.setdefault(key, []).append((index, content, style, time.perf_counter() - start))
        for group in loaded.values():
            for first in range(0, len(group), max(1, settings.batch_size)):
                chunk = group[first : first + max(1, settings.batch_size)]
                start = time.perf_counter()
                try:
                    images = self._stylize([c for _, c, _, _ in chunk], [s for _, _, s, _ in chunk],
                                           [jobs[i].seed for i, *_ in chunk])
                except Exception:
                    # Find the image(s) at fault: each alone, so the others are still made.
                    images = None
                share = (time.perf_counter() - start) / len(chunk)
                for position, (index, content, style, read_seconds) in enumerate(chunk):
                    job = jobs[index]
                    begin = time.perf_counter()
                    try:
                        image = images[position : position + 1] if images is not None else \
                            self._stylize([content], [style], [job.seed])
                        save_image(image, Path(settings.output_dir) / job.output, overwrite=True)
                    except Exception as error:
                        records[index] = self.record(job, read_seconds + time.perf_counter() - begin, error)
                        continue
                    records[index] = self.record(job, read_seconds + share + time.perf_counter() - begin)
        return [records[i] for i in range(len(jobs))]

    def _stylize(self, contents: list[Tensor], styles: list[Tensor], seeds: list[int]) -> Tensor:
        """``(B, 3, H, W)`` outputs: one network call for a feed-forward method, else image by image."""
        method, device = self.method, self.settings.device
        if isinstance(method, FeedForwardMethod):
            return method.stylize_batch(torch.cat(contents), styles, device=device).cpu()
        if not method.uses_style_images:
            raise OptionError(f"method {method.name!r} holds its own styles; atelier batch needs a method that "
                              "takes style images")
        return torch.cat([stylize_tensor(content, [style], method, seed=seed, device=device, progress=False).image
                          for content, style, seed in zip(contents, styles, seeds)])
