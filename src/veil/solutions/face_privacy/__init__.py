"""TR-4928's confidential face detection: FDDB data (real layout, or generated in it), FaceBoxes
split after its rapidly digested layers, AP and FDDB's discrete ROC, and the batch job.

The data layer (reader, generator) needs only numpy and Pillow; the model and the scoring need
PyTorch and are loaded on first use (`load_model`, `detect`, `evaluate`, ...)."""

from importlib import import_module

from veil.solutions.face_privacy._fddb import (
    Ellipse,
    FddbDataset,
    FddbImage,
    Fold,
    load_image,
    read_fddb,
    read_fold,
)
from veil.solutions.face_privacy._synth import generate, render

_LAZY = {
    "load_model": "_model", "detect": "_model", "to_input": "_model",
    "INPUT": "_model", "evaluate": "_evaluate", "log_lines": "_evaluate",
    "Evaluation": "_evaluate", "average_precision": "_metrics", "discrete_roc": "_metrics",
    "batch_evaluate": "_job", "emit_k8s": "_job", "loader": "_task", "images": "_task",
    "task_loss": "_task", "postprocess": "_model", "serving_client": "_serving",
    "export_models": "_serving",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{_LAZY[name]}")
    real = {"evaluate": "run", "batch_evaluate": "evaluate", "serving_client": "client"
            }.get(name, name)
    return getattr(module, real)


__all__ = ["Ellipse", "FddbDataset", "FddbImage", "Fold", "generate", "load_image", "read_fddb",
           "read_fold", "render", *_LAZY]
