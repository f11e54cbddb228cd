"""Detection scores on FDDB: VOC-style AP against ellipse rectangles, and FDDB's discrete ROC.

AP (what the seed's log prints): each annotated ellipse is replaced by its bounding rectangle.
Detections of all images, best score first, are matched greedily to the not yet matched
rectangle of the same image with the highest IoU, counted as true positives when that IoU is
>= 0.5; AP is the area under the precision-recall curve with precision made monotone (the
all-point interpolation of PASCAL VOC 2010 and later).

Discrete ROC (FDDB's official protocol): per image, detections and ellipses are matched one to
one to maximise the summed overlap, where overlap is the area of intersection over union of the
detection rectangle and the ellipse (measured on the pixel grid). A detection is a true positive
when its matched overlap is > 0.5, otherwise a false positive. Sweeping the score threshold gives
the true-positive rate (over all faces) against the number of false positives; the figure
quoted is the rate at 1,000 false positives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from veil.errors import InvalidArgument
from veil.solutions.face_privacy._fddb import Ellipse


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes a (N, 4) against b (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def average_precision(detections: Sequence[tuple[np.ndarray, np.ndarray]],
                      truths: Sequence[Sequence[Ellipse]], iou: float = 0.5) -> float:
    """AP at `iou` over a set of images. `detections[i]`: (boxes (K, 4) x1 y1 x2 y2 in pixels,
    scores (K,)); `truths[i]`: the ellipses of image i."""
    gt = [np.array([e.box() for e in t], dtype=np.float64).reshape(-1, 4) for t in truths]
    n_faces = sum(len(g) for g in gt)
    if n_faces == 0:
        raise ValueError("no annotated faces: AP is undefined")
    rows = [(float(s), i, np.asarray(b, np.float64))
            for i, (boxes, scores) in enumerate(detections)
            for b, s in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1),
                            strict=True)]
    rows.sort(key=lambda r: -r[0])
    used = [np.zeros(len(g), bool) for g in gt]
    tp = np.zeros(len(rows))
    for k, (_, i, box) in enumerate(rows):
        if len(gt[i]) == 0:
            continue
        overlaps = _iou(box[None], gt[i])[0]
        overlaps[used[i]] = -1
        j = int(overlaps.argmax())
        if overlaps[j] >= iou:
            used[i][j] = True
            tp[k] = 1
    ctp = np.cumsum(tp)
    recall = ctp / n_faces
    precision = ctp / np.arange(1, len(rows) + 1) if rows else np.zeros(0)
    r = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


MAX_CELLS = 2**28  # pixels of one ellipse-and-box grid: far beyond any photograph's faces


def ellipse_box_overlap(e: Ellipse, box: Sequence[float]) -> float:
    """Intersection over union of an ellipse and a rectangle, counted on the pixel grid (pixel
    centres) over their joint bounding box, as FDDB's evaluation does. The grid is counted a
    band of rows at a time, so memory stays small whatever the shapes' size."""
    ex1, ey1, ex2, ey2 = e.box()
    if min(ex2, box[2]) < max(ex1, box[0]) or min(ey2, box[3]) < max(ey1, box[1]):
        return 0.0  # apart: nothing in common
    x1, y1 = math.floor(min(ex1, box[0])), math.floor(min(ey1, box[1]))
    x2, y2 = math.ceil(max(ex2, box[2])), math.ceil(max(ey2, box[3]))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    if (x2 - x1) * (y2 - y1) > MAX_CELLS:
        raise InvalidArgument(f"an ellipse ({e.line().strip()}) and a detection box spanning "
                              f"{x2 - x1} x {y2 - y1} pixels: too large to score (at most "
                              f"{MAX_CELLS} pixels)")
    c, s = math.cos(e.angle), math.sin(e.angle)
    xs = np.arange(x1, x2)[None, :] + 0.5
    in_bx = (xs >= box[0]) & (xs < box[2])
    inter = union = 0
    band = max(1, (1 << 20) // (x2 - x1))
    for top in range(y1, y2, band):
        ys = np.arange(top, min(top + band, y2))[:, None] + 0.5
        u = (xs - e.cx) * c + (ys - e.cy) * s
        v = -(xs - e.cx) * s + (ys - e.cy) * c
        in_e = (u / e.major) ** 2 + (v / e.minor) ** 2 <= 1
        in_b = in_bx & (ys >= box[1]) & (ys < box[3])
        inter += int((in_e & in_b).sum())
        union += int((in_e | in_b).sum())
    return inter / union if union else 0.0


@dataclass
class Roc:
    """FDDB's discrete ROC: `false_positives[k]`, `true_positive_rate[k]` at the k-th threshold."""

    false_positives: np.ndarray
    true_positive_rate: np.ndarray
    thresholds: np.ndarray
    faces: int

    def rate_at(self, fp: int = 1000) -> float:
        """True-positive rate with at most `fp` false positives."""
        ok = self.false_positives <= fp
        return float(self.true_positive_rate[ok].max()) if ok.any() else 0.0


def discrete_roc(detections: Sequence[tuple[np.ndarray, np.ndarray]],
                 truths: Sequence[Sequence[Ellipse]], threshold: float = 0.5) -> Roc:
    from scipy.optimize import linear_sum_assignment

    scores, positive = [], []
    faces = 0
    for (boxes, sc), ellipses in zip(detections, truths, strict=True):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        sc = np.asarray(sc, np.float64).reshape(-1)
        faces += len(ellipses)
        hit = np.zeros(len(boxes), bool)
        if len(boxes) and len(ellipses):
            ov = np.array([[ellipse_box_overlap(e, b) for b in boxes] for e in ellipses])
            rows, cols = linear_sum_assignment(ov, maximize=True)
            hit[cols[ov[rows, cols] > threshold]] = True
        scores.append(sc)
        positive.append(hit)
    s = np.concatenate(scores) if scores else np.zeros(0)
    pos = np.concatenate(positive) if positive else np.zeros(0, bool)
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    # one point per distinct score, taking every detection at or above it
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)
    tp = np.cumsum(pos)[last]
    fp = np.cumsum(~pos)[last]
    return Roc(np.r_[0, fp], np.r_[0.0, tp / max(faces, 1)], np.r_[np.inf, s[last]], faces)
