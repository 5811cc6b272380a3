"""Training: one generic loop, image-folder datasets, YAML configs, checkpoints and export.

>>> import atelier
>>> result = atelier.train("configs/adain.yaml", overrides={"steps": 100})  # doctest: +SKIP

``atelier.train`` is the function :func:`~atelier.train.trainer.train` (bound by ``atelier/__init__``);
this package stays importable as a module (``from atelier.train import TrainConfig``).
"""

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

