"""Scores of a click model on held-out rows: the seed's accuracy beside the figures that make it
meaningful (AUC, log-loss, and the accuracy of always predicting the majority class, which on
click logs is already about 0.75)."""

from __future__ import annotations

import math

import numpy as np

from veil.errors import InvalidArgument

EPS = 1e-15
"""Probabilities are clipped to [EPS, 1 - EPS] for the log-loss (as scikit-learn does)."""


def scores(y_true, p_click) -> dict:
    """accuracy, auc, logloss, majority_accuracy, click_rate and rows of predicted click
    probabilities `p_click` against 0/1 labels `y_true`.

    accuracy thresholds at 0.5 the way a scikit-learn classifier's ``predict`` (the seed's) does:
    the class with the larger probability, class 0 on a tie, i.e. a click when p > 0.5. auc is
    rank based with ties averaged (None when the labels hold one class only); logloss clips
    probabilities to [1e-15, 1 - 1e-15]."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(p_click, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise InvalidArgument(f"{y.size} labels but {p.size} predicted probabilities")
    if y.size == 0:
        raise InvalidArgument("no rows to score")
    if not np.isin(y, (0, 1)).all():
        raise InvalidArgument("labels must be 0 or 1")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InvalidArgument("predicted probabilities must lie in [0, 1]")
    y = y.astype(np.int8)
    clicks = int(y.sum())
    rows = int(y.size)
    click_rate = clicks / rows
    accuracy = float(np.mean((p > 0.5) == (y == 1)))
    q = np.clip(p, EPS, 1 - EPS)
    logloss = float(-np.mean(np.where(y == 1, np.log(q), np.log1p(-q))))
    return {
        "accuracy": accuracy,
        "auc": _auc(y, p) if 0 < clicks < rows else None,
        "logloss": logloss,
        "majority_accuracy": max(click_rate, 1 - click_rate),
        "click_rate": click_rate,
        "rows": rows,
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC: the probability that a random click outranks a random non-click,
    ties counting one half (average ranks), in O(n log n) without scikit-learn."""
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    # average rank (1-based) of each run of equal probabilities
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], sorted_p.size]
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(p.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    pos = int(y.sum())
    neg = y.size - pos
    auc = (ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg)
    return float(auc) if math.isfinite(auc) else 0.5
