"""The registration of TR-4896's lane detection (named by its `veil.solutions` entry point):
the TuSimple format, the light and SCNN models, the official metric, the training job. Model
and data code load only when a command needs them."""

from __future__ import annotations

from pathlib import Path

import veil.solutions as vs
from veil.progress import Progress
from veil.solutions.lane_detection._k8s import ExportOptions
from veil.solutions.lane_detection._train import TrainConfig

SIZES = {"train_clips": 300, "test_clips": 100}


def generate(path: str | Path, *, seed: int = 0, sizes: dict[str, int] | None = None,
             progress: Progress | None = None) -> Path:
    """Synthetic road frames in TuSimple's layout with exact labels."""
    from veil.solutions.lane_detection._synth import generate as write

    return write(path, seed=seed, progress=progress, **{**SIZES, **(sizes or {})})


def describe(sizes: dict[str, int]) -> str:
    return (f"{sizes['train_clips'] + sizes['test_clips']} labelled frames "
            f"({sizes['train_clips']} train, {sizes['test_clips']} test)")


def check(path: str | Path) -> vs.CheckReport:
    """Read every label line and check it (JSON, h_samples, one x per h_sample, the image
    exists); each problem names its file and line."""
    from veil.solutions.lane_detection._tusimple import read_dataset

    labels, errors = read_dataset(path, strict=False)
    lanes = [len(lab.lanes) for lab in labels]
    per = {str(k): lanes.count(k) for k in sorted(set(lanes))}
    summary = {"frames": len(labels), "lanes": sum(lanes), "lanes_per_frame": per}
    line = (f"{len(labels)} labelled frames, {sum(lanes)} lanes "
            f"({', '.join(f'{n}: {c}' for n, c in per.items())} lanes per frame); "
            f"{len(errors)} problem(s).")
    return vs.CheckReport(summary, list(errors), line)


def score_files(pred: str | Path, truth: str | Path) -> dict:
    """The official TuSimple metric (Accuracy, FP, FN) and F1 of a predictions file."""
    from veil.solutions.lane_detection._metrics import evaluate_files

    return evaluate_files(pred, truth).summary()


def render_training(res) -> vs.Rendered:
    run = res.output.detail
    test = run.metrics.get("test")
    lines = [f"Trained in {run.seconds:.1f} s; model: {run.out / 'model.pt'}"]
    if res.run_id:
        lines.append(f"MLflow run: {res.run_id}")
    if res.snapshot:
        lines.append(f"Snapshot: {res.snapshot} (volume {res.snapshot_volume})")
    predictions = run.out / "predictions.json"
    truth = Path(run.metrics["config"]["data"]) / "test_label.json"
    if test:
        lines.append(f"Accuracy {test['Accuracy']:.4f}  FP {test['FP']:.4f}  FN "
                     f"{test['FN']:.4f}  F1 {test['F1']:.4f}")
    if predictions.is_file():  # written when the test labels were scored
        lines += [f"Predictions: {predictions}", f"Test labels: {truth}"]
    data = {**run.metrics, "run_id": res.run_id, "snapshot": res.snapshot,
            "out": str(run.out),
            "predictions": str(predictions) if predictions.is_file() else None,
            "test_labels": str(truth) if predictions.is_file() else None}
    return vs.Rendered(lines, [], data, 0)


def _light():
    from veil.solutions.lane_detection._model import build

    return build("light")


def _scnn():
    from veil.solutions.lane_detection._model import build

    return build("scnn")


SOLUTION = vs.register(vs.Solution(
    name="lane-detection",
    report="TR-4896",
    description="Lane detection trained data-parallel (torchrun, DDP) on TuSimple-format data "
                "on a volume, with snapshots of data, model and logs.",
    formats=[vs.DatasetFormat(
        name="tusimple", description="TuSimple: clips/.../20.jpg, label_data_*.json and "
                                     "test_label.json (JSON lines)",
        generate=generate, check=check,
        read="veil.solutions.lane_detection._tusimple:read_dataset", sizes=SIZES,
        describe=describe, needs={"numpy": "torch", "PIL": "torch"},
        size_help={"train_clips": "Labelled training frames (label_data_veil.json).",
                   "test_clips": "Labelled test frames (test_label.json)."})],
    models=[vs.ModelSpec("light", "a 183 k-parameter lane model that trains on a CPU in minutes",
                      build=_light),
            vs.ModelSpec("scnn", "SCNN (VGG16-BN dilated, spatial message passing), the "
                              "report's model", build=_scnn)],
    metrics=[vs.Metric("Accuracy", score_files, files=True, shown=("Accuracy", "FP", "FN", "F1"),
                    description="TuSimple's official metric (with FP, FN) and F1")],
    jobs=[vs.JobSpec(
        name="train",
        description="Train a lane detector data-parallel on TuSimple-format data, scoring it on "
                    "the test labels at the end (TR-4896).",
        config=TrainConfig, run="veil.solutions.lane_detection._job:train",
        prepare="veil.solutions.lane_detection._job:check", experiment="lane-detection",
        metric="test_Accuracy", snapshot=False, data="a TuSimple folder",
        snapshot_flags=("--enable-snapshot/--no-enable-snapshot",), out_required=True,
        k8s="veil.solutions.lane_detection._k8s:manifests", k8s_options=ExportOptions,
        k8s_defaults={"namespace": "runai-lane-detection", "gpus": 1},
        render=render_training, needs={"torch": "torch"})],
    benchmark="benchmarks/lane_training.py",
))
