"""The TuSimple lane benchmark's metric, with the official scorer's rules (its `LaneEval`):

- A ground-truth lane's threshold is 20 px / cos(angle), the angle of a least-squares line
  x = k * y + b through its points (0 with fewer than 2 points).
- A predicted lane's accuracy against a ground-truth lane is the share of h_samples where the two
  are within the threshold; a missing point (-2) on either side counts as -100, so two missing
  points agree and one missing point does not. The denominator is all of h_samples.
- Each ground-truth lane takes its best prediction. Below 0.85 it is a false negative, otherwise
  matched. FP = predictions - matched (one prediction may match several lanes, as in the
  official code).
- An image with more than 4 ground-truth lanes forgives one false negative and drops its worst
  lane from the accuracy; accuracy is divided by min(4, lanes), FN by min(4, lanes), FP by the
  number of predictions.
- An image scores accuracy 0, FP 0, FN 1 when its run_time exceeds 200 ms or it has more than
  2 predictions beyond its ground-truth lanes.
- Accuracy, FP and FN are the means over images. F1 is computed from those two rates as recent
  papers' TuSimple scorers do (e.g. CLRNet's): TP = 1 - FP, precision = TP / (TP + FP), recall
  = TP / (TP + FN). Lane-count precision and recall over the whole set are reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from veil.errors import InvalidArgument
from veil.solutions.lane_detection._tusimple import LabelError, LaneLabel, read_labels

PIXEL_THRESH = 20.0
PT_THRESH = 0.85
MAX_RUN_TIME_MS = 200.0


def lane_angle(xs: np.ndarray, ys: np.ndarray) -> float:
    keep = xs >= 0
    xs, ys = xs[keep], ys[keep]
    if len(xs) < 2:
        return 0.0
    k = np.polyfit(ys.astype(float), xs.astype(float), 1)[0]  # x = k * y + b
    return math.atan(k)


def line_accuracy(pred: np.ndarray, gt: np.ndarray, thresh: float) -> float:
    pred = np.where(pred >= 0, pred, -100.0)
    gt = np.where(gt >= 0, gt, -100.0)
    return float(np.sum(np.abs(pred - gt) < thresh)) / len(gt)


@dataclass
class ImageScore:
    accuracy: float
    fp: float
    fn: float
    matched: int
    predicted: int
    gt_lanes: int
    fp_count: int
    fn_count: int


def score_image(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]],
                h_samples: Sequence[int], run_time: float = 0.0) -> ImageScore:
    """One image, by the official rules (see the module's docstring)."""
    ys = np.asarray(h_samples, dtype=float)
    if any(len(p) != len(ys) for p in pred):
        raise LabelError("a predicted lane does not have one x per h_sample")
    n_gt, n_pred = len(gt), len(pred)
    if run_time > MAX_RUN_TIME_MS or n_gt + 2 < n_pred:
        return ImageScore(0.0, 0.0, 1.0, 0, n_pred, n_gt, n_pred, n_gt)
    preds = [np.asarray(p, dtype=float) for p in pred]
    accs, matched, fn = [], 0, 0
    for lane in gt:
        xs = np.asarray(lane, dtype=float)
        thresh = PIXEL_THRESH / math.cos(lane_angle(xs, ys))
        best = max((line_accuracy(p, xs, thresh) for p in preds), default=0.0)
        if best < PT_THRESH:
            fn += 1
        else:
            matched += 1
        accs.append(best)
    fp = n_pred - matched
    if n_gt > 4 and fn > 0:
        fn -= 1
    total = sum(accs)
    if n_gt > 4:
        total -= min(accs)
    return ImageScore(total / max(min(4.0, n_gt), 1.0), fp / n_pred if n_pred else 0.0,
                      fn / max(min(n_gt, 4.0), 1.0), matched, n_pred, n_gt, fp, fn)


@dataclass
class Result:
    accuracy: float
    fp: float
    fn: float
    f1: float
    precision: float  # from the rates, as F1
    recall: float
    lane_precision: float  # from lane counts over the set
    lane_recall: float
    images: int
    per_image: dict[str, ImageScore] = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        return {"Accuracy": self.accuracy, "FP": self.fp, "FN": self.fn, "F1": self.f1,
                "precision": self.precision, "recall": self.recall,
                "lane_precision": self.lane_precision, "lane_recall": self.lane_recall,
                "images": self.images}


def evaluate(preds: Sequence[LaneLabel], gts: Sequence[LaneLabel]) -> Result:
    """Score predictions against ground truth; as the official scorer, every ground-truth image
    needs exactly one prediction."""
    by_file = {g.raw_file: g for g in gts}
    if not by_file:
        raise InvalidArgument("the ground truth has no images")
    got = {}
    for p in preds:
        if p.raw_file not in by_file:
            raise LabelError(f"{p.source}: {p.raw_file} is not in the ground truth")
        got[p.raw_file] = p
    missing = [f for f in by_file if f not in got]
    if missing:
        raise InvalidArgument(f"no prediction for {len(missing)} of {len(by_file)} ground-truth "
                              f"images (first: {missing[0]})")
    per, acc, fp, fn = {}, 0.0, 0.0, 0.0  # sums of the per-image rates
    tp = n_pred = n_gt = 0
    for f, g in by_file.items():
        p = got[f]
        try:
            s = score_image(p.lanes, g.lanes, g.h_samples, p.run_time or 0.0)
        except LabelError as e:
            raise LabelError(f"{p.source}: {e}") from None
        per[f] = s
        acc, fp, fn = acc + s.accuracy, fp + s.fp, fn + s.fn
        tp, n_pred, n_gt = tp + s.matched, n_pred + s.matched + s.fp_count, \
            n_gt + s.matched + s.fn_count
    n = len(by_file)
    fp, fn = fp / n, fn / n
    t = 1.0 - fp
    precision = t / (t + fp) if t + fp else 0.0
    recall = t / (t + fn) if t + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Result(acc / n, fp, fn, f1, precision, recall, tp / n_pred if n_pred else 0.0,
                  tp / n_gt if n_gt else 0.0, n, per)


def evaluate_files(pred_file: str | Path, gt_file: str | Path) -> Result:
    """`veil solutions lane-detection evaluate PRED.json GT.json`."""
    gts, _ = read_labels(gt_file)
    preds, _ = read_labels(pred_file, prediction=True)
    return evaluate(preds, gts)
