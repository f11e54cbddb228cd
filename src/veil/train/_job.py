"""The job-on-a-volume runner: resolve a job's data on a veil volume, record the run in MLflow
with its lineage, run it, and snapshot a volume once it has succeeded. Training jobs and batch
jobs of every solution run through `run_job`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.errors import InvalidArgument
from veil.progress import Log, Progress, mebibytes, or_silent, quiet


def stamp() -> str:
    """The time as veil and the seed's jobs put it in run and snapshot names."""
    from veil.data import timestamp

    return timestamp()


@dataclass
class JobContext:
    """What the platform resolved for a job before it runs."""

    job: str  # the job's name, in its run's and snapshot's names
    run_name: str  # JOB-YYYY-MM-DD-HH-MM-SS
    data: Path | None  # the data, resolved (inside `volume` when one is given)
    volume: str | None  # the volume holding the data
    out: Path | None  # where the job writes its files (None: nowhere)
    device: str = "cpu"
    seed: int = 0
    log: Log = print
    progress: Progress | None = None
    home: Path | None = None
    run_id: str | None = None  # the MLflow run, once it exists


@dataclass
class JobOutput:
    """What a job function returns: final metrics (flat numbers, logged to MLflow), per-step
    rows (e.g. one per epoch, logged with their step), labels for the snapshot, and the job's
    own result for the caller to render."""

    metrics: dict[str, float] = field(default_factory=dict)
    series: list[dict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    detail: Any = None


@dataclass
class JobResult:
    job: str
    run_name: str
    run_id: str | None  # the MLflow run (None: not tracked)
    out: Path | None  # the folder the job wrote into
    output: JobOutput
    snapshot: str | None = None  # taken after the job succeeded
    snapshot_volume: str | None = None
    results_volume: str | None = None


def run_job(fn: Callable[[Any, JobContext], JobOutput], config: Any, *, job: str,
            experiment: str, solution: str | None = None, data: str | Path | None = None,
            volume: str | None = None, out: str | Path | None = None,
            results: str | None = None, snapshot: bool = False, track: bool = True,
            device: str = "cpu", seed: int = 0, metric: str | None = None,
            out_required: bool = False, params: dict | None = None,
            snapshot_flag: str = "--snapshot", data_required: str | None = None,
            prepare: Callable[[Any, JobContext], None] | None = None,
            log: Log | None = None, progress: Progress | None = None,
            home: Path | None = None) -> JobResult:
    """Run `fn(config, context)` as a recorded job.

    - `data` is a path, inside `volume` when given (the volume must exist).
    - The job writes into `out` (relative to `volume` when one is given), else into
      RESULTS/<run>/ on the `results` volume (created if missing), else, when it needs a
      folder (`out_required`), into VOLUME/runs/<run>/.
    - With `snapshot`, the results volume (or, without one, the data volume) is snapshotted
      as snap-VOLUME-<run> (the run being JOB-<start time>) after the job succeeded, never
      after a failure.
    - `data_required` is the message for a missing `data` (None: the job may run without).
    - Fields of a dataclass `config` marked `shared` in their metadata (data, out, device,
      seed) are filled from the resolved values before `prepare` runs and the run is logged.
    - With `track`, an MLflow run (experiment `experiment`) holds the config, the metrics and
      the lineage tags of `veil.track`; it ends FAILED if the job fails.
    Everything that can be checked (names, the seed, the config's bounds, volumes, paths,
    `prepare`) is checked before the run is recorded."""
    from veil import data as vdata
    from veil.train._config import check_fields, check_seed

    vdata.validate_name(job, "job name")
    check_seed(seed)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        check_fields(config)
    if data is None and data_required:
        raise InvalidArgument(data_required)
    if out is not None and results is not None:
        raise InvalidArgument("--out and --results both say where the run writes: give one")
    log = quiet(log)
    run_name = f"{job}-{stamp()}"
    target = results if results is not None else volume
    if snapshot and target is None:
        raise InvalidArgument(f"{snapshot_flag} needs --volume (or --results): the snapshot is "
                              "of the volume holding the job's data and outputs")
    origin: tuple[str | None, str | None] = (None, None)
    if volume is not None:
        vdata.get_volume(volume, home=home)  # a missing volume fails here, before the job
        origin = vdata.data_origin(volume, home=home)
    path = vdata.resolve_path(data, volume, home=home).absolute() if data is not None else None
    if results is not None:
        vdata.validate_name(results, "volume name")
    out_dir: Path | None
    if out is not None:
        out_dir = Path(out)
        if volume is not None and not out_dir.is_absolute():
            out_dir = vdata.volume_path(volume, home=home) / out_dir
        out_dir = out_dir.absolute()
    elif results is not None:
        out_dir = None  # RESULTS/<run>, once the volume exists
    elif out_required and volume is not None:
        out_dir = vdata.volume_path(volume, home=home) / "runs" / run_name
    elif out_required:
        raise InvalidArgument("--out is required without --volume or --results")
    else:
        out_dir = None  # the job writes no files
    if snapshot and results is None:
        root = vdata.volume_path(volume, home=home).resolve()
        for what, p in (("--data", path), ("--out", out_dir)):
            if p is not None and not Path(p).resolve().is_relative_to(root):
                raise InvalidArgument(f"{what} {p} is not inside volume {volume!r}: the "
                                      "snapshot would not hold it")
    if snapshot:  # a name the snapshot can have, checked now rather than after the job
        vdata.validate_name(f"snap-{target}-{run_name}", "snapshot name")
    ctx = JobContext(job, run_name, path, volume, out_dir, device, seed, log, progress, home)
    config = _shared(config, ctx)
    if prepare is not None:
        prepare(config, ctx)  # bad options or data: no run is recorded for them
    if results is not None:
        vdata.ensure_volume(results, labels={"purpose": f"{solution or job} results"},
                            home=home)
        ctx.out = vdata.volume_path(results, home=home).absolute() / run_name
        config = _shared(config, ctx)
    if ctx.out is not None:
        ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.progress = or_silent(progress)

    def finish(run=None) -> JobResult:
        output = fn(config, ctx)
        snap = None
        if run is not None:
            for row in output.series:
                step = int(row.get("epoch", row.get("step", 0)))
                run.log_metrics({k: v for k, v in row.items() if k not in ("epoch", "step")
                                 and isinstance(v, (int, float))}, step=step)
            run.log_metrics(output.metrics)
        if snapshot:
            from veil import track as tracking

            labels = {"job": job, "run": run_name, **output.labels}
            if run is not None:
                labels["mlflow-run"] = run.run_id
            snap = vdata.create_snapshot(target, name=f"snap-{target}-{run_name}",
                                         labels=labels, home=home,
                                         progress=mebibytes(ctx.progress)).name
            if run is not None:
                run.set_tags(tracking.output_tags(snap, target))
        return JobResult(job, run_name, run.run_id if run else None, ctx.out, output, snap,
                         target if snap else None, results)

    if not track:
        return finish()
    from veil import track as tracking

    with tracking.start_run(experiment, run_name, home=home) as run:
        ctx.run_id = run.run_id
        run.log_params({**_params(config), **(params or {})})
        run.set_tags(tracking.lineage_tags(
            job=job, solution=solution, data_volume=volume,
            data_path=str(path) if path is not None else None, data_snapshot=origin[0],
            data_snapshot_volume=origin[1], run_dir=str(ctx.out) if ctx.out else None,
            metric=metric))
        return finish(run)


_SHARED = {"data": "data", "out": "out", "device": "device", "seed": "seed"}


def _shared(config: Any, ctx: JobContext) -> Any:
    """`config` with its fields marked `shared` set from the context (as strings where the
    field holds a path as text)."""
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        return config
    values = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("shared") and f.name in _SHARED:
            v = getattr(ctx, _SHARED[f.name])
            if isinstance(v, Path) and isinstance(getattr(config, f.name), str):
                v = str(v)
            values[f.name] = v if v is not None else getattr(config, f.name)
    return dataclasses.replace(config, **values)


def _params(config: Any) -> dict:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return dict(config or {})
