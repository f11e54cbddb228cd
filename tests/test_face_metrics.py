"""AP against ellipse rectangles and FDDB's discrete ROC, on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")

from veil.solutions.face_privacy import Ellipse
from veil.solutions.face_privacy._metrics import (
    average_precision,
    discrete_roc,
    ellipse_box_overlap,
)

A = Ellipse(40, 30, math.pi / 2, 100, 100)  # box (70, 60, 130, 140)
B = Ellipse(20, 16, math.pi / 2, 300, 200)  # box (284, 180, 316, 220)


def dets(*rows):
    boxes = np.array([r[:4] for r in rows], float).reshape(-1, 4)
    return boxes, np.array([r[4] for r in rows], float)


def test_ap_perfect_none_and_ranked():
    truths = [[A, B]]
    assert average_precision([dets((*A.box(), 0.9), (*B.box(), 0.8))], truths) == 1.0
    assert average_precision([dets()], truths) == 0.0
    # a false positive ranked first: precision 1/2 at recall 1/2, 2/3 at recall 1 -> AP 2/3
    ranked = dets((500, 500, 540, 540, 0.95), (*A.box(), 0.9), (*B.box(), 0.8))
    assert average_precision([ranked], truths) == pytest.approx(2 / 3)
    # a second box on the same face is a false positive
    dup = dets((*A.box(), 0.9), (72, 62, 130, 140, 0.85), (*B.box(), 0.8))
    assert average_precision([dup], truths) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # IoU just under 0.5 does not count
    shifted = dets((70 + 21, 60, 130 + 21, 140, 0.9))
    assert average_precision([shifted], [[A]]) == 0.0
    with pytest.raises(ValueError, match="no annotated faces"):
        average_precision([dets()], [[]])


def test_ap_pools_images_by_score():
    # image 0: a hit at 0.6; image 1: a false positive at 0.9 and a hit at 0.5
    d0 = dets((*A.box(), 0.6))
    d1 = dets((0, 0, 10, 10, 0.9), (*B.box(), 0.5))
    # order: FP(0.9), TP(0.6), TP(0.5) -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1
    assert average_precision([d0, d1], [[A], [B]]) == pytest.approx(2 / 3)


def test_ellipse_box_overlap_on_the_pixel_grid():
    big = Ellipse(200, 150, math.pi / 2, 400, 400)
    assert ellipse_box_overlap(big, big.box()) == pytest.approx(math.pi / 4, abs=0.005)
    assert ellipse_box_overlap(big, (0, 0, 10, 10)) == 0.0
    tilted = Ellipse(200, 100, math.pi / 4, 400, 400)
    assert ellipse_box_overlap(tilted, tilted.box()) < ellipse_box_overlap(big, big.box())


def test_discrete_roc_one_to_one():
    # Detection boxes that overlap the ellipses by > 0.5: the ellipse's inscribed-ish box.
    def inner(e, s):
        return (e.cx - e.minor * 0.8, e.cy - e.major * 0.8, e.cx + e.minor * 0.8,
                e.cy + e.major * 0.8, s)

    assert ellipse_box_overlap(A, inner(A, 0)[:4]) > 0.5
    d = dets(inner(A, 0.9), (500, 500, 540, 540, 0.85), inner(B, 0.8), inner(A, 0.7))
    roc = discrete_roc([d], [[A, B]])
    assert roc.faces == 2
    assert roc.false_positives.tolist() == [0, 0, 1, 1, 2]  # the second box on A is a FP
    assert roc.true_positive_rate.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert roc.rate_at(0) == 0.5 and roc.rate_at(1) == 1.0 and roc.rate_at(1000) == 1.0
    # the rectangle of the ellipse itself overlaps it by pi/4 > 0.5: a true positive
    assert discrete_roc([dets((*A.box(), 0.5))], [[A]]).rate_at(0) == 1.0


def test_discrete_roc_matching_maximises_total_overlap():
    # Two overlapping faces. The best-scored box overlaps both, e1 a little more; the second
    # box overlaps only e1. Giving each box its best face would leave e2 unmatched; the
    # one-to-one matching that maximises total overlap finds both.
    e1 = Ellipse(30, 30, math.pi / 2, 100, 100)
    e2 = Ellipse(30, 30, math.pi / 2, 112, 100)
    both = (74, 70, 134, 130, 0.9)
    left = (64, 70, 124, 130, 0.8)
    assert ellipse_box_overlap(e1, both[:4]) > ellipse_box_overlap(e2, both[:4]) > 0.5
    assert ellipse_box_overlap(e1, left[:4]) > 0.5 > ellipse_box_overlap(e2, left[:4])
    roc = discrete_roc([dets(both, left)], [[e1, e2]])
    assert roc.true_positive_rate.tolist() == [0.0, 0.5, 1.0]
    assert roc.false_positives.tolist() == [0, 0, 0]
