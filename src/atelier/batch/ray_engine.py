"""``--engine ray``: Ray Data ``map_batches`` over an actor pool that holds the loaded methods.

The dataset holds only the jobs (relative paths); each actor reads its inputs, stylizes and
writes its outputs itself, and the driver streams back one small record per image, so memory
stays flat whatever the folder size. On a real cluster the input, style and output folders
must be at the same path on every node (a shared file system); see docs/CLUSTER.md.

Ray is an optional extra (``pip install 'atelier[ray]'``) and is imported only here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import OptionError
from .plan import Job
from .worker import BatchSettings, MethodSpec, Worker

__all__ = ["RECORD_COLUMNS", "run_ray"]

#: Columns of the record batches the actors return (``options`` travels as JSON text).
RECORD_COLUMNS = ("input", "style", "output", "options", "seconds", "status", "error")


class _StylizeActor:
    """A Ray Data callable class: one :class:`Worker` per actor, built when the actor starts."""

    def __init__(self, spec: MethodSpec, settings: BatchSettings) -> None:
        self.worker = Worker(spec, settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        jobs = [Job(str(i), str(s), str(o), int(seed))
                for i, s, o, seed in zip(batch["input"], batch["style"], batch["output"], batch["seed"])]
        records = self.worker(jobs)
        return {column: [json.dumps(r[column], sort_keys=True) if column == "options" else r.get(column, "")
                         for r in records] for column in RECORD_COLUMNS}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError("--engine ray needs Ray: pip install 'atelier[ray]' (or use --engine local)") from None
    return ray


def run_ray(jobs: Sequence[Job], spec: MethodSpec, settings: BatchSettings, workers: int, *,
            address: str | None = None, chunk: int = 8, gpus_per_worker: float = 0.0,
            quiet: bool = True) -> Iterator[list[dict[str, Any]]]:
    """Yield records in groups as the actors finish them.

    Args:
        jobs: what to do (only the pending ones).
        spec: the method every actor builds once.
        settings: folders and per-image options (the folders must be visible to every node).
        workers: actors in the pool (one CPU each, or ``gpus_per_worker`` of a GPU).
        address: a running cluster (``ray://HOST:PORT`` or ``HOST:PORT``); None starts a local
            Ray or joins the one ``RAY_ADDRESS`` names.
        chunk: jobs per actor call (images of one size among them go through the network together).
        gpus_per_worker: GPU share of each actor (0: CPU actors).
        quiet: hide Ray Data's own progress bars.
    """
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                     logging_level="ERROR" if quiet else "INFO")
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = address or "a local Ray"
            raise OptionError(f"cannot start or reach {where}: {str(error).splitlines()[0]}; check --address "
                              "(ray://HOST:10001 or HOST:6379)") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = not quiet
        # At most 1000 blocks: a million jobs make blocks of ~1000 rows, not 60k tiny tasks.
        blocks = max(1, min(len(jobs) // chunk, 1000))
        dataset = ray.data.from_items([job.to_dict() for job in jobs], override_num_blocks=blocks)
        resources: dict[str, Any] = {"num_gpus": gpus_per_worker} if gpus_per_worker else {"num_cpus": 1}
        results = dataset.map_batches(_StylizeActor, fn_constructor_args=(spec, settings), batch_size=chunk,
                                      batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                                      **resources)
        for batch in results.iter_batches(batch_size=chunk, batch_format="numpy"):
            records = []
            for row in zip(*(batch[column] for column in RECORD_COLUMNS)):
                record = dict(zip(RECORD_COLUMNS, row))
                record["options"] = json.loads(str(record["options"]))
                record["seconds"] = float(record["seconds"])
                record = {k: (str(v) if k in ("input", "style", "output", "status", "error") else v)
                          for k, v in record.items()}
                if not record["error"]:
                    del record["error"]
                records.append(record)
            yield records
    finally:
        if started:
            ray.shutdown()
