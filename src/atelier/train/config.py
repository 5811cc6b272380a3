"""Training configs: one YAML file names the task, the data, the schedule and the outputs.

Like the classic fast-style projects (``train.py -c conf/wave.yml``), but validated: unknown
keys get a "did you mean", numbers are checked, and the task's own options (layers, loss
weights) are checked by the task's options dataclass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
        for name in ("steps", "batch_size", "crop_size", "checkpoint_every", "sample_every", "sample_count",
                     "eval_count", "eval_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if "every" in name else 1):
                raise OptionError(f"{name} must be a whole number >= {0 if 'every' in name else 1}, got {value!r}")
        for name in ("lr", "lr_decay", "weight_decay", "feature_cache"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise OptionError(f"{name} must be a number >= 0, got {value!r}")
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "betas", tuple(float(v) for v in self.betas))
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise OptionError(f"crop_scale must be two fractions 0 < low <= high <= 1, got {self.crop_scale}")
        if self.schedule not in SCHEDULES:
            raise OptionError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"
                              f"{suggest(self.schedule, SCHEDULES)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise OptionError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        if self.export_dtype not in ("float16", "float32", "bfloat16"):
            raise OptionError(f"export_dtype must be float16, float32 or bfloat16, not {self.export_dtype!r}")
        if not isinstance(self.options, dict):
            raise OptionError(f"options must be a mapping of the task's options, got {self.options!r}")

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
