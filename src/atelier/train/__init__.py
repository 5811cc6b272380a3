"""Training: one generic loop, image-folder datasets, YAML configs, checkpoints and export.

>>> import atelier
>>> result = atelier.train("configs/adain.yaml", overrides={"steps": 100})  # doctest: +SKIP
"""

import sys
import types
from typing import Any

from .config import TrainConfig, load_config
from .data import DatasetError, ImageFolder
from .task import TrainingTask, available_tasks, get_task, register_task
from .trainer import TrainingError, TrainingInterrupted, TrainResult, read_safetensors, train

__all__ = [
    "DatasetError",
    "ImageFolder",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "TrainingTask",
    "available_tasks",
    "get_task",
    "load_config",
    "read_safetensors",
    "register_task",
    "train",
]


class _CallableModule(types.ModuleType):
    """Lets ``atelier.train(config)`` call :func:`train` while ``atelier.train`` stays the package
    (``from atelier.train import TrainConfig`` keeps working)."""

    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
