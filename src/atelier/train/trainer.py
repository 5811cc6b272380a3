"""The one training loop every trainable method uses.

A :class:`~atelier.train.task.TrainingTask` supplies the model and its losses; the loop
supplies everything else: data, Adam with a learning-rate schedule, bf16 autocast where the
hardware has it, a progress line (losses, images/s, ETA), resumable checkpoints (model,
optimizer, step, random state), Ctrl-C that saves and stops cleanly, periodic sample grids
(content | style | output), held-out evaluation, and the export of inference weights to
safetensors with a JSON model card.

A task with several optimizers (GANs; :meth:`TrainingTask.phases`) runs through the same
loop: each step draws one batch, then runs the phases in order, each with its own Adam (same
schedule, betas and weight decay), and the checkpoint holds every optimizer's state plus the
task's own run state (:meth:`TrainingTask.state_dict`, e.g. an image pool).

Under ``torchrun`` (or ``atelier train --nproc N``) the same loop runs in every process: each
keeps its slice of the global batch, gradients and logged losses are averaged over the
processes, and rank 0 alone writes files (see :mod:`atelier.train.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..devices import resolve_device, resolve_precision
from ..encoders.vgg import VGGEncoder
from ..encoders.weights import torch_load_problem
from ..errors import AtelierError, OptionError
from ..io.atomic import atomic_path, check_writable_folder
from ..io.images import save_image
from ..nets.pretrained import read_weights
from ..ops.layout import channels_last
from ..progress import Progress, format_duration
from .config import TrainConfig, load_config
from .data import DatasetError, ImageFolder, ImageSource, SourceFactory
from .distributed import World, current_world
from .features import FeaturePool
from .task import Phase, TrainingTask, exported_files, get_task, options_for

__all__ = ["TrainResult", "TrainingError", "TrainingInterrupted", "learning_rate", "train"]

CHECKPOINT = "checkpoint.pt"


class TrainingError(AtelierError):
    """Training cannot go on (the loss diverged, a checkpoint does not fit the config)."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the checkpoint at ``path`` holds step ``step``."""

    def __init__(self, path: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}; run the same command to resume")
        self.path, self.step = path, step


@dataclass
class TrainResult:
    """What a run produced."""

    step: int
    output: Path
    exported: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate at ``step`` under ``config.schedule`` (see :class:`TrainConfig`)."""
    if config.schedule == "inverse":
        return config.lr / (1.0 + config.lr_decay * step)
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * min(step, config.steps) / config.steps))
    if config.schedule == "linear":
        half = config.steps / 2
        return config.lr * min(1.0, max(0.0, (config.steps - step) / half))
    return config.lr


def hardware() -> str:
    """A short description of the machine, for model cards."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads (CPU)"


def sample_grid(content: Tensor, style: Tensor | None, output: Tensor, pad: int = 2) -> Tensor:
    """One row per sample: content | style | output, ``(1, 3, H', W')`` in [0, 1]."""
    columns = [content] + ([style] if style is not None else []) + [output.clamp(0, 1)]
    rows = [torch.cat([torch.nn.functional.pad(c[i : i + 1], (pad,) * 4, value=1.0) for c in columns], dim=3)
            for i in range(content.shape[0])]
    return torch.cat(rows, dim=2)


def _sigterm_as_interrupt() -> Callable[[], None]:
    """Treat SIGTERM (job schedulers, ``kill``) like Ctrl-C while training, so both save a checkpoint.

    Returns the function that restores the previous handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


@contextmanager
def _whole_step(enabled: bool) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise ``KeyboardInterrupt``.

    A task with several phases is never checkpointed between its phases (half a step: generators updated,
    discriminators not), so a resumed run continues exactly.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt


class _Run:
    """State of one training run (kept in a class so checkpointing sees all of it).

    :func:`train` drives it with :meth:`run`; an outside scheduler (``atelier recipe run``,
    several networks sharing one GPU) calls :meth:`prepare`, then :meth:`timed_step` as often
    as it likes, then :meth:`finish`. ``sources`` opens the config's image folders (default
    :class:`~atelier.train.data.ImageFolder`; the recipe passes decoded packs held on the GPU).
    """

    def __init__(self, config: TrainConfig, task: TrainingTask, *, progress: bool,
                 sources: SourceFactory | None = None, world: World | None = None) -> None:
        self.config = config
        self.task = task
        self.world = world or World()
        self.world.check_batch(config.batch_size)
        self.output = check_writable_folder(config.output, "training output")
        self.device = torch.device(resolve_device(config.device))
        if self.world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        self.precision = resolve_precision(config.precision, self.device)
        self.open_source: SourceFactory = sources or ImageFolder
        self.content: ImageSource = self.open_source(config.content, crop_size=config.crop_size,
                                                     crop_scale=config.crop_scale, flip=config.flip,
                                                     what="content images")
        self.style: ImageSource | None = None
        if task.needs_style:
            if not config.style:
                raise OptionError(f"task {config.task!r} needs a 'style' folder of images in the config")
            self.style = self.open_source(config.style, crop_size=config.crop_size, crop_scale=config.crop_scale,
                                          flip=config.flip, what="style images")
            if len(self.style) < task.min_style_images:
                raise DatasetError(f"{config.style}: {len(self.style)} style images, fewer than the "
                                   f"{task.min_style_images} task {config.task!r} needs; use a larger collection")
        torch.manual_seed(config.seed)  # before building: the initial weights follow the seed
        self.model = task.build_model().to(self.device)
        self.encoder = task.encoder.to(self.device) if task.needs_encoder else None
        phases = task.phases(self.model)
        #: Whether the task has several phases (GANs); one phase is one Adam over the whole model.
        self.phased = phases is not None and len(phases) > 1
        self.phases: list[Phase] = phases or [
            Phase("model", list(self.model.parameters()), lambda model, c, s, _: task.losses(model, c, s))]
        names = [phase.name for phase in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"task {config.task!r} has duplicate phase names {names}")
        self.optimizers = {
            phase.name: torch.optim.Adam(phase.parameters, lr=config.lr * phase.lr_scale, betas=config.betas,
                                         weight_decay=config.weight_decay)
            for phase in self.phases}
        self.rng = random.Random(config.seed)
        self.step = 0
        self.elapsed = 0.0
        self.ema: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.progress_enabled = progress and self.world.is_main
        cached = task.cached_layer() if config.feature_cache and self.encoder is not None else None
        if cached is not None:
            self._pool_features(cached)
        #: Extra entries for the ``training`` section of exported model cards (e.g. the recipe's).
        self.card_notes: dict[str, Any] = {}
        self.fixed_content: Tensor | None = None
        self.fixed_style: Tensor | None = None

    def _pool_features(self, layer: str) -> None:
        """Replace the image sources by pools of encoded crops (config ``feature_cache``)."""
        encoder = self.encoder
        assert encoder is not None

        def encode(images: Tensor) -> Tensor:
            with self._autocast():
                return encoder(channels_last(images.to(self.device)), [layer])[layer]

        seed = self.config.seed + 2  # its own stream: the training batches stay those of the run's rng
        self.content = FeaturePool(self.content, encode, crops_per_image=self.config.feature_cache, seed=seed,
                                   progress=self.progress_enabled, what="content crops")
        if self.style is not None:
            self.style = FeaturePool(self.style, encode, crops_per_image=self.config.feature_cache, seed=seed + 1,
                                     progress=self.progress_enabled, what="style crops")

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.output / CHECKPOINT

    def save_checkpoint(self) -> Path:
        """Write the checkpoint (rank 0 only; the others' state is the same)."""
        if not self.world.is_main:
            return self.checkpoint_path
        state: dict[str, Any] = {
            "model": self.model.state_dict(), "step": self.step,
            "python_rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(), "elapsed": self.elapsed,
            "ema": self.ema, "history": self.history, "config": self.config.to_dict(),
            "skipped": sorted(str(p) for p in self._skipped()),
        }
        state["optimizers"] = {name: opt.state_dict() for name, opt in self.optimizers.items()}
        task_state = self.task.state_dict()
        if task_state:
            state["task"] = task_state
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        with atomic_path(self.checkpoint_path) as temp:
            torch.save(state, temp)
        return self.checkpoint_path

    def resume(self) -> bool:
        """Load the checkpoint in the output folder, if any; returns whether one was found."""
        path = self.checkpoint_path
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:  # corrupt or foreign file
            raise TrainingError(f"{path}: unreadable checkpoint ({torch_load_problem(error)}); "
                                "delete it or pass --fresh") from None
        saved_task = state.get("config", {}).get("task")
        if saved_task != self.config.task:
            raise TrainingError(f"{path}: checkpoint of task {saved_task!r}, config says {self.config.task!r}; "
                                "use another output folder or --fresh")
        try:
            self.model.load_state_dict(state["model"])
            # Checkpoints written before tasks had phases hold one "optimizer" (the "model" phase's).
            saved = state.get("optimizers") or ({"model": state["optimizer"]} if "optimizer" in state else {})
            if sorted(saved) != sorted(self.optimizers):
                raise ValueError(f"optimizers {sorted(saved)} saved, {sorted(self.optimizers)} needed")
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(saved[name])
            self.task.load_state_dict(state.get("task", {}))
        except (RuntimeError, ValueError, KeyError) as error:
            raise TrainingError(f"{path}: checkpoint does not fit this model ({str(error).splitlines()[0]}); "
                                "the options changed since it was written: use --fresh") from None
        self.step = int(state["step"])
        version, internal, gauss = state["python_rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.elapsed = float(state["elapsed"])
        self.ema = dict(state["ema"])
        self.history = list(state["history"])
        return True

    def _skipped(self) -> set[Path]:
        return self.content.skipped | (self.style.skipped if self.style is not None else set())

    def initialize(self) -> str:
        """The task's data-dependent start, on batches from their own random stream.

        Drawn that way, the training batches are those of a run without it.
        """
        rng = random.Random(self.config.seed + 1)
        content = self.content.batch(4 * self.config.batch_size, rng).to(self.device)
        style = self.style.batch(4 * self.config.batch_size, rng).to(self.device) if self.style is not None else None
        with torch.no_grad():
            return self.task.initialize(self.model, content, style)

    # -- the loop ----------------------------------------------------------------------------
    def batch(self) -> tuple[Tensor, Tensor | None]:
        """This process's share of the step's global batch (all of it in a single process)."""
        content = self.content.batch(self.config.batch_size, self.rng)
        style = self.style.batch(self.config.batch_size, self.rng) if self.style is not None else None
        shard = self.world.shard(content)
        assert shard is not None
        return self._on_device(shard), self._to_device(self.world.shard(style))

    def _on_device(self, images: Tensor) -> Tensor:
        return channels_last(images.to(self.device))

    def _to_device(self, images: Tensor | None) -> Tensor | None:
        return None if images is None else self._on_device(images)

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @contextmanager
    def _only(self, phase: Phase) -> Iterator[None]:
        """While ``phase`` runs, the other phases' parameters need no gradients (restored after)."""
        if not self.phased:
            yield
            return
        own = {id(p) for p in phase.parameters}
        others = [p for other in self.phases if other is not phase for p in other.parameters
                  if id(p) not in own and p.requires_grad]
        for parameter in others:
            parameter.requires_grad_(False)
        try:
            yield
        finally:
            for parameter in others:
                parameter.requires_grad_(True)

    def train_step(self) -> dict[str, float]:
        lr = learning_rate(self.config, self.step)
        content, style = self.batch()
        self.model.train()
        context: dict[str, Any] = {}
        totals: dict[str, float] = {}
        terms: dict[str, float] = {}
        for phase in self.phases:
            optimizer = self.optimizers[phase.name]
            for group in optimizer.param_groups:
                group["lr"] = lr * phase.lr_scale
            with self._only(phase):
                with self._autocast():
                    parts = phase.losses(self.model, content, style, context)
                loss = torch.stack([p.float() for p in parts.values()]).sum()
                if not torch.isfinite(loss):
                    where = f" of phase {phase.name!r}" if self.phased else ""
                    raise TrainingError(f"the loss{where} became {loss.item()} at step {self.step + 1}; lower lr "
                                        "or restart from the last checkpoint")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.world.average_gradients(phase.parameters)
                optimizer.step()
            if phase.after_step is not None:
                phase.after_step()
            totals[phase.name] = loss.item()
            for key, term in parts.items():
                if key in terms:
                    raise ValueError(f"task {self.config.task!r}: loss term {key!r} appears in two phases")
                terms[key] = term.detach().item()
        self.step += 1
        values = {"loss": sum(totals.values())}
        if self.phased:
            values |= {f"loss_{name}": total for name, total in totals.items()}
        values |= terms
        values = self.world.average_values(values, self.device)
        for key, value in values.items():
            self.ema[key] = value if key not in self.ema else 0.95 * self.ema[key] + 0.05 * value
        return values

    def write_samples(self) -> Path:
        """The sample grid (content | style | output) of the fixed images at this step."""
        if self.fixed_content is None:
            self.prepare()
        content, style = self.fixed_content, self.fixed_style
        assert content is not None
        self.model.eval()
        with torch.no_grad(), self._autocast():
            output = self.task.sample(self.model, self._on_device(content), self._to_device(style))
        grid = sample_grid(content, style, output.float().cpu())
        path = self.output / "samples" / f"step_{self.step:06d}.png"
        save_image(grid, path, overwrite=True)
        return path

    def prepare(self) -> None:
        """Pick the fixed images of the sample grids (before the first step)."""
        cfg = self.config
        fixed_content = self.content.fixed(cfg.sample_count, cfg.crop_size)
        fixed_style = self.style.fixed(cfg.sample_count, cfg.crop_size) if self.style is not None else None
        if fixed_style is not None:
            count = min(len(fixed_content), len(fixed_style))
            fixed_content, fixed_style = fixed_content[:count], fixed_style[:count]
        self.fixed_content, self.fixed_style = fixed_content, fixed_style

    @property
    def images_per_step(self) -> int:
        """Images one step reads (content, plus style when the task has styles)."""
        return self.config.batch_size * (2 if self.style is not None else 1)

    def timed_step(self) -> tuple[dict[str, float], float]:
        """One :meth:`train_step`, timed and recorded; returns its values and its seconds."""
        # Several processes: stop between steps only, so none is left waiting in an all-reduce.
        with _whole_step(self.phased or self.world.distributed):
            start = time.perf_counter()
            values = self.train_step()
            seconds = time.perf_counter() - start
            self.elapsed += seconds
            self.history.append({"step": self.step, **values})
        return values, seconds

    def run(self) -> TrainResult:
        cfg = self.config
        self.world.broadcast_module(self.model)  # the same start everywhere, however it was made
        self.prepare()
        bar = Progress(cfg.steps, label=f"train {cfg.run_name} ", unit="step", enabled=self.progress_enabled)
        bar.rebase(self.step)
        restore = _sigterm_as_interrupt()
        try:
            while self.step < cfg.steps:
                values, seconds = self.timed_step()
                shown = {k: self.ema[k] for k in values} | {"img/s": self.images_per_step / seconds}
                bar.update(self.step, **shown)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.world.is_main:
                    self.write_samples()
        except KeyboardInterrupt:
            bar.close()
            raise TrainingInterrupted(self.save_checkpoint(), self.step) from None
        finally:
            restore()
        bar.close()
        return self.finish(samples=bool(cfg.sample_every))

    def finish(self, *, samples: bool) -> TrainResult:
        """Checkpoint, the last sample grid (when ``samples``), held-out evaluation and export.

        Done on rank 0; the other processes only wait for it.
        """
        if not self.world.is_main:
            self.world.barrier()
            return TrainResult(step=self.step, output=self.output, history=self.history)
        self.save_checkpoint()
        if samples:
            self.write_samples()
        metrics = {f"final_{k}": v for k, v in self.ema.items()}
        metrics |= self.evaluate()
        exported = self.export(metrics)
        self.world.barrier()
        return TrainResult(step=self.step, output=self.output, exported=exported, metrics=metrics,
                           history=self.history)

    def evaluate(self) -> dict[str, float]:
        cfg = self.config
        if not cfg.eval_content:
            return {}
        content = self.open_source(cfg.eval_content, crop_size=cfg.eval_size, what="evaluation content images")
        images = content.fixed(cfg.eval_count, cfg.eval_size)
        style = None
        if self.style is not None:
            folder = self.open_source(cfg.eval_style or cfg.style, crop_size=cfg.eval_size,
                                      what="evaluation styles")
            style = folder.fixed(cfg.eval_count, cfg.eval_size)
            count = min(len(images), len(style))
            images, style = images[:count], style[:count]
        self.model.eval()
        with self._autocast():
            return self.task.evaluate(self.model, self._on_device(images), self._to_device(style))

    # -- export ------------------------------------------------------------------------------
    def export(self, metrics: dict[str, float]) -> list[Path]:
        cfg = self.config
        dtype = getattr(torch, cfg.export_dtype)
        written = []
        for stem, (state, header) in exported_files(self.task, self.model).items():
            tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                       for k, v in state.items()}
            metadata = header | {"steps": str(self.step)}
            path = self.output / f"{stem}.safetensors"
            with atomic_path(path) as temp:
                save_file(tensors, str(temp), metadata=metadata)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            card = {
                "name": stem, "file": path.name, "sha256": digest, "bytes": path.stat().st_size,
                "dtype": cfg.export_dtype, "parameters": sum(t.numel() for t in tensors.values()),
                "task": cfg.task, "encoder": metadata.get("encoder"), "layer": metadata.get("layer"),
                "options": self.task.options.to_dict(),
                "data": {
                    "content": {"folder": cfg.content, "images": len(self.content),
                                "skipped_unreadable": len(self.content.skipped)},
                    "style": None if self.style is None else {
                        "folder": cfg.style, "images": len(self.style),
                        "skipped_unreadable": len(self.style.skipped)},
                },
                "training": {
                    "steps": self.step, "batch_size": cfg.batch_size, "crop_size": cfg.crop_size,
                    "images_seen": self.step * cfg.batch_size, "wall_time": format_duration(self.elapsed),
                    "wall_time_s": round(self.elapsed, 1), "hardware": hardware(), "precision": self.precision,
                    "torch": torch.__version__, "init": cfg.init or None, "config": cfg.to_dict(),
                } | self.card_notes,
                "metrics": {k: round(v, 6) for k, v in metrics.items()},
                "header": metadata,
            }
            with atomic_path(self.output / f"{stem}.json") as temp:
                temp.write_text(json.dumps(card, indent=2) + "\n")
            written.append(path)
        return written


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file, with a clear error for a missing or corrupt one.

    :func:`atelier.nets.pretrained.read_weights` without the header.
    """
    return read_weights(path)[0]


def train(
    config: TrainConfig | str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    fresh: bool = False,
    progress: bool = True,
    encoder: VGGEncoder | None = None,
) -> TrainResult:
    """Train the model a config describes; resumes from ``<output>/checkpoint.pt`` unless ``fresh``.

    Args:
        config: a :class:`TrainConfig` or the path of a YAML file (see ``configs/``).
        overrides: keys replacing the config's (e.g. ``{"steps": 10}``).
        fresh: ignore an existing checkpoint and start from step 0.
        progress: print a progress line on stderr.
        encoder: a VGG-19 encoder to use instead of loading the config's weights (tests).

    Under ``torchrun`` each process calls this; they join one process group (see
    :mod:`atelier.train.distributed`), ``batch_size`` is the global batch and rank 0 writes.

    Raises:
        atelier.errors.AtelierError: a bad config, data folder or checkpoint.
        TrainingInterrupted: on Ctrl-C, after saving a checkpoint.
    """
    if isinstance(config, TrainConfig):
        cfg = config.replace(**overrides) if overrides else config
    else:
        cfg = load_config(config, overrides)
    task_cls = get_task(cfg.task)
    task = task_cls(options_for(task_cls, cfg.options), encoder=encoder)
    world = current_world(resolve_device(cfg.device))
    try:
        return _train(cfg, task, world, fresh=fresh, progress=progress and world.is_main)
    finally:
        world.close()


def _train(cfg: TrainConfig, task: TrainingTask, world: World, *, fresh: bool, progress: bool) -> TrainResult:
    run = _Run(cfg, task, progress=progress, world=world)
    resumed = False if fresh else run.resume()
    if not resumed and cfg.init:
        message = task.load_init(run.model, read_safetensors(cfg.init))
        if progress:
            print(f"init from {cfg.init}: {message}", flush=True, file=sys.stderr)
    elif not resumed:
        message = run.initialize()
        if message and progress:
            print(message, flush=True, file=sys.stderr)
    elif progress:
        print(f"resuming {cfg.run_name} at step {run.step} from {run.checkpoint_path}", file=sys.stderr)
    return run.run()
