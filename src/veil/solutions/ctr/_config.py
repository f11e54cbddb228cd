"""The training run's options (cheap to import: the CLI builds its flags from them, and
`veil --help` imports no engine). On Kubernetes each field is read from an environment variable
(DATA_DIR, OUT_DIR, ENGINE, ...; the scheduler from the operator's DASK_SCHEDULER_ADDRESS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from veil.errors import InvalidArgument
from veil.train import check_fields

ENGINES = ("pandas-sklearn", "dask-rf", "dask-lightgbm")
CATEGORICAL = ("none", "hashed", "target")
ON_BAD_LINES = ("error", "skip")
MAX_TREES = 10_000
MAX_WORKERS = 512


@dataclass
class TrainConfig:
    """A CTR training run: which engine, on which rows, with the seed's forest settings by
    default (10 trees of depth 10, the 13 integer features as float32, missing as 0)."""

    data: str = field(default="", metadata={"env": "DATA_DIR", "shared": True})
    out: str = field(default="", metadata={"env": "OUT_DIR", "shared": True})
    engine: str = field(default="dask-rf", metadata={
        "help": "pandas-sklearn (the seed's baseline), dask-rf (a forest trained across Dask "
                "workers and merged, as cuML's) or dask-lightgbm (LightGBM's Dask learner).",
        "choices": ENGINES})
    train_file: str = field(default="day_15", metadata={
        "help": "The day file trained on, in the data folder (plain or gzip)."})
    test_file: str = field(default="day_15_test", metadata={
        "help": "The held-out file scored (the seed's last 1M rows of day 15)."})
    rows: int = field(default=0, metadata={
        "help": "Train on the first N rows (the seed's nrows=50M; 0: all).", "min": 0})
    trees: int = field(default=10, metadata={
        "help": "Trees (forests) or boosting rounds (LightGBM).", "min": 1,
        "max": MAX_TREES})
    max_depth: int = field(default=10, metadata={"help": "Depth of each tree.", "min": 1,
                                                 "max": 64})
    n_bins: int = field(default=16, metadata={
        "help": "Histogram bins (LightGBM's max_bin, the seed's cuML n_bins); scikit-learn "
                "forests split exactly.", "min": 2, "max": 65_535})
    n_jobs: int = field(default=1, metadata={
        "help": "pandas-sklearn: cores (1: the seed's setup, 0: all).", "min": 0,
        "max": 4096})
    workers: int = field(default=2, metadata={
        "help": "Worker processes of the local Dask cluster (and of an exported DaskJob).",
        "min": 1, "max": MAX_WORKERS})
    scheduler: str = field(default="", metadata={
        "help": "tcp://HOST:PORT of a running Dask scheduler to train on (default: start a "
                "local cluster).", "env": "DASK_SCHEDULER_ADDRESS", "export": False})
    categorical: str = field(default="none", metadata={
        "help": "dask-lightgbm: also use the 26 categorical columns, none, hashed or target "
                "(target-encoded); the seed drops them.", "choices": CATEGORICAL})
    on_bad_lines: str = field(default="error", metadata={
        "help": "A malformed row: error (stop, naming file and line) or skip (count it).",
        "choices": ON_BAD_LINES})
    seed: int = field(default=0, metadata={"shared": True, "min": 0, "max": 2**32 - 1})
    device: str = field(default="cpu", metadata={"shared": True})

    def check(self) -> TrainConfig:
        """The options' ranges and the ones that go together (one line each)."""
        check_fields(self)
        if self.categorical != "none" and self.engine != "dask-lightgbm":
            raise InvalidArgument(f"--categorical {self.categorical} needs --engine "
                                  f"dask-lightgbm (the forests use the 13 counts, as the seed)")
        if self.scheduler:
            from veil.solutions.ctr._cluster import check_address  # the one address rule

            try:
                check_address(self.scheduler)
            except InvalidArgument:
                raise InvalidArgument(f"--scheduler must be a Dask scheduler address such as "
                                      f"tcp://10.0.0.5:8786, not {self.scheduler!r}") from None
        if self.scheduler and self.engine == "pandas-sklearn":
            raise InvalidArgument("--scheduler is for the Dask engines: pandas-sklearn trains "
                                  "in this process")
        if self.device != "cpu":
            raise InvalidArgument(f"--device {self.device}: the CTR engines run on CPU (the "
                                  "seed's GPU forests are cuML's, not installed here)")
        for name in (self.train_file, self.test_file):
            if not name or "/" in name or name in (".", ".."):
                raise InvalidArgument(f"{name!r} is not a file name in the data folder")
        return self
