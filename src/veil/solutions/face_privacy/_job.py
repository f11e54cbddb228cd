"""TR-4928 scenario 2, the batch job: score the detector on a data set read from a veil volume,
clean or obfuscated, store the results on a results volume and snapshot it (run by
`veil.train.run_job`, so each run is in MLflow with its lineage); and the Kubernetes Job
manifests for the same job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from veil import k8s
from veil.errors import InvalidArgument
from veil.train import JobContext, JobOutput, JobResult, check_fields, run_job

if TYPE_CHECKING:
    from veil.solutions.face_privacy._evaluate import Evaluation

EXPERIMENT = "face-privacy"
MAX_ALPHA = 0.999  # as veil.privacy's
MAX_BATCH = 64  # 1024 x 1024 inputs: 12 MB each, and FaceBoxes' activations several times that


@dataclass
class EvaluateConfig:
    """A scoring run of the face detector, clean or with the activation obfuscated."""

    noisy: bool = field(default=False, metadata={"help": "Obfuscate the activation (needs "
                                                 "--alpha)."})
    alpha: float | None = field(default=None, metadata={
        "help": "ALPHA of the obfuscation, in [0, 0.999].", "min": 0.0, "max": MAX_ALPHA})
    # local files: not part of an exported Job (its image brings the shipped weights and fits
    # the noise on the data set's fit/ folder)
    obfuscator: Path | None = field(default=None, metadata={
        "help": "A fitted obfuscator (veil privacy fit --task faces); default: fit one on "
                "DATASET/fit.", "export": False})
    weights: Path | None = field(default=None, metadata={"help": "FaceBoxes weights (default: "
                                                         "shipped).", "export": False})
    workdir: Path | None = field(default=None, metadata={
        "help": "Where fitted obfuscators are kept (default ./veil-privacy-faces).",
        "export": False})
    batch_size: int = field(default=4, metadata={
        "help": f"Images per forward pass (1 to {MAX_BATCH}).", "min": 1, "max": MAX_BATCH})
    mechanism: str = field(default="noise", metadata={
        "help": "What runs at the split: noise (TR-4928's), or a shipped mechanism "
                "(bottleneck, adversarial, deep; veil privacy tasks lists them)."})


@dataclass
class BatchResult:
    evaluation: Evaluation
    results_dir: Path | None = None
    results_volume: str | None = None
    snapshot: str | None = None
    obfuscator: Path | None = None
    run_id: str | None = None


def job_name(cfg: EvaluateConfig) -> str:
    """faces-raw, or faces-alpha-A: the run's and the snapshot's names."""
    mech = "" if cfg.mechanism == "noise" else f"{cfg.mechanism}-"
    if not cfg.noisy:
        return f"faces-{mech}raw"
    return f"faces-{mech}alpha-{cfg.alpha:g}" if isinstance(cfg.alpha, (int, float)) \
        else f"faces-{mech}noisy"


def check(cfg: EvaluateConfig, ctx: JobContext) -> None:
    """Options that go together, their bounds, the device, ALPHA, the data set (every fold
    file and image header: a data set none of whose folds can be read is refused here) and
    the weights, before anything runs or a run is recorded."""
    from veil.privacy import Obfuscator, check_alpha, check_device
    from veil.solutions.face_privacy._fddb import read_fddb

    check_fields(cfg)
    from veil.privacy import get_task
    from veil.privacy.mechanisms import check_mechanism

    check_mechanism(cfg.mechanism, {m: 1 for m in get_task("faces").mechanisms})
    if ctx.data is None:
        raise InvalidArgument("--dataset is required (an FDDB-layout folder)")
    if cfg.noisy and cfg.alpha is None:
        raise InvalidArgument("--noisy needs --alpha (TR-4928 sweeps 0.05 ... 0.95)")
    if cfg.alpha is not None and not cfg.noisy:
        raise InvalidArgument("--alpha applies only with --noisy")
    if cfg.obfuscator is not None and not cfg.noisy:
        raise InvalidArgument("--obfuscator needs --noisy and --alpha")
    check_device(ctx.device)
    if cfg.alpha is not None:
        check_alpha(cfg.alpha)
    if cfg.obfuscator is not None:  # the folder `veil privacy fit` saves, both files checked
        Obfuscator.load(cfg.obfuscator)
    if cfg.workdir is not None and Path(cfg.workdir).exists() and \
            not Path(cfg.workdir).is_dir():
        raise InvalidArgument(f"--workdir {cfg.workdir} is not a folder")
    read_fddb(ctx.data, strict=False)
    if cfg.weights is not None:
        from veil.solutions.face_privacy._model import load_model

        load_model("cpu", cfg.weights, mechanism=cfg.mechanism)


def obfuscator_for(model, dataset: Path, alpha: float, obfuscator: Path | None, *,
                   workdir: Path | None, device: str, refit: bool = False, log=None,
                   progress=None, mechanism: str = "noise"):
    """The obfuscator to apply: `obfuscator` if given, else the one fitted on DATASET/fit for
    this ALPHA (fitted now if the work folder has none, shown on `progress`, by default on
    stderr)."""
    from veil.privacy import Obfuscator, default_workdir, obfuscator_path, obfuscators

    if obfuscator is not None:
        obf = Obfuscator.load(obfuscator, model)
        if abs(obf.alpha - alpha) > 1e-9:
            raise InvalidArgument(f"{obfuscator} was fitted at ALPHA {obf.alpha:g}, not {alpha:g}")
        return obf, Path(obfuscator)
    wd = Path(workdir) if workdir else default_workdir("faces")
    obfs = obfuscators("faces", dataset, [alpha], workdir=wd, model=model, refit=refit,
                       device=device, verbose=True, progress=progress, log=log,
                       mechanism=mechanism)
    return obfs[alpha], obfuscator_path(wd, obfs[alpha].distribution, alpha, mechanism)


def evaluate_job(cfg: EvaluateConfig, ctx: JobContext) -> JobOutput:
    """Detect and score every readable fold; write the results when the run has a folder."""
    from veil.privacy import check_alpha
    from veil.solutions.face_privacy import _evaluate, _model
    from veil.solutions.face_privacy._fddb import read_fddb

    alpha = check_alpha(cfg.alpha) if cfg.noisy else None
    ds = read_fddb(ctx.data, strict=False)
    model = _model.load_model(ctx.device, cfg.weights, mechanism=cfg.mechanism)
    transform = obf_path = None
    if alpha is not None:
        obf, obf_path = obfuscator_for(model, ctx.data, alpha, cfg.obfuscator,
                                       workdir=cfg.workdir, device=ctx.device, log=ctx.log,
                                       progress=ctx.progress, mechanism=cfg.mechanism)
        transform = obf.transform
    ev = _evaluate.run(model, ds, transform, alpha=alpha, batch_size=cfg.batch_size,
                       progress=ctx.progress)
    if ctx.out is not None:
        _evaluate.write(ev, ds, ctx.out)
    shown = ctx.data
    if ctx.volume is not None:
        from veil import data

        shown = ctx.data.relative_to(data.volume_path(ctx.volume, home=ctx.home))
    labels = {"dataset": str(shown), "mAP": f"{ev.map:.6f}",
              "alpha": "raw" if alpha is None else f"{alpha:g}", "mechanism": cfg.mechanism}
    if ctx.volume:
        labels["dataset-volume"] = ctx.volume
    metrics = {"mAP": ev.map, "roc_tpr_at_1000": ev.roc_tpr_at_1000,
               "images": float(ev.images), "faces": float(ev.faces)}
    return JobOutput(metrics, [], labels, (ev, obf_path))


def evaluate(dataset: str | Path, *, volume: str | None = None, alpha: float | None = None,
             obfuscator: Path | None = None, weights: Path | None = None,
             results: str | None = None, snapshot: bool = True, out: Path | None = None,
             workdir: Path | None = None, device: str = "cpu", batch_size: int = 4,
             track: bool = True, progress=None, log=None, home=None,
             mechanism: str = "noise") -> BatchResult:
    """Scenario 2 end to end. With `results`, the run's files go to RESULTS/<run>/ on that
    volume (created if missing) and the volume is snapshotted as snap-RESULTS-<run>.
    `mechanism` picks what runs at the split (a shipped one; "noise" is TR-4928's)."""
    cfg = EvaluateConfig(noisy=alpha is not None, alpha=alpha, obfuscator=obfuscator,
                         weights=weights, workdir=workdir, batch_size=batch_size,
                         mechanism=mechanism)
    res = run_job(evaluate_job, cfg, job=job_name(cfg), experiment=EXPERIMENT,
                  solution="face-privacy", data=dataset, volume=volume, out=out,
                  results=results, snapshot=snapshot and results is not None, track=track,
                  device=device, metric="mAP", prepare=check, log=log, progress=progress,
                  home=home)
    return as_batch_result(res)


def as_batch_result(res: JobResult) -> BatchResult:
    ev, obf_path = res.output.detail
    return BatchResult(ev, res.out, res.results_volume, res.snapshot, obf_path, res.run_id)


# ---------------------------------------------------------------------- Kubernetes
@dataclass
class ExportOptions:
    """Where the batch job's data and results live on the cluster."""

    alphas: str | None = field(default=None, metadata={
        "help": "One noisy job per ALPHA (comma-separated) beside the raw one."})
    data_pvc: str = field(default="inference-data", metadata={
        "help": "The PVC holding the data set (mounted at /data)."})
    results_pvc: str | None = field(default=None, metadata={
        "help": "A PVC for results (mounted at /results)."})


def _k8s_job_name(alpha: float | None) -> str:
    return "veil-inference-raw" if alpha is None else f"veil-inference-alpha-{alpha:g}".replace(
        ".", "-")


def job_manifest(alpha: float | None, target: k8s.Target, *, dataset: str, data_pvc: str,
                 results_pvc: str | None, batch_size: int = 4) -> dict:
    """A batch/v1 Job like the seed's inference-job-raw.yaml / inference-job-protopia-0.8.yaml,
    running `veil solutions face-privacy evaluate` with the data PVC mounted at /data. The pod's
    MLflow store would vanish with it, so the Job runs with --no-track."""
    command = ["veil", "solutions", "face-privacy", "evaluate", "--dataset",
               f"/data/{dataset.lstrip('/')}"]
    env: dict = {}
    if alpha is not None:
        env["ALPHA"] = f"{alpha:g}"
        command += ["--alpha", "$(ALPHA)", "--noisy"]
    mounts = {"data": "/data", "dshm": "/dev/shm"}
    volumes = [k8s.pvc_volume("data", data_pvc), k8s.shm_volume()]
    if results_pvc:
        command += ["--out", "/results/$(JOB_NAME)"]
        env["JOB_NAME"] = _k8s_job_name(alpha)
        mounts["results"] = "/results"
        volumes.append(k8s.pvc_volume("results", results_pvc))
    if target.gpus:
        command += ["--device", "cuda"]
    if batch_size != 4:
        command += ["--batch-size", str(batch_size)]
    command.append("--no-track")
    c = k8s.container("inference", target.image, command, env_vars=env, mounts=mounts,
                      gpus=target.gpus)
    template = k8s.pod_template([c], volumes, project=target.project)
    return k8s.job(_k8s_job_name(alpha), target.namespace, template, backoff_limit=5,
                   project=target.project)


def sweep(cfg: EvaluateConfig, alphas: str | None) -> list[float | None]:
    """The raw job plus one per ALPHA in `alphas` (or the config's own ALPHA when noisy)."""
    if cfg.noisy and cfg.alpha is None:
        raise InvalidArgument("--noisy needs --alpha")
    if cfg.alpha is not None and not cfg.noisy:
        raise InvalidArgument("--alpha applies only with --noisy")
    out: list[float | None] = [None]
    if alphas is not None:  # the rules of veil.privacy.parse_alphas, without importing torch
        items = [a.strip() for a in alphas.split(",")]
        if "" in items:
            raise InvalidArgument(f"--alphas {alphas!r} has an empty value (two commas in a "
                                  "row, or one at an end)")
        try:
            values = [float(a) for a in items]
        except ValueError:
            raise InvalidArgument(f"--alphas must be numbers separated by commas, not "
                                  f"{alphas!r}") from None
        for a in values:
            if a == 0:
                raise InvalidArgument("--alphas: ALPHA 0 is the raw job, which is always written")
            if values.count(a) > 1:
                raise InvalidArgument(f"--alphas: ALPHA {a:g} is given twice")
        out += values
    elif cfg.noisy:
        out = [cfg.alpha]
    for a in out:  # the bounds of veil.privacy's check_alpha, without importing torch here
        if a is not None and not 0.0 <= a <= MAX_ALPHA:
            raise InvalidArgument(f"ALPHA must be in [0, {MAX_ALPHA}] (0 is clean), not {a:g}")
    return out


def manifests(cfg: EvaluateConfig, target: k8s.Target, opts: ExportOptions, *,
              data: str = "FDDB") -> dict[str, dict]:
    """One Job manifest per ALPHA (the raw job first)."""
    target.check()
    k8s.check_name(opts.data_pvc, "data PVC", subdomain=True)
    if ".." in Path(data).parts:
        raise InvalidArgument(f"--data {data} leads outside the data PVC ('..' is refused)")
    if opts.results_pvc is not None:
        k8s.check_name(opts.results_pvc, "results PVC", subdomain=True)
    check_fields(cfg)
    return {("inference-job-raw.yaml" if a is None else f"inference-job-veil-{a:g}.yaml"):
            job_manifest(a, target, dataset=data, data_pvc=opts.data_pvc,
                         results_pvc=opts.results_pvc, batch_size=cfg.batch_size)
            for a in sweep(cfg, opts.alphas)}
