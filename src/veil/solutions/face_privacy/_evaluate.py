"""Scoring the detector on an FDDB-layout data set, fold by fold, as TR-4928's batch job does.

`run()` detects faces in every image of the readable folds (a fold that cannot be read is
reported and skipped, the others are still scored), then computes each fold's AP, the mean over
folds (the seed's `mAP`), FDDB's discrete ROC over all folds and its true-positive rate at 1,000
false positives. `log_lines()` renders the seed's results block; `write()` stores the log, a
JSON summary and the detections in FDDB's output format.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from veil.errors import InvalidArgument
from veil.jsonio import dumps
from veil.progress import Progress, or_silent
from veil.solutions.face_privacy import _metrics, _model
from veil.solutions.face_privacy._fddb import FddbDataset, load_image, read_fddb

Detections = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class FoldResult:
    index: int
    name: str
    images: int
    faces: int
    ap: float
    detections: Detections = field(repr=False)


@dataclass
class Evaluation:
    dataset: str
    alpha: float | None  # None: clean
    folds: list[FoldResult]
    errors: dict[int, str]  # folds left out, with the reason
    map: float
    roc_tpr_at_1000: float
    roc_faces: int
    seconds: float
    roc: _metrics.Roc | None = field(default=None, repr=False)

    @property
    def images(self) -> int:
        return sum(f.images for f in self.folds)

    @property
    def faces(self) -> int:
        return sum(f.faces for f in self.folds)

    def summary(self) -> dict:
        return {
            "dataset": self.dataset, "alpha": self.alpha, "mAP": self.map,
            "folds": {f.name: {"ap": f.ap, "images": f.images, "faces": f.faces}
                      for f in self.folds},
            "folds_left_out": {f"FDDB-fold-{i}": why for i, why in self.errors.items()},
            "roc": {"tpr_at_1000_fp": self.roc_tpr_at_1000, "faces": self.roc_faces},
            "images": self.images, "faces": self.faces, "seconds": self.seconds,
        }


def run(model, data: FddbDataset | str | Path, transform: _model.Transform | None = None, *,
        alpha: float | None = None, batch_size: int = 4, strict: bool = False,
        progress: Progress | None = None) -> Evaluation:
    """Detect and score every readable fold of `data`, showing `progress` (two phases:
    predicting, scoring)."""
    t0 = time.perf_counter()
    dataset = data if isinstance(data, FddbDataset) else read_fddb(data, strict=strict)
    if not dataset.folds:
        raise InvalidArgument(f"no fold of {dataset.root} could be read")

    bar = or_silent(progress)
    bar.start(sum(len(f.images) for f in dataset.folds), "Predicting")
    per_fold: list[Detections] = []
    for fold in dataset.folds:
        dets: Detections = []
        for chunk in _model.batched(fold.images, batch_size):
            dets += _model.detect(model, [load_image(im) for im in chunk], transform)
            bar.advance(len(chunk))
        per_fold.append(dets)
    bar.start(len(dataset.folds), "Scoring folds")
    folds = []
    for fold, dets in zip(dataset.folds, per_fold, strict=True):
        truths = [im.ellipses for im in fold.images]
        faces = sum(len(t) for t in truths)
        ap = _metrics.average_precision(dets, truths) if faces else float("nan")
        folds.append(FoldResult(fold.index, fold.name, len(fold.images), faces, ap, dets))
        bar.advance(1)
    all_dets = [d for dets in per_fold for d in dets]
    all_truths = [im.ellipses for f in dataset.folds for im in f.images]
    roc = _metrics.discrete_roc(all_dets, all_truths)
    scored = [f.ap for f in folds if f.faces]
    return Evaluation(str(dataset.root), alpha, folds, dict(dataset.errors),
                      statistics.fmean(scored) if scored else float("nan"), roc.rate_at(1000),
                      roc.faces, time.perf_counter() - t0, roc)


def log_lines(ev: Evaluation) -> list[str]:
    """The results block exactly as TR-4928's run-accuracy-measurement.py prints it."""
    lines = ["===== Results ====="]
    lines += [f"{f.name} Val AP: {f.ap}" for f in ev.folds]
    lines += [f"FDDB Dataset Average AP: {ev.map}", "=====", f"mAP: {ev.map}"]
    return lines


def extra_lines(ev: Evaluation) -> list[str]:
    """What the seed does not print: folds left out and FDDB's discrete ROC."""
    lines = [f"{f'FDDB-fold-{i}'} left out: {why}" for i, why in sorted(ev.errors.items())]
    lines.append(f"FDDB discrete ROC: true-positive rate {ev.roc_tpr_at_1000:.4f} at 1000 false "
                 f"positives ({ev.roc_faces} faces, {ev.images} images)")
    return lines


def detection_lines(image_names: list[str], dets: Detections) -> list[str]:
    """FDDB's detection output format: name, count, then `left top width height score`."""
    out = []
    for name, (boxes, scores) in zip(image_names, dets, strict=True):
        out += [name, str(len(boxes))]
        out += [f"{b[0]:.2f} {b[1]:.2f} {b[2] - b[0]:.2f} {b[3] - b[1]:.2f} {s:.6f}"
                for b, s in zip(boxes, scores, strict=True)]
    return out


def write(ev: Evaluation, dataset: FddbDataset, out: Path) -> Path:
    """Store the log block, results.json and detections/FDDB-det-fold-XX.txt under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.txt").write_text("\n".join(log_lines(ev) + extra_lines(ev)) + "\n")
    summary = ev.summary()
    if ev.roc is not None:
        keep = ev.roc.false_positives <= 2000
        summary["roc"]["curve"] = {"false_positives": ev.roc.false_positives[keep].tolist(),
                                   "true_positive_rate": ev.roc.true_positive_rate[keep].tolist()}
    (out / "results.json").write_text(dumps(summary) + "\n")
    det_dir = out / "detections"
    det_dir.mkdir(exist_ok=True)
    by_index = {f.index: f for f in dataset.folds}
    for f in ev.folds:
        names = [im.name for im in by_index[f.index].images]
        (det_dir / f"FDDB-det-fold-{f.index:02d}.txt").write_text(
            "\n".join(detection_lines(names, f.detections)) + "\n")
    return out

