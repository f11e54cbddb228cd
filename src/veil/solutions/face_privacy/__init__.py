"""TR-4928's confidential face detection: FDDB data (real layout, or generated in it), FaceBoxes
split after its rapidly digested layers, AP and FDDB's discrete ROC, the batch job and the
served models. Registered as the `face-privacy` solution (`_solution`).

Names load on first use: the data layer needs only numpy and Pillow; the model and the scoring
need PyTorch."""

from importlib import import_module

_LAZY = {
    "Ellipse": "_fddb", "FddbDataset": "_fddb", "FddbImage": "_fddb", "Fold": "_fddb",
    "load_image": "_fddb", "read_fddb": "_fddb", "read_fold": "_fddb",
    "generate": "_synth", "render": "_synth", "identity": "_synth", "render_identity": "_synth",
    "Identity": "_synth", "FACE_ATTRIBUTES": "_synth",
    "load_mechanism": "_mechanisms",
    "load_model": "_model", "detect": "_model", "to_input": "_model", "INPUT": "_model",
    "postprocess": "_model", "WEIGHTS": "_model",
    "evaluate": "_evaluate", "log_lines": "_evaluate", "extra_lines": "_evaluate",
    "Evaluation": "_evaluate", "write_results": "_evaluate",
    "average_precision": "_metrics", "discrete_roc": "_metrics",
    "EvaluateConfig": "_job", "batch_evaluate": "_job", "obfuscator_for": "_job",
    "manifests": "_job", "ExportOptions": "_job",
    "loader": "_task", "images": "_task", "task_loss": "_task",
    "serving_client": "_serving", "export_models": "_serving", "BASE": "_serving",
    "NOISY": "_serving",
    "faceboxes": "_faceboxes", "training_samples": "_train", "train_detector": "_train",
    "SOLUTION": "_solution",
}
_RENAMED = {"evaluate": "run", "batch_evaluate": "evaluate", "serving_client": "client",
            "write_results": "write", "training_samples": "samples", "train_detector": "train"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{_LAZY[name]}")
    return getattr(module, _RENAMED.get(name, name))


__all__ = sorted(_LAZY)
