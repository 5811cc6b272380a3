"""Training configs: one YAML file names the task, the data, the schedule and the outputs.

Like the classic fast-style projects (``train.py -c conf/wave.yml``), but validated: unknown
keys get a "did you mean", numbers are checked, and the task's own options (layers, loss
weights) are checked by the task's options dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..devices import check_seed
from ..errors import OptionError, UnknownNameError, suggest
from ..options import plain_dict

__all__ = ["TrainConfig", "load_config"]

SCHEDULES = ("constant", "inverse", "cosine", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Paths are relative to the working directory.

    ``schedule`` sets the learning rate at step ``t``: ``constant``; ``inverse``
    ``lr / (1 + lr_decay * t)`` (the AdaIN reference code); ``cosine`` to 0 at ``steps``;
    ``linear`` constant for the first half, then linearly to 0 (CycleGAN).

    ``feature_cache`` > 0: for tasks whose losses read only one encoder layer of their inputs
    (:meth:`~atelier.train.task.TrainingTask.cached_layer`), encode that many random crops per
    image once at the start and train on them (:class:`~atelier.train.features.FeaturePool`);
    0 = fresh crops every step. Other tasks ignore it.
    """

    task: str
    content: str
    style: str = ""
    output: str = "runs/train"
    steps: int = 1000
    batch_size: int = 8
    crop_size: int = 256
    crop_scale: tuple[float, float] = (0.25, 1.0)
    flip: bool = True
    feature_cache: float = 0.0
    lr: float = 1e-4
    schedule: str = "inverse"
    lr_decay: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    init: str = ""
    checkpoint_every: int = 200
    sample_every: int = 200
    sample_count: int = 4
    eval_content: str = ""
    eval_style: str = ""
    eval_count: int = 8
    eval_size: int = 256
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    export_dtype: str = "float16"
    name: str = ""

    def __post_init__(self) -> None:
        """Check every field's type and range; OptionError naming the first bad field and what it must be."""
        self._check_types()
        for name in ("steps", "batch_size", "crop_size", "checkpoint_every", "sample_every", "sample_count",
                     "eval_count", "eval_size"):
            value = getattr(self, name)
            if value < (0 if "every" in name else 1):
                raise OptionError(f"{name} must be a whole number >= {0 if 'every' in name else 1}, got {value!r}")
        for name in ("lr", "lr_decay", "weight_decay", "feature_cache"):
            value = getattr(self, name)
            if value < 0:
                raise OptionError(f"{name} must be a number >= 0, got {value!r}")
        check_seed(self.seed)
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise OptionError(f"crop_scale must be two fractions 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise OptionError(f"betas must be two numbers in [0, 1) (Adam's decay rates, e.g. [0.9, 0.999]), "
                              f"got {list(self.betas)}")
        if self.schedule not in SCHEDULES:
            raise OptionError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"
                              f"{suggest(self.schedule, SCHEDULES)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise OptionError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        if self.export_dtype not in ("float16", "float32", "bfloat16"):
            raise OptionError(f"export_dtype must be float16, float32 or bfloat16, not {self.export_dtype!r}")

    def _check_types(self) -> None:
        """Check every field against its annotation.

        Whole numbers, finite numbers (a YAML string such as ``1e-4`` is read as one), text,
        true/false, pairs of numbers, a mapping.
        """
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _field_types()[f.name]
            if kind is int:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise OptionError(f"{f.name} must be a whole number, got {value!r}")
            elif kind is float:
                object.__setattr__(self, f.name, _number(f.name, value))
            elif kind is str:
                if not isinstance(value, str):
                    raise OptionError(f"{f.name} must be text (in YAML: quote it), got {value!r}")
            elif kind is bool:
                if not isinstance(value, bool):
                    raise OptionError(f"{f.name} must be true or false, not {value!r}")
            elif typing.get_origin(kind) is tuple:
                if not isinstance(value, (list, tuple)) or len(value) != 2:
                    example = list(typing.cast(tuple, f.default))
                    raise OptionError(f"{f.name} must be a list of two numbers, e.g. {example}, got {value!r}")
                object.__setattr__(self, f.name, tuple(float(_number(f.name, v)) for v in value))
            elif typing.get_origin(kind) is dict and not isinstance(value, dict):
                raise OptionError(f"{f.name} must be a mapping of the task's options, got {value!r}")

    @property
    def run_name(self) -> str:
        """``name`` or the output folder's name."""
        return self.name or Path(self.output).name

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (tuples become lists), saved in checkpoints and model cards."""
        return plain_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a dict; unknown keys raise :class:`UnknownNameError` with suggestions."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise UnknownNameError(f"{source}: unknown key {key!r}{suggest(key, names)}")
        if "task" not in values or "content" not in values:
            raise OptionError(f"{source}: needs at least 'task' and 'content' (a folder of images)")
        try:
            return cls(**values)
        except TypeError as error:
            raise OptionError(f"{source}: {error}") from None

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _number(name: str, value: Any) -> float:
    """A finite number from ``value`` (int, float, or text such as YAML's unquoted ``1e-4``)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise OptionError(f"{name} must be a finite number, got {value!r}")
    return value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config; ``overrides`` (e.g. from the CLI) replace its keys."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"{path}: no such config file; shipped configs are in configs/")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise OptionError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise OptionError(f"{path}: expected a mapping of keys (task, content, style, steps, ...)")
    if "networks" in values and "task" not in values:
        raise OptionError(f"{path}: a GPU recipe of several configs, not a training config; "
                          "use `atelier recipe` (docs/GPU_RECIPE.md)")
    values.update(overrides or {})
    return TrainConfig.from_dict(values, source=str(path))
