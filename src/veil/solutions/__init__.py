"""The reference solutions as runnable pipelines, one package each, plugged in through one
contract: a `Solution` registered from the module named by a `veil.solutions` entry point.

    >>> from veil import solutions
    >>> [s.name for s in solutions.list_solutions()]
    ['ctr', 'face-privacy', 'lane-detection']
    >>> solutions.create_model("lane-detection", "light")

The CLI builds `veil solutions NAME generate|check|score|<job>|export k8s` from this registry.
"""

from veil.solutions._registry import (
    ENTRY_POINT_GROUP,
    MAX_SIZE,
    CheckReport,
    DatasetFormat,
    JobSpec,
    Metric,
    ModelSpec,
    Ref,
    Rendered,
    Solution,
    check_new_folder,
    create_model,
    generate_dataset,
    get_solution,
    list_solutions,
    load_entry_points,
    load_errors,
    register,
    resolve,
    sizes_for,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_SIZE",
    "CheckReport",
    "DatasetFormat",
    "JobSpec",
    "Metric",
    "ModelSpec",
    "Ref",
    "Rendered",
    "Solution",
    "check_new_folder",
    "create_model",
    "generate_dataset",
    "get_solution",
    "list_solutions",
    "load_entry_points",
    "load_errors",
    "register",
    "resolve",
    "sizes_for",
]
