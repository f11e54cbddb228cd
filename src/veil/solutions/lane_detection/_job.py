"""A TR-4896 training job end to end: data on a veil volume, data-parallel training, the run
recorded in MLflow with its data's lineage, and (ENABLE_SNAPSHOT) a snapshot of the volume -
data set, trained model and logs - named `snap-<volume>-<job>-<YYYY-MM-DD-HH-MM-SS>` as the
seed's job names its NetApp Snapshot copies."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from veil.errors import InvalidArgument
from veil.solutions.lane_detection._train import RunResult, TrainConfig, launch, prepare

EXPERIMENT = "lane-detection"


@dataclass
class JobResult:
    job: str
    run: RunResult
    run_id: str | None
    snapshot: str | None
    volume: str | None


def train_job(cfg: TrainConfig, processes: int, *, job: str = "lane-detection",
              volume: str | None = None, snapshot: bool = False, track: bool = True,
              echo: Callable[[str], None] = print, home=None) -> JobResult:
    """Train; with `volume`, the data (and by default the run folder) live on that volume, and
    with `snapshot` the volume is snapshotted once training has finished. Nothing is
    snapshotted after a failure."""
    from veil.data import validate_name

    validate_name(job, "job name")
    if snapshot and volume is None:
        raise InvalidArgument("--enable-snapshot needs --volume: the snapshot is of the volume "
                              "holding the data, the model and the logs")
    data_snapshot = data_snapshot_volume = None
    if volume is not None:
        from veil import data

        v = data.get_volume(volume, home=home)  # a missing volume fails here, before training
        # where the data came from: the last restore into the volume, else the clone's origin
        if v.restored_from:
            data_snapshot, data_snapshot_volume = v.restored_from, volume
        elif v.origin_snapshot and not v.origin_snapshot.endswith("(deleted)"):
            data_snapshot, data_snapshot_volume = v.origin_snapshot, v.origin_volume
        root = data.volume_path(volume, home=home).resolve()
        for what, p in (("--data", cfg.data), ("--out", cfg.out)):
            if snapshot and not Path(p).resolve().is_relative_to(root):
                raise InvalidArgument(f"{what} {p} is not inside volume {volume!r}: the "
                                      "snapshot would not hold it")
        if snapshot:  # a name the snapshot can have, checked now rather than after training
            validate_name(f"snap-{volume}-{job}-{time.strftime('%Y-%m-%d-%H-%M-%S')}",
                          "snapshot name")
    prepare(cfg, processes)  # bad options, labels or images: no run is recorded for them
    run_id = snap = None
    params = {**cfg.__dict__, "processes": processes}
    tags = {"veil.job": job, "veil.data_volume": volume, "veil.data_path": cfg.data,
            "veil.data_snapshot": data_snapshot,
            "veil.data_snapshot_volume": data_snapshot_volume, "veil.run_dir": cfg.out}
    if track:
        from veil import track as tracking

        stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
        with tracking.start_run(EXPERIMENT, f"{job}-{stamp}", home=home) as run:
            run_id = run.run_id
            run.log_params(params)
            run.set_tags(tags)
            res = launch(cfg, processes, echo=echo)
            for row in res.metrics["epochs"]:
                run.log_metrics({k: row[k] for k in ("loss", "images_per_s", "input_wait")},
                                step=row["epoch"])
            if res.metrics.get("test"):
                run.log_metrics({f"test_{k}": v for k, v in res.metrics["test"].items()
                                 if k != "images"})
            if snapshot:
                snap = _snapshot(volume, job, res, run_id, home)
                run.set_tags({"veil.output_snapshot": snap, "veil.output_volume": volume})
    else:
        res = launch(cfg, processes, echo=echo)
        if snapshot:
            snap = _snapshot(volume, job, res, None, home)
    return JobResult(job, res, run_id, snap, volume)


def _snapshot(volume: str, job: str, res: RunResult, run_id: str | None, home) -> str:
    """The volume's snapshot, named (as the seed's) for the time it is taken."""
    from veil import data

    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    root = data.volume_path(volume, home=home).resolve()
    labels = {"job": job, "model": str((res.out / "model.pt").resolve().relative_to(root))}
    if run_id:
        labels["mlflow-run"] = run_id
    test = res.metrics.get("test")
    if test:
        labels["accuracy"] = f"{test['Accuracy']:.4f}"
    return data.create_snapshot(volume, name=f"snap-{volume}-{job}-{stamp}", labels=labels,
                                home=home).name
