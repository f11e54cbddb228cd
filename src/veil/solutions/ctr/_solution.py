"""The registration of TR-4904's click-through-rate prediction (named by its `veil.solutions`
entry point): the Criteo click-log format, its generator and checker, the accuracy / AUC /
log-loss metrics and the training job on a Dask cluster. Data and engine code load only when a
command needs them."""

from __future__ import annotations

from pathlib import Path

import veil.solutions as vs
from veil.progress import Progress
from veil.solutions.ctr._config import TrainConfig
from veil.solutions.ctr._job import ExportOptions

SIZES = {"rows": 200_000, "test_rows": 20_000}
MAX_ROWS = 4_000_000_000  # a Criteo day is about 180 million rows; the 24 days 4.37 billion
NEEDS = {"numpy": "dask", "pandas": "dask"}


def generate(path: str | Path, *, seed: int = 0, sizes: dict[str, int] | None = None,
             progress: Progress | None = None) -> Path:
    """Click logs in Criteo's layout, labels drawn from a hidden model."""
    from veil.solutions.ctr._synth import generate as write

    return write(path, seed=seed, sizes={**SIZES, **(sizes or {})}, progress=progress)


def describe(sizes: dict[str, int]) -> str:
    return (f"{sizes['rows'] + sizes['test_rows']:,} click-log rows ({sizes['rows']:,} in "
            f"day_15, {sizes['test_rows']:,} in day_15_test)")


def check(path: str | Path) -> vs.CheckReport:
    """Read every day file in the folder and report each malformed line (file and line)."""
    from veil.solutions.ctr._check import check_folder

    return check_folder(path)


def score_arrays(pred, truth) -> float:
    from veil.solutions.ctr._metrics import scores

    return scores(truth, pred)["auc"]


SOLUTION = vs.register(vs.Solution(
    name="ctr",
    report="TR-4904",
    description="Click-through-rate prediction on Criteo click logs: a pandas + scikit-learn "
                "forest (the seed's baseline) against forests and LightGBM trained on a Dask "
                "cluster, with honest timing and accuracy, AUC and log-loss.",
    formats=[vs.DatasetFormat(
        name="criteo", description="Criteo Terabyte click logs: day_N files of label, 13 "
                                   "counts and 26 hashed categories, tab-separated (plain or "
                                   "gzip)",
        generate=generate, check=check, read="veil.solutions.ctr._criteo:read", sizes=SIZES,
        size_max={"rows": MAX_ROWS, "test_rows": MAX_ROWS}, size_min={"rows": 1,
                                                                      "test_rows": 1},
        describe=describe, needs=NEEDS,
        size_help={"rows": "Rows of day_15, the training day.",
                   "test_rows": "Rows of day_15_test, the held-out tail the model is scored "
                                "on."})],
    metrics=[vs.Metric("auc", score_arrays, description="area under the ROC curve of the "
                                                        "click probabilities")],
    jobs=[vs.JobSpec(
        name="train",
        description="Train a click model on day_15 (pandas + scikit-learn, a forest on Dask, or "
                    "LightGBM on Dask) and score it on day_15_test (TR-4904).",
        config=TrainConfig, run="veil.solutions.ctr._job:train",
        prepare="veil.solutions.ctr._job:check", name_for="veil.solutions.ctr._job:name_for",
        experiment="ctr", metric="test_auc", snapshot=False,
        data="the folder holding the Criteo day files", out_required=True,
        k8s="veil.solutions.ctr._job:manifests", k8s_options=ExportOptions,
        k8s_defaults={"namespace": "dask", "gpus": 0},
        render="veil.solutions.ctr._render:render", needs={"dask": "dask",
                                                           "sklearn": "dask"})],
    benchmark="benchmarks/ctr.py",
))
