"""TR-4928 scenario 2, the batch job: evaluate a data set read from a veil volume, store the
results on a results volume and snapshot it; and the Kubernetes Job manifests for the same job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from veil.errors import InvalidArgument, NotFound
from veil.solutions.face_privacy import _evaluate, _model
from veil.solutions.face_privacy._fddb import read_fddb


@dataclass
class BatchResult:
    evaluation: _evaluate.Evaluation
    results_dir: Path | None = None
    results_volume: str | None = None
    snapshot: str | None = None
    obfuscator: Path | None = None


def resolve_dataset(dataset: str | Path, volume: str | None, *, home=None) -> Path:
    """`dataset` itself, or with `volume` the path inside that volume (as the seed's job reads
    /data/netapp-face-detection/FDDB from its PVC)."""
    if volume is None:
        return Path(dataset)
    from veil import data

    root = data.volume_path(volume, home=home)
    rel = Path(dataset)
    if rel.is_absolute():
        try:
            rel = rel.relative_to(root)
        except ValueError:
            raise InvalidArgument(f"{dataset} is not inside volume {volume!r} ({root}); give a "
                                  f"path relative to the volume") from None
    path = root / rel
    real, real_root = path.resolve(), root.resolve()
    if real != real_root and real_root not in real.parents:
        raise InvalidArgument(f"{dataset} leads outside volume {volume!r}")
    return path


def run_name(alpha: float | None) -> str:
    kind = "raw" if alpha is None else f"alpha-{alpha:g}"
    return f"faces-{kind}-{time.strftime('%Y-%m-%d-%H-%M-%S')}"


def obfuscator_for(model, dataset: Path, alpha: float, obfuscator: Path | None, *,
                   workdir: Path | None, device: str, refit: bool = False, log=None):
    """The obfuscator to apply: `obfuscator` if given, else the one fitted on DATASET/fit for
    this ALPHA (fitted now if the work folder has none)."""
    from veil.privacy import Obfuscator, _measure

    if obfuscator is not None:
        obf = Obfuscator.load(obfuscator, model)
        if abs(obf.alpha - alpha) > 1e-9:
            raise InvalidArgument(f"{obfuscator} was fitted at ALPHA {obf.alpha:g}, not {alpha:g}")
        return obf, Path(obfuscator)
    wd = Path(workdir) if workdir else _measure.default_workdir("faces")
    obfs = _measure.obfuscators("faces", dataset, [alpha], workdir=wd, model=model,
                                refit=refit, device=device, verbose=True, log=log)
    return obfs[alpha], _measure.obfuscator_path(wd, obfs[alpha].distribution, alpha)


def evaluate(dataset: str | Path, *, volume: str | None = None, alpha: float | None = None,
             obfuscator: Path | None = None, weights: Path | None = None,
             results: str | None = None, snapshot: bool = True, out: Path | None = None,
             workdir: Path | None = None, device: str = "cpu", batch_size: int = 4,
             progress: Callable | None = None, log=None, home=None) -> BatchResult:
    """Scenario 2 end to end. With `results`, the run's files go to RESULTS/<run>/ on that
    volume (created if missing) and the volume is snapshotted as snap-RESULTS-<run>."""
    from veil.privacy._obfuscator import check_alpha
    from veil.privacy._util import check_device

    check_device(device)
    if alpha is not None:
        alpha = check_alpha(alpha)
    if obfuscator is not None and alpha is None:
        raise InvalidArgument("--obfuscator needs --noisy and --alpha")
    path = resolve_dataset(dataset, volume, home=home)
    ds = read_fddb(path, strict=False)
    if results is not None:  # fail before the long part, not after
        from veil import data
        from veil.data import validate_name

        validate_name(results, "volume name")
        try:
            data.get_volume(results, home=home)
        except NotFound:
            data.create_volume(results, labels={"purpose": "face-privacy results"}, home=home)
    model = _model.load_model(device, weights)
    transform, obf_path = None, None
    if alpha is not None:
        obf, obf_path = obfuscator_for(model, path, alpha, obfuscator, workdir=workdir,
                                       device=device, log=log)
        transform = obf.transform
    ev = _evaluate.run(model, ds, transform, alpha=alpha, batch_size=batch_size,
                       progress=progress)
    out_dir, snap = None, None
    name = run_name(alpha)
    if results is not None:
        from veil import data

        out_dir = _evaluate.write(ev, ds, data.volume_path(results, home=home) / name)
        shown = path.relative_to(data.volume_path(volume, home=home)) if volume else path
        labels = {"job": name, "dataset": str(shown), "mAP": f"{ev.map:.6f}",
                  "alpha": "raw" if alpha is None else f"{alpha:g}"}
        if volume:
            labels["dataset-volume"] = volume
        if snapshot:
            snap = data.create_snapshot(results, name=f"snap-{results}-{name}", labels=labels,
                                        home=home).name
    elif out is not None:
        out_dir = _evaluate.write(ev, ds, Path(out))
    return BatchResult(ev, out_dir, results, snap, obf_path)


# ---------------------------------------------------------------------- Kubernetes
def _job_name(alpha: float | None) -> str:
    return "veil-inference-raw" if alpha is None else f"veil-inference-alpha-{alpha:g}".replace(
        ".", "-")


def job_manifest(alpha: float | None, *, dataset: str, data_pvc: str, results_pvc: str | None,
                 namespace: str, image: str, gpus: int) -> dict:
    """A batch/v1 Job like the seed's inference-job-raw.yaml / inference-job-protopia-0.8.yaml,
    running `veil solutions face-privacy evaluate` with the data PVC mounted at /data."""
    command = ["veil", "solutions", "face-privacy", "evaluate", "--dataset",
               f"/data/{dataset.lstrip('/')}"]
    container: dict = {"name": "inference", "image": image, "imagePullPolicy": "IfNotPresent"}
    if alpha is not None:
        container["env"] = [{"name": "ALPHA", "value": f"{alpha:g}"}]
        command += ["--alpha", "$(ALPHA)", "--noisy"]
    mounts = [{"mountPath": "/data", "name": "data"}, {"mountPath": "/dev/shm", "name": "dshm"}]
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": data_pvc}},
               {"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    if results_pvc:
        command += ["--out", "/results/$(JOB_NAME)"]
        container.setdefault("env", []).append({"name": "JOB_NAME", "value": _job_name(alpha)})
        mounts.append({"mountPath": "/results", "name": "results"})
        volumes.append({"name": "results", "persistentVolumeClaim": {"claimName": results_pvc}})
    container["command"] = command
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
        command += ["--device", "cuda"]
    container["volumeMounts"] = mounts
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": _job_name(alpha), "namespace": namespace},
        "spec": {"backoffLimit": 5, "template": {"spec": {
            "volumes": volumes, "containers": [container], "restartPolicy": "Never"}}},
    }


def emit_k8s(directory: Path, alphas: Sequence[float | None], *, dataset: str = "FDDB",
             data_pvc: str = "inference-data", results_pvc: str | None = None,
             namespace: str = "inference", image: str = "veil:latest", gpus: int = 0) -> list[Path]:
    """Write one Job manifest per ALPHA (None: the raw job) as YAML; returns the files."""
    import yaml

    for value, what in ((data_pvc, "data PVC"), (namespace, "namespace")):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value or "") or len(value) > 63:
            raise InvalidArgument(f"{value!r} is not a valid Kubernetes name for the {what}")
    if gpus < 0:
        raise InvalidArgument(f"gpus must be >= 0, not {gpus}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for alpha in alphas:
        m = job_manifest(alpha, dataset=dataset, data_pvc=data_pvc, results_pvc=results_pvc,
                         namespace=namespace, image=image, gpus=gpus)
        f = directory / ("inference-job-raw.yaml" if alpha is None
                         else f"inference-job-veil-{alpha:g}.yaml")
        f.write_text(yaml.safe_dump(m, sort_keys=False, width=100))
        files.append(f)
    return files
