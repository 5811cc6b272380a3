"""Stylize whole folder trees (``atelier batch``), on this machine or on a Ray cluster.

:mod:`~atelier.batch.plan` decides what is done (jobs, style assignment, manifest) whatever the
engine; :mod:`~atelier.batch.worker` is the work of one worker; :mod:`~atelier.batch.local` and
:mod:`~atelier.batch.ray_engine` only move chunks of jobs to workers and records back.
"""

from .plan import ASSIGNMENTS, MANIFEST, Job, Manifest, list_images, plan_jobs
from .run import ENGINES, BatchError, BatchInterrupted, BatchResult, run_batch
from .worker import BatchSettings, MethodSpec, Worker

__all__ = ["ASSIGNMENTS", "ENGINES", "MANIFEST", "BatchError", "BatchInterrupted", "BatchResult", "BatchSettings",
           "Job", "Manifest", "MethodSpec", "Worker", "list_images", "plan_jobs", "run_batch"]
