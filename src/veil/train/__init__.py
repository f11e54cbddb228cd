"""Training and batch jobs: the torchrun/DDP launcher and what runs inside a replica (rank,
process group, rank-0 atomic checkpoints, the epoch log), configuration dataclasses saved
beside a run and read from the environment on Kubernetes, and the job-on-a-volume runner
(data on a volume, an MLflow run with lineage, a snapshot on success), and model weights read
safely and checked against the model.

Importing this package does not import torch; the replica helpers import it when called."""

from veil.train._config import (
    MAX_SEED,
    check_fields,
    check_seed,
    field_type,
    from_env,
    load,
    option_name,
    ref,
    resolve,
    save,
    to_env,
)
from veil.train._job import JobContext, JobOutput, JobResult, run_job, stamp
from veil.train._launch import LaunchResult, TrainingFailed, failure_summary, launch
from veil.train._replica import EpochLog, Replica, atomic_save, barrier, leave, replica
from veil.train._weights import load_weights, read_weights

__all__ = [
    "MAX_SEED",
    "EpochLog",
    "JobContext",
    "JobOutput",
    "JobResult",
    "LaunchResult",
    "Replica",
    "TrainingFailed",
    "atomic_save",
    "barrier",
    "check_fields",
    "check_seed",
    "failure_summary",
    "field_type",
    "from_env",
    "launch",
    "leave",
    "load",
    "load_weights",
    "option_name",
    "read_weights",
    "ref",
    "replica",
    "resolve",
    "run_job",
    "save",
    "stamp",
    "to_env",
]
