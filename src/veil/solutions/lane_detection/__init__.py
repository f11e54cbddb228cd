"""TR-4896's lane detection: TuSimple's format (read, and generated in it), its official
metric, the lane models and data-parallel training. Registered as the `lane-detection`
solution (`_solution`). Names load on first use: importing the package imports nothing heavy."""

from importlib import import_module

_LAZY = {
    "HEIGHT": "_tusimple", "H_SAMPLES": "_tusimple", "NO_POINT": "_tusimple",
    "WIDTH": "_tusimple", "LabelError": "_tusimple", "LaneLabel": "_tusimple",
    "label_files": "_tusimple", "read_dataset": "_tusimple", "read_labels": "_tusimple",
    "write_labels": "_tusimple",
    "ImageScore": "_metrics", "Result": "_metrics", "evaluate": "_metrics",
    "evaluate_files": "_metrics", "score_image": "_metrics",
    "generate": "_synth", "render": "_synth",
    "MODELS": "_model", "build": "_model", "decode": "_model",
    "TrainConfig": "_train", "launch": "_train", "predict": "_train",
    "train_job": "_job",
    "ExportOptions": "_k8s", "manifests": "_k8s",
    "SOLUTION": "_solution",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = sorted(_LAZY)
