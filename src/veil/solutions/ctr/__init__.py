"""TR-4904's click-through-rate prediction: Criteo click logs read in blocks, a pandas +
scikit-learn random forest (the seed's baseline) against forests and gradient boosting trained
on a real Dask cluster, scored by accuracy, AUC and log-loss beside the majority class.

    >>> from veil.solutions import ctr
    >>> ctr.generate("criteo", sizes={"rows": 100_000, "test_rows": 10_000})
    >>> res = ctr.train(ctr.TrainConfig(data="criteo", out="run", engine="dask-rf"))
    >>> res.metrics["auc"]

Names load on first use: registering the solution (``veil --help``) imports no engine.
"""

from __future__ import annotations

import importlib
from typing import Any

from veil.solutions.ctr._config import CATEGORICAL, ENGINES, TrainConfig

_LAZY = {
    "generate": "_synth", "read": "_criteo", "read_blocks": "_criteo",
    "byte_ranges": "_criteo", "count_rows": "_criteo", "Block": "_criteo",
    "BadLine": "_criteo", "train": "_engines", "TrainResult": "_engines",
    "scores": "_metrics", "cluster": "_cluster",
}

__all__ = ["CATEGORICAL", "ENGINES", "TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
