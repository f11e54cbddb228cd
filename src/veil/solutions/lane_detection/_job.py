"""A TR-4896 training job end to end, run by `veil.train.run_job`: data on a veil volume,
data-parallel training, the run recorded in MLflow with its data's lineage, and
(ENABLE_SNAPSHOT) a snapshot of the volume - data set, trained model and logs - named
`snap-<volume>-<job>-<YYYY-MM-DD-HH-MM-SS>` as the seed's job names its NetApp Snapshot copies.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from veil.progress import Log
from veil.solutions.lane_detection._train import TrainConfig, launch, prepare
from veil.train import JobContext, JobOutput, JobResult, run_job

EXPERIMENT = "lane-detection"


def _resolved(cfg: TrainConfig) -> TrainConfig:
    return replace(cfg, init=str(Path(cfg.init).absolute()) if cfg.init else None)


def check(cfg: TrainConfig, ctx: JobContext) -> None:
    """Options, labels, images, --init and the device, before any run is recorded (the
    runner has filled data, out, device and seed from its shared options)."""
    prepare(_resolved(cfg))


def train(cfg: TrainConfig, ctx: JobContext) -> JobOutput:
    """Train data-parallel; the run's figures for MLflow and the snapshot's labels."""
    ctx.log(f"Training {cfg.model} on {cfg.data} with {cfg.processes} process(es) ...")
    res = launch(_resolved(cfg), log=ctx.log)
    test = res.metrics.get("test")
    metrics = {f"test_{k}": v for k, v in (test or {}).items() if k != "images"}
    labels = {}
    if ctx.volume is not None:
        from veil import data

        root = data.volume_path(ctx.volume, home=ctx.home).resolve()
        model = (res.out / "model.pt").resolve()
        if model.is_relative_to(root):
            labels["model"] = str(model.relative_to(root))
    if test:
        labels["accuracy"] = f"{test['Accuracy']:.4f}"
    series = [{k: row[k] for k in ("epoch", "loss", "images_per_s", "input_wait")}
              for row in res.metrics["epochs"]]
    return JobOutput(metrics, series, labels, res)


def train_job(cfg: TrainConfig, processes: int | None = None, *, job: str = "lane-detection",
              volume: str | None = None, snapshot: bool = False, track: bool = True,
              log: Log | None = None, home=None) -> JobResult:
    """Train; with `volume`, the data (and by default the run folder) live on that volume, and
    with `snapshot` the volume is snapshotted once training has finished. Nothing is
    snapshotted after a failure. `cfg.data` and `cfg.out` are taken as they are."""
    if processes is not None:
        cfg = replace(cfg, processes=processes)
    return run_job(train, cfg, job=job, experiment=EXPERIMENT, solution="lane-detection",
                   data=Path(cfg.data).absolute(), volume=volume,
                   out=Path(cfg.out).absolute(), snapshot=snapshot, track=track,
                   device=cfg.device, seed=cfg.seed, metric="test_Accuracy",
                   out_required=True, snapshot_flag="--enable-snapshot", prepare=check,
                   log=log, home=home)
