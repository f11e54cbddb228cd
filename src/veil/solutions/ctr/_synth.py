"""A seeded generator of Criteo-shaped click logs, for tests, demos and benchmarks without the
real (1 TB, licence-bound) data.

It writes the real layout (label, 13 integer counts, 26 hashed categories as 8 hex digits, tab
separated; see _criteo) with the real data's character: heavy-tailed counts (lognormal with
zero inflation, a few negative values in I2), per-column missing rates close to the Kaggle
sample's (I1 and I10 about half missing, I12 about three quarters), and Zipf-distributed
categories whose cardinalities range from 3 (C9) to millions (C3, C4, C12, C16, C21). Labels come
from a hidden logistic model: thresholds and interactions of the counts (what a depth-10 tree
can learn) plus effects of a few categorical columns, with the intercept solved so that the
click rate is `click_rate`. Criteo's Kaggle 7-day sample has about 25.6 % clicks (negatives
down-sampled), the raw Terabyte logs a few per cent; 0.25 is the default.

Categories are drawn independently of the counts, so the best model that sees only the counts
averages the true probability over the categorical effects; dataset.json reports both levels
("oracle" and "oracle.ints_only") on the test file: what a perfect model could reach, and what
dropping the categoricals costs.

Rows are generated and formatted in chunks (a byte matrix per chunk, padding removed in one
numpy pass), so tens of millions of rows need no more memory than one chunk; every chunk has
its own seed (seed, stream, chunk), so the same seed gives byte-identical files and the test
file is a stream independent of the training file. Files are written under a temporary name
and renamed when whole. On one core: about 400k rows/s plain (CPU time), about 190k rows/s
with gzip (zlib level 1 is the bottleneck).
"""

from __future__ import annotations

import gzip as gzip_module
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from veil.errors import InvalidArgument
from veil.progress import Progress, or_silent

CHUNK_ROWS = 131_072
DEFAULT_SIZES = {"rows": 200_000, "test_rows": 20_000}
PILOT_ROWS = 200_000  # rows drawn (not written) to solve the intercept
GZIP_LEVEL = 1  # fast; the files are for reading, not for archiving

# Per integer column: missing rate, log-median of count+1, spread, weight of the row's latent
# activity, zero inflation. Missing rates and medians follow the Kaggle sample's statistics.
_INTS = [
    # missing, mu, sigma, rho, zero
    (0.45, 0.8, 1.1, 0.6, 0.30),   # I1
    (0.00, 1.5, 1.6, 0.3, 0.05),   # I2 (has negatives)
    (0.21, 2.0, 1.2, 0.5, 0.05),   # I3
    (0.22, 1.6, 0.9, 0.5, 0.05),   # I4
    (0.03, 7.5, 1.9, 0.4, 0.02),   # I5
    (0.22, 3.3, 1.6, 0.5, 0.08),   # I6
    (0.04, 1.2, 1.3, 0.7, 0.25),   # I7
    (0.00, 2.0, 1.1, 0.3, 0.03),   # I8
    (0.04, 3.5, 1.4, 0.6, 0.05),   # I9
    (0.45, 0.4, 0.6, 0.5, 0.50),   # I10
    (0.04, 0.9, 1.0, 0.7, 0.30),   # I11
    (0.76, 0.3, 1.0, 0.5, 0.60),   # I12
    (0.22, 1.6, 1.0, 0.5, 0.05),   # I13
]
_MAX_COUNT = 99_999_999  # 8 digits: real counts stay below this (I5 peaks near 2.3e7)

# Per categorical column: cardinality, Zipf exponent, missing rate (after the Kaggle sample).
_CATS = [
    (1_460, 1.3, 0.00), (583, 1.3, 0.00), (10_000_000, 1.05, 0.03), (2_200_000, 1.05, 0.03),
    (305, 1.3, 0.00), (24, 1.2, 0.12), (12_517, 1.2, 0.00), (633, 1.3, 0.00),
    (3, 1.5, 0.00), (93_145, 1.15, 0.00), (5_683, 1.2, 0.00), (8_350_000, 1.05, 0.03),
    (3_194, 1.2, 0.00), (27, 1.2, 0.00), (14_992, 1.2, 0.00), (5_460_000, 1.05, 0.03),
    (10, 1.3, 0.00), (5_652, 1.2, 0.00), (2_173, 1.2, 0.44), (4, 1.2, 0.44),
    (7_046_000, 1.05, 0.03), (18, 1.3, 0.76), (15, 1.3, 0.00), (286_181, 1.1, 0.03),
    (105, 1.3, 0.44), (142_572, 1.1, 0.44),
]
# Categorical columns with an effect on clicks: column index, spread of the effects. Values
# beyond the first _EFFECT_TABLE ranks of a column (the long tail) have no effect.
_CAT_EFFECTS = [(5, 0.45), (8, 0.35), (13, 0.4), (16, 0.35), (19, 0.3), (22, 0.4), (2, 0.5),
                (10, 0.35)]
_EFFECT_TABLE = 4_096

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TAB, _NL, _MINUS, _ZERO = 9, 10, ord("-"), ord("0")
_INT_SLOT = 10  # tab, sign, 8 digits
_ROW_WIDTH = 1 + 13 * _INT_SLOT + 26 * (1 + 8) + 1


@dataclass
class _Model:
    """The hidden model and the categorical columns' hex scrambles, drawn from the seed."""

    intercept: float
    tables: list[np.ndarray]        # per _CAT_EFFECTS column: effects of ranks, last = missing
    mult: np.ndarray                # (26,) uint32 odd multipliers: rank -> 8-hex-digit value
    add: np.ndarray                 # (26,) uint32
    g_sample: np.ndarray            # categorical effects of pilot rows, for the ints-only oracle


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n rows of counts (int32, missing flags) and category ranks (int32, -1 = missing)."""
    f32 = np.float32
    activity = rng.standard_normal(n, dtype=f32)
    ints = np.empty((n, 13), dtype=np.int32)
    missing = np.empty((n, 13), dtype=bool)
    for j, (miss, mu, sigma, rho, zero) in enumerate(_INTS):
        eps = rng.standard_normal(n, dtype=f32)
        z = f32(mu) + f32(rho) * activity + f32(sigma * math.sqrt(1 - rho * rho / 2)) * eps
        v = np.floor(np.expm1(np.clip(z, f32(0.0), f32(18.4))))
        u = rng.random(n, dtype=f32)  # one uniform: missing below miss, then zero inflation
        missing[:, j] = u < miss
        v[u < miss + zero * (1 - miss)] = 0
        ints[:, j] = np.minimum(v, _MAX_COUNT)
    neg = rng.random(n, dtype=f32)  # I2: about 4 % -1, a few -2 and -3, as in the real logs
    i2 = ints[:, 1]
    i2[neg < 0.047] = -3
    i2[neg < 0.045] = -2
    i2[neg < 0.04] = -1
    ranks = np.empty((n, 26), dtype=np.int32)
    for j, (card, s, miss) in enumerate(_CATS):
        u = rng.random(n, dtype=f32)  # one uniform: missing below miss, then the rank
        w = np.maximum(u - f32(miss), f32(0.0)) * f32(1 / (1 - miss))
        base = f32(1) - w * f32(1 - (card + 1.0) ** (1 - s))
        x = np.exp(np.log(base) * f32(1 / (1 - s)))  # truncated Pareto: Zipf-like ranks
        r = np.minimum(x.astype(np.int32) - 1, card - 1)
        r[u < miss] = -1
        ranks[:, j] = r
    return ints, missing, ranks


def _int_effects(ints: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The counts' part of the hidden logit: thresholds, interactions, a bump, a slope."""
    x = np.log1p(np.maximum(ints, 0).astype(np.float64))
    x[missing] = -1.0
    f = 1.1 * (x[:, 0] >= 0.69)                                # I1 >= 1
    f -= 0.7 * (x[:, 4] > 9.0)                                 # I5 large
    f += 0.9 * ((x[:, 6] > 1.2) & (x[:, 10] > 0.6))            # I7 and I11 together
    f += 0.6 * ((x[:, 8] > 2.0) & (x[:, 8] < 4.0))             # I9 in a middle band
    f -= 0.3 * np.clip(x[:, 12], 0, 5)                         # I13 slope
    f += 0.5 * (ints[:, 1] < 0)                                # I2 negative
    f += 0.7 * (~missing[:, 11] & (x[:, 11] > 0))              # I12 present and positive
    f -= 0.6 * ((x[:, 5] > 4.5) & (x[:, 2] < 1.0))             # I6 high while I3 low
    f += 0.4 * np.clip(x[:, 9], 0, 3)                          # I10
    return f


def _cat_effects(ranks: np.ndarray, tables: list[np.ndarray]) -> np.ndarray:
    g = np.zeros(len(ranks))
    for (j, _sd), table in zip(_CAT_EFFECTS, tables, strict=True):
        r = ranks[:, j]
        idx = np.where(r < 0, len(table) - 1, np.minimum(r, len(table) - 1))
        eff = table[idx]
        eff[r >= len(table) - 1] = 0.0  # the long tail
        g += eff
    return g


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _ints_only(model: _Model, f: np.ndarray) -> np.ndarray:
    """The best click probability knowing only the counts: the true one averaged over the
    categorical effects (drawn independently of the counts)."""
    base = model.intercept + f
    acc = np.zeros(len(f))
    for g in model.g_sample:
        acc += _sigmoid(base + g)
    return acc / len(model.g_sample)


def _model(seed: int, click_rate: float) -> _Model:
    rng = _rng(seed, 0)
    tables = []
    for j, sd in _CAT_EFFECTS:
        size = min(_CATS[j][0], _EFFECT_TABLE)
        tables.append(np.append(rng.normal(0.0, sd, size), rng.normal(0.0, sd)))
    mult = (rng.integers(0, 1 << 31, 26, dtype=np.uint64) * 2 + 1).astype(np.uint32)
    add = rng.integers(0, 1 << 32, 26, dtype=np.uint64).astype(np.uint32)
    ints, missing, ranks = _draw(_rng(seed, 1), PILOT_ROWS)
    g = _cat_effects(ranks, tables)
    z = _int_effects(ints, missing) + g
    lo, hi = -20.0, 20.0
    for _ in range(60):  # mean click probability is increasing in the intercept
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + z).mean() < click_rate else (lo, mid)
    g_sample = g[_rng(seed, 2).choice(PILOT_ROWS, 64, replace=False)]
    return _Model((lo + hi) / 2, tables, mult, add, g_sample)


def _digit_tables() -> tuple[np.ndarray, np.ndarray]:
    """ASCII of 0..9999 in 4 bytes read as uint32 words, 0 (padding) for leading zeros: the
    high half of a count (0 -> nothing), and the low half: entries 0..9999 alone (0 -> "0"),
    10000..19999 after a non-zero high half (with its zeros)."""
    text = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint8)
    full = text.reshape(-1, 4)
    stripped = full.copy()
    for lead in range(1, 4):  # numbers below 10**(4 - lead) have `lead` leading zeros
        stripped[:10 ** (4 - lead), :lead] = 0
    high = stripped.copy()
    high[0] = 0
    low = np.concatenate([stripped, full])
    return high.view(np.uint32).ravel(), low.view(np.uint32).ravel()


def _hex_table() -> np.ndarray:
    """ASCII hex of 0..65535 in 4 bytes read as uint32 words."""
    nib = np.arange(65_536)[:, None] >> np.array([12, 8, 4, 0]) & 15
    return np.ascontiguousarray(_HEX[nib]).view(np.uint32).ravel()


_HIGH, _LOW = _digit_tables()
_HEX4 = _hex_table()
_CATS_AT = 1 + 13 * _INT_SLOT


class _Rows:
    """A reusable fixed-width byte matrix for up to `capacity` lines, 0 as padding: label,
    13 counts as [tab][sign][4 high digits][4 low digits], 26 categories as [tab][8 hex
    digits], newline. Tabs and newlines are written once; the digits go in through unaligned
    uint32 views, 4 bytes per table look-up."""

    def __init__(self, capacity: int) -> None:
        self.m = np.zeros((capacity, _ROW_WIDTH), dtype=np.uint8)
        self.m[:, 1:_CATS_AT:_INT_SLOT] = _TAB
        self.m[:, _CATS_AT:-1:9] = _TAB
        self.m[:, -1] = _NL
        self.mask = np.empty(self.m.size, dtype=bool)

    def format(self, label: np.ndarray, ints: np.ndarray, missing: np.ndarray,
               ranks: np.ndarray, model: _Model) -> np.ndarray:
        """The chunk's lines (uint8); padding (leading zeros, missing values) removed."""
        n = len(label)
        m = self.m[:n]
        m[:, 0] = _ZERO + label
        present = ~missing
        m[:, 2:_CATS_AT:_INT_SLOT] = ((ints < 0) & present).view(np.uint8) * np.uint8(_MINUS)
        a = np.abs(ints)
        hi, lo = a // 10_000, a % 10_000
        lo += (hi > 0) * np.int32(10_000)
        words = np.ndarray((n, 13, 2), np.uint32, m, 3, (_ROW_WIDTH, _INT_SLOT, 4))
        np.multiply(_HIGH[hi], present, out=words[:, :, 0])  # missing: all padding
        np.multiply(_LOW[lo], present, out=words[:, :, 1])
        value = ranks.view(np.uint32) * model.mult + model.add  # wraps modulo 2**32
        known = ranks >= 0
        hexw = np.ndarray((n, 26, 2), np.uint32, m, _CATS_AT + 1, (_ROW_WIDTH, 9, 4))
        np.multiply(_HEX4[value >> 16], known, out=hexw[:, :, 0])
        np.multiply(_HEX4[value & 0xFFFF], known, out=hexw[:, :, 1])
        flat = m.ravel()
        mask = np.not_equal(flat, 0, out=self.mask[:flat.size])
        return flat[mask]  # boolean indexing copies runs: much faster than np.compress


def _labels(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    return (rng.random(len(p)) < p).astype(np.int8)


@dataclass
class _Written:
    clicks: int
    bytes: int
    y: np.ndarray | None = None
    p: np.ndarray | None = None
    p_ints: np.ndarray | None = None


def _write(target: Path, rows: int, stream: int, seed: int, model: _Model, gz: bool,
           progress: Progress, keep: bool) -> _Written:
    """Write `rows` rows of `stream` to target (under a temporary name, renamed when whole).
    keep: also return labels and the true (and ints-only) probabilities, for the oracle."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    clicks, ys, ps, pis = 0, [], [], []
    progress.start(rows, f"Writing {target.name}")
    lines = _Rows(min(rows, CHUNK_ROWS))
    try:
        with open(tmp, "wb") as raw:
            out = (gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                        compresslevel=GZIP_LEVEL) if gz else raw)
            try:
                for chunk, first in enumerate(range(0, rows, CHUNK_ROWS)):
                    n = min(CHUNK_ROWS, rows - first)
                    rng = _rng(seed, stream, chunk)
                    ints, missing, ranks = _draw(rng, n)
                    f = _int_effects(ints, missing)
                    p = _sigmoid(model.intercept + f + _cat_effects(ranks, model.tables))
                    y = _labels(rng, p)
                    out.write(lines.format(y, ints, missing, ranks, model))
                    clicks += int(y.sum())
                    if keep:
                        ys.append(y)
                        ps.append(p)
                        pis.append(_ints_only(model, f))
                    progress.advance(n)
            finally:
                if gz:
                    out.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    written = _Written(clicks, target.stat().st_size)
    if keep:
        written.y, written.p, written.p_ints = (np.concatenate(ys), np.concatenate(ps),
                                                np.concatenate(pis))
    return written


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); nan with one class only."""
    y = np.asarray(y).astype(bool)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(np.asarray(p), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def _levels(y: np.ndarray, p: np.ndarray) -> dict:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    return {"accuracy": round(float(((p >= 0.5) == (y == 1)).mean()), 6),
            "auc": round(auc(y, p), 6),
            "logloss": round(float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean()), 6)}


def _check(sizes: dict | None, click_rate: float, day: int, seed: int) -> dict[str, int]:
    merged = dict(DEFAULT_SIZES)
    for key, value in (sizes or {}).items():
        if key not in DEFAULT_SIZES:
            raise InvalidArgument(f"unknown size {key!r}: expected rows, test_rows")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidArgument(f"{key} must be a whole number >= 1, got {value!r}")
        merged[key] = int(value)
    if isinstance(click_rate, bool) or not isinstance(click_rate, (int, float)) \
            or not 0.001 <= click_rate <= 0.999:
        raise InvalidArgument(f"click_rate must be between 0.001 and 0.999, got {click_rate!r}")
    if isinstance(day, bool) or not isinstance(day, int) or day < 0:
        raise InvalidArgument(f"day must be a whole number >= 0, got {day!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgument(f"seed must be a whole number >= 0, got {seed!r}")
    return merged


def generate(path: str | os.PathLike, *, seed: int = 0, sizes: dict | None = None,
             progress: Progress | None = None, day: int = 15, click_rate: float = 0.25,
             gzip: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Write PATH/day_DAY (sizes["rows"] lines), PATH/day_DAY_test (sizes["test_rows"] lines:
    the held-out tail) and PATH/dataset.json; with gzip, day_DAY.gz and day_DAY_test.gz
    (the reader also finds them under the plain names). Returns PATH."""
    sizes = _check(sizes, click_rate, day, seed)
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(f"{folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    progress = or_silent(progress)
    model = _model(seed, float(click_rate))
    suffix = ".gz" if gzip else ""
    train_name, test_name = f"day_{day}{suffix}", f"day_{day}_test{suffix}"
    train = _write(folder / train_name, sizes["rows"], 1_000 + 2 * day, seed, model, gzip,
                   progress, keep=False)
    test = _write(folder / test_name, sizes["test_rows"], 1_001 + 2 * day, seed, model, gzip,
                  progress, keep=True)
    assert test.y is not None and test.p is not None and test.p_ints is not None
    oracle = _levels(test.y, test.p)
    oracle["majority_accuracy"] = round(float(max(test.y.mean(), 1 - test.y.mean())), 6)
    oracle["ints_only"] = _levels(test.y, test.p_ints)
    manifest = {
        "format": "criteo",
        "generator": "veil.solutions.ctr synthetic",
        "seed": seed,
        "day": day,
        "sizes": sizes,
        "gzip": bool(gzip),
        "files": {"train": train_name, "test": test_name},
        "bytes": {"train": train.bytes, "test": test.bytes},
        "click_rate": float(click_rate),
        "realised_click_rate": {"train": round(train.clicks / sizes["rows"], 6),
                                "test": round(test.clicks / sizes["test_rows"], 6)},
        "oracle": oracle,
        "note": ("oracle: the hidden model's true click probabilities scored on the test file "
                 "(the attainable level); oracle.ints_only: the best model that sees only the "
                 "13 counts (missing kept apart from 0)"),
    }
    tmp = folder / f".dataset.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, folder / "dataset.json")
    if log is not None:
        log(f"wrote {sizes['rows']:,} + {sizes['test_rows']:,} rows to {folder} "
            f"(oracle AUC {oracle['auc']:.3f}, counts only {oracle['ints_only']['auc']:.3f})")
    return folder
