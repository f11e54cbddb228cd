"""TR-4904's training run as a recorded job (`veil.train.run_job`): the Criteo day files read
from a folder or a veil volume, the model and its metrics written to the run folder, the run in
MLflow with the data's lineage, and (with --snapshot) the volume snapshotted once the model is
whole; and the same job as a DaskJob for the Dask Kubernetes operator."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from veil import k8s
from veil.errors import InvalidArgument, NotFound
from veil.solutions.ctr._config import TrainConfig
from veil.train import JobContext, JobOutput, ref, to_env

EXPERIMENT = "ctr"


def name_for(cfg: TrainConfig) -> str:
    """ctr-ENGINE: the run's and the snapshot's names."""
    return f"ctr-{cfg.engine}"


def check(cfg: TrainConfig, ctx: JobContext) -> None:
    """The options and the data files, before a run is recorded (the runner has filled data,
    out, device and seed)."""
    from veil.solutions.ctr._criteo import read_blocks

    cfg.check()
    if not Path(cfg.data).is_dir():
        raise NotFound(f"{cfg.data} is not a folder (give the folder holding the Criteo day "
                       "files)")
    for name in (cfg.train_file, cfg.test_file):
        # found (or NAME.gz), not empty, and its first rows parse: a wrong file fails here,
        # not after minutes of loading
        next(read_blocks(Path(cfg.data) / name, limit=1_000, block_rows=1_000, cats=False,
                         on_bad_lines=cfg.on_bad_lines), None)
    if cfg.scheduler:
        from veil.solutions.ctr._cluster import probe

        probe(cfg.scheduler)


def train(cfg: TrainConfig, ctx: JobContext) -> JobOutput:
    """Train and score; the test scores and timings for MLflow, the snapshot's labels."""
    from veil.solutions.ctr._engines import train as fit

    try:
        res = fit(cfg, log=ctx.log, progress=ctx.progress)
    except BaseException:
        if ctx.out is not None and ctx.out.is_dir() and not any(ctx.out.iterdir()):
            ctx.out.rmdir()  # a failed run leaves no empty run folder on the volume
        raise
    m = res.metrics
    metrics = {f"test_{k}": float(v) for k, v in m.items() if isinstance(v, (int, float))}
    metrics.update({f"{k}_s": float(v) for k, v in res.seconds.items()})
    metrics["train_rows"] = float(res.rows)
    labels = {"engine": cfg.engine, "auc": f"{m['auc']:.4f}", "accuracy": f"{m['accuracy']:.4f}"}
    if ctx.volume is not None:
        from veil import data

        root = data.volume_path(ctx.volume, home=ctx.home).resolve()
        model = Path(res.model).resolve()
        if model.is_relative_to(root):
            labels["model"] = str(model.relative_to(root))
    return JobOutput(metrics, [], labels, res)


def k8s_main(cfg: TrainConfig) -> int:
    """The DaskJob's runner pod: train against the operator's cluster (DASK_SCHEDULER_ADDRESS)."""
    from veil.solutions.ctr._engines import train as fit

    fit(cfg, log=print)
    return 0


@dataclass
class ExportOptions:
    """Where the Dask job's data lives on the cluster and how its workers are sized."""

    job_name: str = field(default="ctr-dask-rf", metadata={"help": "The DaskJob's name."})
    pvc: str = field(default="pvc-criteo-data", metadata={
        "help": "The PVC holding the day files, mounted at /data in the job and every worker."})
    worker_memory: str = field(default="8GiB", metadata={
        "help": "Memory per Dask worker (dask worker --memory-limit)."})


def manifests(cfg: TrainConfig, target: k8s.Target, opts: ExportOptions, *,
              data: str = "criteo") -> dict[str, dict]:
    """daskjob.yaml: the training run in a DaskJob (scheduler, `workers` workers reading the
    PVC, and the job pod running `veil.solutions.ctr._job:k8s_main`)."""
    target.check()
    cfg.check()
    if ".." in Path(data).parts:
        raise InvalidArgument(f"--data {data} leads outside the data PVC ('..' is refused)")
    job = k8s.check_name(opts.job_name, "Dask job")
    remote = replace(cfg, data=f"/data/{data.strip('/')}", out=f"/data/runs/{job}",
                     scheduler="", device="cpu")
    env = {k: v for k, v in to_env(remote).items() if v != ""}
    command = ["python", "-m", "veil.train", ref(k8s_main), "--from-env", ref(TrainConfig)]
    c = k8s.container("job", target.image, command, env_vars=env, mounts={"data": "/data"})
    return {"daskjob.yaml": k8s.daskjob(
        job, target.namespace, c, image=target.image, workers=cfg.workers,
        worker_memory=opts.worker_memory, volumes=[k8s.pvc_volume("data", opts.pvc)],
        mounts={"data": "/data"}, gpus=target.gpus, project=target.project)}
