"""The three training engines of TR-4904, each reading the training day, fitting, scoring the
held-out file and saving the model with its metrics.

- pandas-sklearn: the seed's baseline in one process. The first `rows` rows, the label and the
  13 counts as float32 with missing as 0, a scikit-learn RandomForestClassifier(max_depth,
  trees, n_jobs). The rows are parsed by veil's Criteo reader (`_criteo.read`, cats=False), not
  by `pandas.read_csv`: the same parser for every engine, so that timings and rows compare.
- dask-rf: the algorithm of cuML's Dask forest (which the seed ran on GPUs), on CPU. The rows
  are split into byte ranges, one per worker; each worker reads its range itself (the data never
  passes through this process), fits its share of the trees (trees / workers, the remainder
  spread) with scikit-learn on its own rows, and the fitted forests are merged into ONE
  RandomForestClassifier whose trees are all of theirs (it predicts by averaging their
  probabilities). Each worker's trees see only that worker's rows, as in cuML.
- dask-lightgbm: LightGBM's Dask learner (`lightgbm.DaskLGBMClassifier`, data-parallel over the
  workers' partitions). `trees` is its number of boosting rounds: 10 rounds are not a 10-tree
  forest (each round adds one small correction), so the benchmark may raise it. The counts keep
  their missing values (LightGBM learns where missing goes) and, with `categorical`, the 26
  categorical columns are added, hashed or target-encoded (see `_features`).

Rows: `rows` N takes the first N rows of the training file for every engine. A Dask engine finds
the byte offset where row N ends (a newline count on a worker) and splits [0, offset) into equal
byte ranges: the reader takes the rows that START in a range, so the ranges hold exactly the
first N rows. A gzip file is not splittable: it is one partition read by one worker.

The held-out file is read and predicted ON THE WORKERS as well (one byte range per worker, the
model broadcast to them); only labels and probabilities come back to be scored here.

Files: the data folder must be readable at the same path here and on every worker (a shared
volume), and veil must be importable on the workers. seconds["load"] is reading the training
rows into memory (the workers' for Dask); "fit" is building features and fitting (and merging);
"predict" is reading and predicting the test file and scoring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import BackendError, InvalidArgument, NotFound, VeilError
from veil.progress import Progress, or_silent
from veil.solutions.ctr import _criteo
from veil.solutions.ctr._cluster import cluster, dashboard, peak_rss, workers_of
from veil.solutions.ctr._config import CATEGORICAL, ENGINES, TrainConfig
from veil.solutions.ctr._metrics import scores

__all__ = ["CATEGORICAL", "ENGINES", "TrainConfig", "TrainResult", "merge_forests", "train"]

HASH_BITS = 12
"""categorical=hashed: each category's hex value hashed into 2**HASH_BITS codes per column."""
CAT_MAX_BIN = 256
"""categorical=hashed: LightGBM bins per categorical column (max_bin would keep only the n_bins
most frequent categories)."""
TARGET_SMOOTHING = 20.0
"""categorical=target: (clicks + a * prior) / (impressions + a), a = TARGET_SMOOTHING."""
MAX_LEAVES = 255
"""dask-lightgbm: num_leaves = min(2**max_depth, MAX_LEAVES)."""


@dataclass
class TrainResult:
    """What a training run measured and where it saved the model."""

    engine: str
    metrics: dict[str, Any]  # _metrics.scores on the test file
    seconds: dict[str, float]  # load, fit, predict
    peak_rss_bytes: dict[str, int]  # "client" (this process) and "worker tcp://..." each
    dashboard: str | None  # the Dask dashboard's status page (None for pandas-sklearn)
    rows: int  # training rows used
    test_rows: int
    skipped: int  # malformed lines skipped (on_bad_lines=skip), train and test files
    workers: int  # processes that held training rows (1 for pandas-sklearn)
    trees: int  # trees in the saved model (forests) or boosting rounds (LightGBM)
    out: str
    model: str  # the saved model's path: model.joblib (forests) or model.txt (LightGBM)
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (metrics.json)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def train(cfg: TrainConfig, *, log: Callable[[str], None] | None = None,
          progress: Progress | None = None) -> TrainResult:
    """Train `cfg.engine` on the training file, score the test file, save model and metrics in
    `cfg.out` (each written under a temporary name, then renamed)."""
    cfg.check()
    say = log or (lambda line: None)
    progress = or_silent(progress)
    train_path, test_path = _files(cfg)
    if not cfg.out:
        raise InvalidArgument("no output folder (out) for the model and its metrics")
    if cfg.engine == "pandas-sklearn":
        run = _pandas_sklearn(cfg, train_path, test_path, say, progress)
    else:
        with cluster(cfg.scheduler or None, workers=cfg.workers, log=say) as client:
            engine = _dask_rf if cfg.engine == "dask-rf" else _dask_lightgbm
            run = engine(client, cfg, train_path, test_path, say, progress)
            run["peak_rss_bytes"] = peak_rss(client)
            run["dashboard"] = dashboard(client)
    return _save(cfg, run, say)


def _files(cfg: TrainConfig) -> tuple[Path, Path]:
    data = Path(cfg.data)
    if not cfg.data or not data.is_dir():
        raise NotFound(f"data folder {cfg.data or '(none)'} does not exist")
    paths = []
    for name in (cfg.train_file, cfg.test_file):
        path = (data / name).resolve()
        if not path.is_file():
            raise NotFound(f"{data / name} does not exist")
        paths.append(path)
    return paths[0], paths[1]


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def _score_line(m: dict) -> str:
    auc = "n/a" if m["auc"] is None else f"{m['auc']:.4f}"
    return (f"AUC {auc}, accuracy {m['accuracy']:.4f} (majority class "
            f"{m['majority_accuracy']:.4f}), log-loss {m['logloss']:.4f}")


# --- pandas-sklearn ---------------------------------------------------------------------------

def _n_jobs(n: int) -> int:
    return -1 if n == 0 else n


def _pandas_sklearn(cfg, train_path, test_path, say, progress) -> dict:
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    block = _criteo.read(train_path, cats=False, limit=cfg.rows or None,
                         on_bad_lines=cfg.on_bad_lines, progress=progress)
    X, y = np.nan_to_num(block.ints, nan=0.0, copy=False), block.label
    load = time.perf_counter() - t0
    say(f"Loaded {len(block):,} rows in {_fmt_s(load)} in this process")
    _two_classes(y, f"{train_path.name} (first {len(block):,} rows)")

    t0 = time.perf_counter()
    model = RandomForestClassifier(n_estimators=cfg.trees, max_depth=cfg.max_depth,
                                   n_jobs=_n_jobs(cfg.n_jobs), random_state=cfg.seed)
    model.fit(X, y)
    model.n_jobs = 1  # predicting and the saved model do not inherit the fit's cores
    fit = time.perf_counter() - t0
    say(f"Fitted {cfg.trees} trees on {len(y):,} rows in {_fmt_s(fit)} "
        f"(n_jobs={cfg.n_jobs}, {len(y) / max(fit, 1e-9):,.0f} rows/s)")
    del X, y

    t0 = time.perf_counter()
    test = _criteo.read(test_path, cats=False, on_bad_lines=cfg.on_bad_lines)
    p = _p_click(model, np.nan_to_num(test.ints, nan=0.0, copy=False))
    metrics = scores(test.label, p)
    predict = time.perf_counter() - t0
    say(f"Test: {len(test):,} rows, {_score_line(metrics)} in {_fmt_s(predict)}")
    return {"model": model, "metrics": metrics, "rows": len(block), "test_rows": len(test),
            "skipped": block.skipped + test.skipped, "workers": 1, "trees": cfg.trees,
            "seconds": {"load": load, "fit": fit, "predict": predict},
            "peak_rss_bytes": peak_rss(), "dashboard": None}


def _two_classes(y: np.ndarray, where: str) -> None:
    if y.size == 0:
        raise InvalidArgument(f"{where}: no rows to train on")
    if y.min() == y.max():
        raise InvalidArgument(f"{where}: every label is {int(y[0])}; a click model needs "
                              "clicks and non-clicks")


def _p_click(model, X: np.ndarray) -> np.ndarray:
    """The probability of a click (class 1) from a fitted scikit-learn-style classifier."""
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(X))


# --- partitions on the workers ----------------------------------------------------------------

@dataclass
class _Part:
    """One partition's rows, held in a worker's memory."""

    ints: np.ndarray  # float32 (n, 13), missing = NaN
    label: np.ndarray  # int8 (n,)
    cats: np.ndarray | None  # int64 (n, 26) hex values, missing = -1
    skipped: int

    def __len__(self) -> int:
        return len(self.label)


def _read_part(path: str, start: int, end: int | None, limit: int | None, on_bad_lines: str,
               cats: bool, fill: bool) -> _Part:
    """Runs on a worker: the rows starting in [start, end) of `path`; with `fill`, missing
    counts become 0 in place (the seed's fillna(0), without a second copy)."""
    b = _criteo.read(path, start=start, end=end, limit=limit, on_bad_lines=on_bad_lines,
                     cats=cats)
    ints = np.nan_to_num(b.ints, nan=0.0, copy=False) if fill else b.ints
    return _Part(ints, b.label, b.cats if cats else None, b.skipped)


def _part_meta(part: _Part) -> tuple[int, int, int]:
    """Rows, clicks and skipped lines of a partition (small, for the client)."""
    return len(part), int(part.label.sum(dtype=np.int64)), part.skipped


def _prefix_end(path: str, rows: int) -> int | None:
    """Runs on a worker: the byte offset just past the `rows`-th line of a plain file (None
    when the file has no more lines than that): the first `rows` rows are those starting in
    [0, offset)."""
    seen, offset = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n = chunk.count(b"\n")
            if seen + n >= rows:
                pos = -1
                for _ in range(rows - seen):
                    pos = chunk.index(b"\n", pos + 1)
                return offset + pos + 1
            seen += n
            offset += len(chunk)
    return None


def _ranges(client, path: Path, parts: int, rows: int) -> list[tuple[int, int | None, int | None]]:
    """(start, end, limit) of each partition of the first `rows` rows (0: all) of `path`."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"  # gzip is found by its magic bytes, as the reader does
    if gz or parts == 1:
        return [(0, None, rows or None)]
    if not rows:
        return [(s, e, None) for s, e in
                _result(client.submit(_criteo.byte_ranges, str(path), parts, pure=False))]
    end = _result(client.submit(_prefix_end, str(path), rows, pure=False))
    if end is None:
        end = path.stat().st_size
    cuts = [round(end * i / parts) for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1], None) for i in range(parts)]


def _load(client, path: Path, addrs: Sequence[str], rows: int, cfg: TrainConfig, cats: bool,
          progress: Progress, what: str,
          fill: bool = False) -> tuple[list, list[str], list[tuple[int, int, int]]]:
    """Read `path` into the workers' memory, one byte range per worker in `addrs`: the
    partitions' futures, the worker holding each, and each one's (rows, clicks, skipped)."""
    ranges = _ranges(client, path, len(addrs), rows)
    progress.start(len(ranges), f"reading {what} on {len(ranges)} worker"
                   f"{'s' if len(ranges) != 1 else ''}")
    futures = [client.submit(_read_part, str(path), s, e, lim, cfg.on_bad_lines, cats, fill,
                             workers=[a], allow_other_workers=True, pure=False,
                             key=f"read_partition-{path.name}-{i}-{os.urandom(4).hex()}")
               for i, ((s, e, lim), a) in enumerate(zip(ranges, addrs, strict=False))]
    _wait(client, futures, progress)
    metas = _result([client.submit(_part_meta, f, workers=[a], allow_other_workers=True,
                                   pure=False) for f, a in zip(futures, addrs, strict=False)])
    return futures, list(addrs[:len(futures)]), metas


def _wait(client, futures: Sequence, progress: Progress | None = None) -> None:
    """Wait for tasks without fetching their results; a task's error is raised here as the
    same one-line error (BadLine "FILE:LINE: ...") rather than a distributed traceback."""
    from distributed import as_completed

    for f in as_completed(list(futures), loop=client.loop):
        if f.status == "error":
            _raise(f.exception(), f)
        if progress is not None:
            progress.advance(1)


def _result(future_or_list):
    """The result(s) of small tasks, with the task's error unwrapped (see `_wait`)."""
    futures = future_or_list if isinstance(future_or_list, list) else [future_or_list]
    client = futures[0].client
    _wait(client, futures)
    values = client.gather(futures)
    return values if isinstance(future_or_list, list) else values[0]


def _raise(exc: BaseException, future) -> None:
    from distributed.scheduler import KilledWorker

    if isinstance(exc, VeilError):
        raise exc.with_traceback(None) from None
    if isinstance(exc, KilledWorker):
        raise BackendError(f"a Dask worker died running {future.key} (out of memory? the "
                           "workers' memory limit or the machine's)") from None
    if isinstance(exc, FileNotFoundError):
        raise NotFound(f"{exc.filename}: not found on a Dask worker (the data folder must be "
                       "at the same path on every worker)") from None
    if isinstance(exc, MemoryError):
        raise BackendError(f"a Dask worker ran out of memory running {future.key}") from None
    raise exc.with_traceback(None) from None


def _rows_line(metas, seconds: float, workers: int, what: str = "rows") -> str:
    n = sum(m[0] for m in metas)
    skipped = sum(m[2] for m in metas)
    extra = f", skipped {skipped:,} bad lines" if skipped else ""
    return (f"Loaded {n:,} {what} in {_fmt_s(seconds)} on {workers} worker"
            f"{'s' if workers != 1 else ''}{extra}")


def _check_loaded(metas, path: Path) -> None:
    rows = sum(m[0] for m in metas)
    clicks = sum(m[1] for m in metas)
    if rows == 0:
        raise InvalidArgument(f"{path.name}: no rows to train on")
    if clicks in (0, rows):
        raise InvalidArgument(f"{path.name}: every label is {int(clicks > 0)}; a click model "
                              "needs clicks and non-clicks")


def _predict_on_workers(client, model, test_path: Path, cfg: TrainConfig, progress: Progress,
                        features: Callable | None = None, extra: Sequence = ()) -> tuple:
    """Read the test file on the workers, predict there with `model` (broadcast once); the
    labels and click probabilities come back. (labels, p_click, skipped)"""
    addrs = workers_of(client)
    parts, holders, metas = _load(client, test_path, addrs, 0, cfg,
                                  features is not None and cfg.categorical != "none",
                                  progress, test_path.name, fill=features is None)
    [shared] = client.scatter([model], broadcast=True, hash=False)
    preds = [client.submit(_predict_part, shared, p, features, *extra, workers=[a],
                           allow_other_workers=True,
                           pure=False, key=f"predict-{i}-{os.urandom(4).hex()}")
             for i, (p, a) in enumerate(zip(parts, holders, strict=True))]
    out = _result(preds)
    y = np.concatenate([o[0] for o in out])
    p = np.concatenate([o[1] for o in out])
    return y, p, sum(m[2] for m in metas)


def _predict_part(model, part: _Part, features: Callable | None, *extra) -> tuple:
    """Runs on a worker: (labels, click probabilities) of a test partition."""
    if len(part) == 0:
        return part.label, np.zeros(0)
    X = features(part, *extra) if features else part.ints
    return part.label, _p_click(model, X)


# --- dask-rf ----------------------------------------------------------------------------------

def _fit_forest(parts: list[_Part], trees: int, max_depth: int, seed: int):
    """Runs on a worker: a scikit-learn forest of `trees` trees on this worker's partitions
    (read with missing counts as 0, as the seed), with the worker's threads."""
    from sklearn.ensemble import RandomForestClassifier

    if len(parts) == 1:  # no copy
        X, y = parts[0].ints, parts[0].label
    else:
        X = np.concatenate([p.ints for p in parts])
        y = np.concatenate([p.label for p in parts])
    model = RandomForestClassifier(n_estimators=trees, max_depth=max_depth,
                                   n_jobs=_worker_threads(), random_state=seed)
    model.fit(X, y)
    model.n_jobs = 1
    return model


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        w = get_worker()
        return int(getattr(w, "nthreads", None) or w.state.nthreads)
    except (ValueError, AttributeError):
        return 1


def merge_forests(forests: Sequence):
    """ONE RandomForestClassifier holding every tree of `forests` (fitted on the same features
    and classes): it averages their trees' probabilities, as cuML's Dask forest does."""
    if not forests:
        raise InvalidArgument("no forests to merge")
    first = forests[0]
    for f in forests[1:]:
        if list(f.classes_) != list(first.classes_) or f.n_features_in_ != first.n_features_in_:
            raise InvalidArgument("forests with different classes or features cannot merge")
    merged = first
    merged.estimators_ = [tree for f in forests for tree in f.estimators_]
    merged.n_estimators = len(merged.estimators_)
    return merged


def _spread(total: int, n: int) -> list[int]:
    """`total` items over `n` takers, the remainder to the first ones."""
    return [total // n + (i < total % n) for i in range(n)]


def _dask_rf(client, cfg: TrainConfig, train_path: Path, test_path: Path, say,
             progress: Progress) -> dict:
    addrs = workers_of(client)[:cfg.trees]  # a worker with no tree would waste its rows
    _warm(client, "sklearn.ensemble")
    t0 = time.perf_counter()
    parts, holders, metas = _load(client, train_path, addrs, cfg.rows, cfg, False, progress,
                                  train_path.name, fill=True)
    load = time.perf_counter() - t0
    say(_rows_line(metas, load, len(parts)))
    _check_loaded(metas, train_path)
    for m, a in zip(metas, holders, strict=True):
        if m[0] and m[1] in (0, m[0]):
            raise InvalidArgument(f"the partition on {a} ({m[0]:,} rows) holds one class "
                                  "only: train on more rows or fewer workers")
    keep = [i for i, m in enumerate(metas) if m[0] > 0]
    shares = _spread(cfg.trees, len(keep))
    seeds = np.random.SeedSequence(cfg.seed).generate_state(len(keep))

    t0 = time.perf_counter()
    progress.start(len(keep), f"fitting {cfg.trees} trees on {len(keep)} workers")
    fits = [client.submit(_fit_forest, [parts[i]], n, cfg.max_depth, int(s),
                          workers=[holders[i]], allow_other_workers=True, pure=False,
                          key=f"fit_forest-{j}-{os.urandom(4).hex()}")
            for j, (i, n, s) in enumerate(zip(keep, shares, seeds, strict=True))]
    _wait(client, fits, progress)
    model = merge_forests(client.gather(fits))
    fit = time.perf_counter() - t0
    rows = sum(m[0] for m in metas)
    say(f"Fitted {model.n_estimators} trees ({' + '.join(map(str, shares))} on "
        f"{len(keep)} workers) on {rows:,} rows in {_fmt_s(fit)} "
        f"({rows / max(fit, 1e-9):,.0f} rows/s), merged into one forest")
    del parts, fits

    t0 = time.perf_counter()
    y, p, test_skipped = _predict_on_workers(client, model, test_path, cfg, progress)
    metrics = scores(y, p)
    predict = time.perf_counter() - t0
    say(f"Test: {len(y):,} rows, {_score_line(metrics)} in {_fmt_s(predict)} (on the workers)")
    return {"model": model, "metrics": metrics, "rows": rows, "test_rows": len(y),
            "skipped": sum(m[2] for m in metas) + test_skipped, "workers": len(keep),
            "trees": model.n_estimators,
            "seconds": {"load": load, "fit": fit, "predict": predict}}


# --- dask-lightgbm ----------------------------------------------------------------------------

def _hash_codes(cats: np.ndarray) -> np.ndarray:
    """Fibonacci hashing of the hex values into 2**HASH_BITS codes; missing -> NaN."""
    h = (cats.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - HASH_BITS)
    out = h.astype(np.float32)
    out[cats < 0] = np.nan
    return out


def _cat_stats(part: _Part) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Runs on a worker: per categorical column, (values, impressions, clicks) of its rows."""
    out = []
    for j in range(part.cats.shape[1]):
        values, inverse = np.unique(part.cats[:, j], return_inverse=True)
        out.append((values, np.bincount(inverse, minlength=len(values)).astype(np.int64),
                    np.bincount(inverse, weights=part.label,
                                minlength=len(values)).astype(np.int64)))
    return out


def _merge_stats(*stats) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Runs on a worker: the partitions' per-category counts summed (the reduce step)."""
    out = []
    for cols in zip(*stats, strict=True):
        values, inverse = np.unique(np.concatenate([c[0] for c in cols]), return_inverse=True)
        out.append((values,
                    np.bincount(inverse, np.concatenate([c[1] for c in cols]),
                                len(values)).astype(np.int64),
                    np.bincount(inverse, np.concatenate([c[2] for c in cols]),
                                len(values)).astype(np.int64)))
    return out


def _lookup(table: tuple, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, n, c = table
    idx = np.searchsorted(values, v)
    idx[idx == len(values)] = 0
    found = values[idx] == v if len(values) else np.zeros(len(v), bool)
    return np.where(found, n[idx], 0), np.where(found, c[idx], 0)


def _features(part: _Part, categorical: str, table=None, own=None) -> np.ndarray:
    """Runs on a worker: LightGBM's matrix of a partition, float32 (n, 13 or 39).

    none: the 13 counts (missing stays NaN: LightGBM routes missing values itself).
    hashed: + each categorical column's value hashed into 2**HASH_BITS codes, declared
    categorical to LightGBM (missing -> NaN).
    target: + each categorical column's smoothed click rate, (clicks + a * prior) /
    (impressions + a), from counts summed over ALL partitions (`table`); a training partition
    subtracts its own counts (`own`), so a row's encoding never saw its own label (out-of-fold
    with the partitions as folds; the test file uses the whole table. A single partition, a
    gzip day, is encoded in-sample, which flatters the training rows)."""
    if categorical == "none":
        return part.ints
    if categorical == "hashed":
        return np.hstack([part.ints, _hash_codes(part.cats)])
    total_n = int(table[0][1].sum())
    total_c = int(table[0][2].sum())
    if own is not None:
        total_n -= int(own[0][1].sum())
        total_c -= int(own[0][2].sum())
    prior = total_c / total_n if total_n else 0.0
    enc = np.empty(part.cats.shape, dtype=np.float32)
    for j in range(part.cats.shape[1]):
        v = part.cats[:, j]
        n, c = _lookup(table[j], v)
        if own is not None:
            n_own, c_own = _lookup(own[j], v)
            n, c = n - n_own, c - c_own
        enc[:, j] = (c + TARGET_SMOOTHING * prior) / (n + TARGET_SMOOTHING)
    return np.hstack([part.ints, enc])


def _labels(part: _Part) -> np.ndarray:
    return part.label


def _quiet_lightgbm() -> None:
    """LightGBM prints its network set-up and info lines on stdout: send them to a logger
    that keeps errors only (in each process that runs it)."""
    import logging

    import lightgbm
    from lightgbm.basic import _LIB

    logger = logging.getLogger("veil.ctr.lightgbm")
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    lightgbm.register_logger(logger)
    # LightGBM's native log callback is per thread: register it in the thread running this
    _LIB.LGBM_RegisterLogCallback(_LIB.callback)


@contextlib.contextmanager
def _quiet_lightgbm_here() -> Iterator[None]:
    """`_quiet_lightgbm` in this process for the while of a fit, LightGBM's logger restored
    after (the caller's other LightGBM uses keep their output)."""
    import lightgbm
    from lightgbm import basic

    old = (basic._LOGGER, basic._INFO_METHOD_NAME, basic._WARNING_METHOD_NAME)
    _quiet_lightgbm()
    try:
        yield
    finally:
        lightgbm.register_logger(*old)


def _warm(client, *modules: str) -> None:
    """Import the engine's modules in every worker before the clocks start: a running cluster
    has them loaded, and a first import (a second or two) is no part of fitting."""
    import importlib

    for name in modules:
        client.run(importlib.import_module, name, on_error="ignore")  # a dead worker: none
        importlib.import_module(name)


def _dask_lightgbm(client, cfg: TrainConfig, train_path: Path, test_path: Path, say,
                   progress: Progress) -> dict:
    import dask.array as da
    import lightgbm

    cats = cfg.categorical != "none"
    addrs = workers_of(client)
    _warm(client, "lightgbm", "dask.array")
    t0 = time.perf_counter()
    parts, holders, metas = _load(client, train_path, addrs, cfg.rows, cfg, cats, progress,
                                  train_path.name)
    load = time.perf_counter() - t0
    say(_rows_line(metas, load, len(parts)))
    _check_loaded(metas, train_path)
    keep = [i for i, m in enumerate(metas) if m[0] > 0]

    t0 = time.perf_counter()
    _wait(client, [client.submit(_quiet_lightgbm, workers=[a], pure=False) for a in addrs])
    table, stats = None, {}
    if cfg.categorical == "target":
        stats = {i: client.submit(_cat_stats, parts[i], workers=[holders[i]],
                                  allow_other_workers=True, pure=False,
                                  key=f"category_counts-{i}-{os.urandom(4).hex()}")
                 for i in keep}
        table = client.submit(_merge_stats, *stats.values(), pure=False,
                              key=f"category_counts_sum-{os.urandom(4).hex()}")
        _wait(client, [table])
    n_features = _criteo.N_INT + (_criteo.N_CAT if cats else 0)
    xs, ys = [], []
    for i in keep:
        own = stats[i] if table is not None and len(keep) > 1 else None
        x = client.submit(_features, parts[i], cfg.categorical, table, own,
                          workers=[holders[i]], allow_other_workers=True, pure=False,
                          key=f"features-{i}-{os.urandom(4).hex()}")
        y = client.submit(_labels, parts[i], workers=[holders[i]], allow_other_workers=True,
                          pure=False,
                          key=f"labels-{i}-{os.urandom(4).hex()}")
        xs.append(da.from_delayed(x, shape=(metas[i][0], n_features), dtype=np.float32))
        ys.append(da.from_delayed(y, shape=(metas[i][0],), dtype=np.int8))
    X, Y = da.concatenate(xs), da.concatenate(ys)
    params: dict[str, Any] = {
        "n_estimators": cfg.trees, "max_depth": cfg.max_depth,
        "num_leaves": min(2 ** cfg.max_depth, MAX_LEAVES), "max_bin": cfg.n_bins,
        "random_state": cfg.seed, "verbose": -1}
    fit_kw: dict[str, Any] = {}
    if cfg.categorical == "hashed":
        params["max_bin_by_feature"] = ([cfg.n_bins] * _criteo.N_INT
                                        + [max(cfg.n_bins, CAT_MAX_BIN)] * _criteo.N_CAT)
        fit_kw["categorical_feature"] = list(range(_criteo.N_INT, n_features))
    progress.start(1, f"fitting {cfg.trees} boosting rounds on {len(keep)} workers")
    try:
        # LightGBM waits on the default client
        with client.as_current(), _quiet_lightgbm_here():
            dask_model = lightgbm.DaskLGBMClassifier(client=client, **params)
            dask_model.fit(X, Y, **fit_kw)
    except VeilError as e:
        raise e.with_traceback(None) from None
    model = dask_model.to_local()
    progress.advance(1)
    fit = time.perf_counter() - t0
    rows = sum(m[0] for m in metas)
    say(f"Fitted {cfg.trees} boosting rounds (LightGBM, {len(keep)} workers, "
        f"categorical={cfg.categorical}) on {rows:,} rows in {_fmt_s(fit)} "
        f"({rows / max(fit, 1e-9):,.0f} rows/s)")
    del parts, xs, ys, X, Y

    t0 = time.perf_counter()
    y, p, test_skipped = _predict_on_workers(client, model, test_path, cfg, progress,
                                             _features, (cfg.categorical, table, None))
    metrics = scores(y, p)
    predict = time.perf_counter() - t0
    say(f"Test: {len(y):,} rows, {_score_line(metrics)} in {_fmt_s(predict)} (on the workers)")
    encoding = client.gather(table) if table is not None else None
    return {"model": model, "metrics": metrics, "rows": rows, "test_rows": len(y),
            "skipped": sum(m[2] for m in metas) + test_skipped, "workers": len(keep),
            "trees": cfg.trees, "encoding": encoding,
            "seconds": {"load": load, "fit": fit, "predict": predict}}


# --- saving -----------------------------------------------------------------------------------

def _replace(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save(cfg: TrainConfig, run: dict, say) -> TrainResult:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = run.pop("model")
    encoding = run.pop("encoding", None)
    if cfg.engine == "dask-lightgbm":
        path = out / "model.txt"
        _replace(path, lambda p: model.booster_.save_model(str(p)))
    else:
        import joblib

        path = out / "model.joblib"
        _replace(path, lambda p: joblib.dump(model, p))
    if encoding is not None:
        arrays = {f"{k}{j}": col[n] for j, col in enumerate(encoding, 1)
                  for n, k in enumerate(("C", "impressions_C", "clicks_C"))}

        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, smoothing=np.float64(TARGET_SMOOTHING), **arrays)

        _replace(out / "target_encoding.npz", write)
    result = TrainResult(
        engine=cfg.engine, metrics=run["metrics"],
        seconds={k: round(v, 4) for k, v in run["seconds"].items()},
        peak_rss_bytes=run["peak_rss_bytes"], dashboard=run["dashboard"], rows=run["rows"],
        test_rows=run["test_rows"], skipped=run["skipped"], workers=run["workers"],
        trees=run["trees"], out=str(out), model=str(path),
        config=dataclasses.asdict(cfg))
    text = json.dumps(result.as_dict(), indent=2) + "\n"
    _replace(out / "metrics.json", lambda p: p.write_text(text))
    say(f"Saved {path} and {out / 'metrics.json'}")
    return result
