"""Data-parallel training over several processes (``atelier train --nproc N`` or ``torchrun``).

What the one training loop (:mod:`atelier.train.trainer`) needs to run as N processes:

* :func:`current_world` joins the process group ``torchrun`` describes in the environment
  (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``): NCCL when the run is on CUDA
  GPUs (one per local rank), gloo on the CPU.
* Every process draws the *same* global batch from the same random stream and keeps its
  ``1/N`` slice (:meth:`World.shard`); gradients are averaged over the processes before each
  optimizer step (:meth:`World.average_gradients`); the logged losses are averaged too. So N
  processes take exactly the steps one process takes with the same global batch (up to float
  summation order), and a checkpoint written by N processes resumes under any other count:
  its random state, step and optimizer states are those of the global run.
* Only rank 0 writes checkpoints, samples, evaluation and exports (:attr:`World.is_main`).

Gradients are averaged by hand (one flattened all-reduce per phase) rather than through the
``DistributedDataParallel`` wrapper: a task with phases (GANs) switches ``requires_grad`` of the
other phases' parameters every step and reaches into the model's sub-networks by name, which
the wrapper (a fixed set of parameters, a different module) does not allow. The arithmetic is
DDP's: the all-reduce mean of each parameter's gradient. BatchNorm statistics are not
synchronised; atelier's networks use instance normalisation.

Each process still decodes the whole global batch (to keep the one random stream); with the
GPU recipe's image packs that costs little, with JPEG folders it caps the speed-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import OptionError

__all__ = ["World", "current_world", "launch", "launch_command"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    #: Whether :func:`current_world` started the process group (and :meth:`close` ends it).
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1

    def shard(self, batch: Tensor | None) -> Tensor | None:
        """This process's slice of a global batch ``(B, ...)`` (B divisible by the world size)."""
        if batch is None or not self.distributed:
            return batch
        share = batch.shape[0] // self.size
        return batch[self.rank * share : (self.rank + 1) * share]

    def check_batch(self, batch_size: int) -> None:
        """The global batch must split evenly over the processes."""
        if batch_size % self.size:
            raise OptionError(f"batch_size {batch_size} does not split over {self.size} processes; use a multiple "
                              f"of {self.size} (it is the global batch, shared by all processes)")

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace each parameter's gradient by its mean over the processes (one all-reduce)."""
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def average_values(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """Logged numbers averaged over the processes (the global batch's loss)."""
        if not self.distributed or not values:
            return values
        stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        torch.distributed.all_reduce(stacked)
        return dict(zip(values, (stacked / self.size).tolist()))

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers to every process (after building or resuming)."""
        if not self.distributed:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        """Wait for every process."""
        if self.distributed:
            torch.distributed.barrier()

    def close(self) -> None:
        """Leave the process group."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def current_world(device: str) -> World:
    """The world ``torchrun`` set up in the environment, joined (a single process without it).

    ``device`` is the config's resolved device: ``cuda`` runs use NCCL and the GPU of each
    process's local rank, anything else gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.distributed.is_initialized():  # the caller set it up
        return World(rank=rank, size=size, local_rank=local_rank)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank, owns_group=True)


def launch_command(nproc: int, train_args: Sequence[str]) -> list[str]:
    """The ``torchrun`` command running ``atelier train <train_args>`` as ``nproc`` processes on this machine."""
    if nproc < 1:
        raise OptionError(f"--nproc must be >= 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "atelier.cli", "train", *train_args]


def launch(nproc: int, train_args: Sequence[str]) -> int:
    """Run :func:`launch_command` and return its exit status.

    Ctrl-C or SIGTERM here is passed on as SIGTERM (torchrun hands it to every process; rank 0
    saves a checkpoint) and gives 130.
    """
    process = subprocess.Popen(launch_command(nproc, train_args))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        process.wait()
        return 130
