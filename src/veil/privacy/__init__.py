"""Confidential inference: learned noise on a split model's activation, with measured leakage.

The names below are the whole public surface; the modules whose names start with `_` are
internal and may change.
"""

from veil.privacy._measure import (
    SEED_ALPHAS,
    AttackResult,
    BenchResult,
    EvaluateResult,
    attack,
    bench,
    default_workdir,
    evaluate,
    fit_one,
    load_task_model,
    obfuscator_path,
    obfuscators,
    parse_alphas,
)
from veil.privacy._obfuscator import IncompatibleObfuscator, Obfuscator, check_alpha
from veil.privacy._shapes import SHAPES_SPLIT_LAYER, SHAPES_WEIGHTS, shapes_cnn, shapes_images
from veil.privacy._split import SplitModel, fingerprint, split_at
from veil.privacy._tasks import (
    PrivacyTask,
    Probes,
    add_provider,
    get_task,
    list_tasks,
    register_task,
)
from veil.privacy._train import train_under_noise
from veil.privacy._util import check_device

__all__ = [
    "SEED_ALPHAS",
    "SHAPES_SPLIT_LAYER",
    "SHAPES_WEIGHTS",
    "AttackResult",
    "BenchResult",
    "EvaluateResult",
    "IncompatibleObfuscator",
    "Obfuscator",
    "PrivacyTask",
    "Probes",
    "SplitModel",
    "add_provider",
    "attack",
    "bench",
    "check_alpha",
    "check_device",
    "default_workdir",
    "evaluate",
    "fingerprint",
    "fit_one",
    "get_task",
    "list_tasks",
    "load_task_model",
    "obfuscator_path",
    "obfuscators",
    "parse_alphas",
    "register_task",
    "shapes_cnn",
    "shapes_images",
    "split_at",
    "train_under_noise",
]
