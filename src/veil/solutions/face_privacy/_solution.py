"""TR-4928's confidential face detection as a veil solution: its registration (the module the
`veil.solutions` entry point names). Imports nothing heavy: the parts load on first use."""

from __future__ import annotations

from pathlib import Path

from veil.progress import Progress
from veil.solutions import (
    CheckReport,
    DatasetFormat,
    JobSpec,
    Metric,
    ModelSpec,
    Rendered,
    Solution,
    register,
)
from veil.solutions.face_privacy._job import EvaluateConfig, ExportOptions

SIZES = {"images_per_fold": 30, "fit_per_fold": 10, "attack_per_fold": 0}


def generate(path: str | Path, *, seed: int = 0, sizes: dict[str, int] | None = None,
             progress: Progress | None = None) -> Path:
    """Synthetic faces in FDDB's layout: 10 folds, and ROOT/fit and ROOT/attack when asked."""
    from veil.solutions.face_privacy._synth import generate as write

    return write(path, seed=seed, progress=progress, **{**SIZES, **(sizes or {})})


def describe(sizes: dict[str, int]) -> str:
    fit, attack = sizes["fit_per_fold"], sizes["attack_per_fold"]
    return (f"{10 * sum(sizes.values())} images (10 folds of {sizes['images_per_fold']}"
            f"{f', fit/ {fit} per fold' if fit else ''}"
            f"{f', attack/ {attack} per fold' if attack else ''})")


def check(path: str | Path) -> CheckReport:
    """Read every fold (and fit/, attack/ where present) and every image's header; each
    problem names its file and line."""
    from veil.solutions.face_privacy._fddb import read_fddb

    root = Path(path)
    summary: dict = {}
    errors: list[str] = []
    for sub in ("", "fit", "attack"):
        if sub and not (root / sub).is_dir():
            continue
        ds = read_fddb(root / sub, strict=False, empty_ok=True, within=root)
        summary[sub or "test"] = {"folds": len(ds.folds),
                                  "images": sum(len(f.images) for f in ds.folds),
                                  "faces": sum(f.faces for f in ds.folds)}
        errors += [f"{sub + '/' if sub else ''}FDDB-fold-{i}: {why}"
                   for i, why in sorted(ds.errors.items())]
    t = summary["test"]
    extra = "".join(f", {k}/ {v['images']} images" for k, v in summary.items() if k != "test")
    return CheckReport(summary, errors, f"{t['folds']} folds, {t['images']} images, "
                                        f"{t['faces']} faces{extra}; {len(errors)} problem(s).")


def render_evaluation(res) -> Rendered:
    """The seed's results block on stdout; where the results went on stderr."""
    from veil.solutions.face_privacy._evaluate import extra_lines, log_lines
    from veil.solutions.face_privacy._job import as_batch_result

    b = as_batch_result(res)
    ev = b.evaluation
    notes = []
    if b.results_dir:
        where = f" on volume {b.results_volume}" if b.results_volume else ""
        notes.append(f"results: {b.results_dir}{where}")
    if b.snapshot:
        notes.append(f"snapshot: {b.snapshot}")
    if b.run_id:
        notes.append(f"MLflow run: {b.run_id}")
    data = {**ev.summary(), "results_dir": b.results_dir, "results_volume": b.results_volume,
            "snapshot": b.snapshot, "obfuscator": b.obfuscator, "run_id": b.run_id}
    return Rendered(log_lines(ev) + extra_lines(ev), notes, data, 1 if ev.errors else 0)


def _faceboxes(device: str = "cpu", weights: str | Path | None = None):
    from veil.solutions.face_privacy._model import load_model

    return load_model(device, weights)


def _average_precision(detections, truths) -> float:
    from veil.solutions.face_privacy._metrics import average_precision

    return average_precision(detections, truths)


def _tpr_at_1000(detections, truths) -> float:
    from veil.solutions.face_privacy._metrics import discrete_roc

    return discrete_roc(detections, truths).rate_at(1000)


SOLUTION = register(Solution(
    name="face-privacy",
    report="TR-4928",
    description="Confidential face detection: FaceBoxes split after its rapidly digested "
                "layers, learned noise on the activation, FDDB-layout data.",
    formats=[DatasetFormat(
        name="fddb", description="FDDB: FDDB-folds/ ellipse annotations, originalPics/ JPEGs; "
                                 "ROOT/fit and ROOT/attack for veil.privacy",
        generate=generate, check=check, read="veil.solutions.face_privacy._fddb:read_fddb",
        sizes=SIZES, size_min={"images_per_fold": 1}, describe=describe,
        needs={"numpy": "torch", "PIL": "torch"},
        size_help={"images_per_fold": "Images in each of the 10 folds.",
                   "fit_per_fold": "Images per fold of ROOT/fit (for fitting the obfuscator); "
                                   "0: none.",
                   "attack_per_fold": "Images per fold of ROOT/attack (the attacker's own "
                                      "images); 0: none."})],
    models=[ModelSpec("faceboxes", "FaceBoxes (1024 x 1024 input) as a split model, shipped "
                                   "weights trained on generated faces", build=_faceboxes,
                      weights=Path(__file__).parent / "weights" / "faceboxes.pt",
                      split="head")],
    metrics=[Metric("AP", _average_precision, description="average precision at IoU 0.5 of "
                                                            "ellipse-derived boxes (per fold)"),
             Metric("TPR@1000FP", _tpr_at_1000, description="FDDB discrete ROC: true-positive "
                                                             "rate at 1,000 false positives")],
    jobs=[JobSpec(
        name="evaluate",
        description="Score the face detector on an FDDB-layout data set, clean or obfuscated "
                    "(TR-4928 scenario 2), printing per-fold AP and mAP in the seed's format.",
        config=EvaluateConfig, run="veil.solutions.face_privacy._job:evaluate_job",
        prepare="veil.solutions.face_privacy._job:check",
        name_for="veil.solutions.face_privacy._job:job_name", experiment="face-privacy",
        metric="mAP", snapshot=True, data_flags=("--dataset",), data="an FDDB-layout folder",
        k8s="veil.solutions.face_privacy._job:manifests", k8s_options=ExportOptions,
        k8s_defaults={"namespace": "inference", "gpus": 0}, render=render_evaluation,
        needs={"torch": "torch"})],
    privacy_task="veil.solutions.face_privacy._task",
    serving="veil.solutions.face_privacy._serving:export_models",
    benchmark="benchmarks/serving.py",
))
