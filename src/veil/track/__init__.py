"""Lineage: which snapshot fed which run, and which snapshot a run produced.

Runs are MLflow runs in an SQLite store in the veil home (`VEIL_HOME/mlflow.db`). veil's own
links are tags on the run (`veil.data_volume`, `veil.data_snapshot`, `veil.output_snapshot`,
...) and labels on the snapshot (`mlflow-run`), so either side leads to the other. Depends on
nothing else in veil except the home; MLflow is imported on first use (`veil[track]`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil._config import home_dir, veil_home
from veil.errors import NotFound, VeilError

TAG_DATA_VOLUME = "veil.data_volume"
TAG_DATA_PATH = "veil.data_path"
TAG_DATA_SNAPSHOT = "veil.data_snapshot"  # the snapshot the data volume was cloned from
TAG_DATA_SNAPSHOT_VOLUME = "veil.data_snapshot_volume"  # the volume that snapshot belongs to
TAG_OUTPUT_SNAPSHOT = "veil.output_snapshot"  # the snapshot taken of the run's volume after it
TAG_OUTPUT_VOLUME = "veil.output_volume"  # the volume of that snapshot
TAG_JOB = "veil.job"
TAG_SOLUTION = "veil.solution"
TAG_RUN_DIR = "veil.run_dir"
TAG_METRIC = "veil.metric"  # the name of the run's headline metric (shown by `veil lineage`)


def lineage_tags(*, job: str, solution: str | None = None, data_volume: str | None = None,
                 data_path: str | None = None, data_snapshot: str | None = None,
                 data_snapshot_volume: str | None = None, run_dir: str | None = None,
                 metric: str | None = None) -> dict[str, str | None]:
    """The tags that link a run to its data (set when the run starts)."""
    return {TAG_JOB: job, TAG_SOLUTION: solution, TAG_DATA_VOLUME: data_volume,
            TAG_DATA_PATH: data_path, TAG_DATA_SNAPSHOT: data_snapshot,
            TAG_DATA_SNAPSHOT_VOLUME: data_snapshot_volume, TAG_RUN_DIR: run_dir,
            TAG_METRIC: metric}


def output_tags(snapshot: str, volume: str) -> dict[str, str]:
    """The tags that link a run to the snapshot taken after it."""
    return {TAG_OUTPUT_SNAPSHOT: snapshot, TAG_OUTPUT_VOLUME: volume}


def tracking_uri(home: Path | None = None) -> str:
    return f"sqlite:///{Path(home or veil_home()) / 'mlflow.db'}"


def _mlflow(home: Path | None):
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise VeilError("lineage needs MLflow: pip install 'veil[track]'") from None
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    home_dir(home)
    return mlflow, _Guarded(MlflowClient(tracking_uri(home)), home)


class _Guarded:
    """An MlflowClient whose failures (a locked or damaged store) end in one line."""

    def __init__(self, client, home):
        self._client, self._home = client, home

    def __getattr__(self, name):
        fn = getattr(self._client, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except VeilError:
                raise
            except Exception as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise VeilError(f"the lineage store {tracking_uri(self._home)}: "
                                f"{type(e).__name__}: {first}") from None
        return call


class Run:
    """An MLflow run being recorded (see `start_run`)."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict[str, Any]) -> None:
        for k, v in params.items():
            self.client.log_param(self.run_id, k, "" if v is None else str(v))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            if v is not None:
                self.client.log_metric(self.run_id, k, float(v), step=step or 0)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            if v is not None:
                self.client.set_tag(self.run_id, k, str(v))


@contextlib.contextmanager
def start_run(experiment: str, name: str, *, home: Path | None = None) -> Iterator[Run]:
    """Record a run; it ends FINISHED, or FAILED if the block raises."""
    _, client = _mlflow(home)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=name)
    handle = Run(client, run.info.run_id)
    try:
        yield handle
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")


@dataclass
class RunInfo:
    run_id: str
    name: str
    experiment: str
    status: str
    start: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    data_volume = property(lambda self: self.tags.get(TAG_DATA_VOLUME))
    data_path = property(lambda self: self.tags.get(TAG_DATA_PATH))
    data_snapshot = property(lambda self: self.tags.get(TAG_DATA_SNAPSHOT))
    output_snapshot = property(lambda self: self.tags.get(TAG_OUTPUT_SNAPSHOT))

    @property
    def headline(self) -> tuple[str, float] | None:
        """(name, value) of the run's headline metric, if it recorded one."""
        name = self.tags.get(TAG_METRIC)
        if name and name in self.metrics:
            return name, self.metrics[name]
        return None


def _info(client, run) -> RunInfo:
    import datetime

    exp = client.get_experiment(run.info.experiment_id)
    start = datetime.datetime.fromtimestamp(run.info.start_time / 1000).strftime(
        "%Y-%m-%d %H:%M:%S")
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    return RunInfo(run.info.run_id, run.info.run_name or "", exp.name if exp else "?",
                   run.info.status, start, dict(run.data.params), dict(run.data.metrics), tags)


def get_run(run_id: str, *, home: Path | None = None) -> RunInfo:
    _, client = _mlflow(home)
    try:
        return _info(client, client.get_run(run_id))
    except Exception:
        raise NotFound(f"no run {run_id!r} in {tracking_uri(home)}") from None


def runs(*, home: Path | None = None, filter_string: str = "") -> list[RunInfo]:
    _, client = _mlflow(home)
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return []
    return [_info(client, r) for r in client.search_runs(exps, filter_string=filter_string,
                                                          order_by=["attributes.start_time ASC"])]


@dataclass
class Lineage:
    """What a snapshot or a run is linked to."""

    subject: str  # "snapshot VOLUME@NAME" or "run ID"
    produced_by: list[RunInfo] = field(default_factory=list)  # runs whose output it is
    used_by: list[RunInfo] = field(default_factory=list)  # runs that trained on it (a clone)
    run: RunInfo | None = None


def snapshot_lineage(snapshot: str, volume: str | None = None, *,
                     home: Path | None = None) -> Lineage:
    """Runs linked to snapshot `snapshot` (of `volume`, when given: names are unique only per
    volume)."""
    q = snapshot.replace("'", "")
    produced = runs(home=home, filter_string=f"tags.`{TAG_OUTPUT_SNAPSHOT}` = '{q}'")
    used = runs(home=home, filter_string=f"tags.`{TAG_DATA_SNAPSHOT}` = '{q}'")
    if volume is not None:
        produced = [r for r in produced if r.tags.get(TAG_OUTPUT_VOLUME) in (None, volume)]
        used = [r for r in used if r.tags.get(TAG_DATA_SNAPSHOT_VOLUME) in (None, volume)]
    return Lineage(f"snapshot {volume + '@' if volume else ''}{snapshot}", produced, used)


def run_lineage(run_id: str, *, home: Path | None = None) -> Lineage:
    return Lineage(f"run {run_id}", run=get_run(run_id, home=home))


__all__ = [
    "TAG_DATA_PATH",
    "TAG_DATA_SNAPSHOT",
    "TAG_DATA_SNAPSHOT_VOLUME",
    "TAG_DATA_VOLUME",
    "TAG_JOB",
    "TAG_METRIC",
    "TAG_OUTPUT_SNAPSHOT",
    "TAG_OUTPUT_VOLUME",
    "TAG_RUN_DIR",
    "TAG_SOLUTION",
    "Lineage",
    "Run",
    "RunInfo",
    "get_run",
    "lineage_tags",
    "output_tags",
    "run_lineage",
    "runs",
    "snapshot_lineage",
    "start_run",
    "tracking_uri",
]
