"""The shapes generator's hidden parameters: the images stay byte for byte what they were, the
attribute labels agree with the drawn pixels, and moved pairs differ only where the shape was
and went."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from veil.errors import InvalidArgument
from veil.privacy import _shapes as S
from veil.privacy._shapes import (
    ATTRIBUTES,
    CLASSES,
    SIZE,
    ShapeParams,
    attributes,
    draw,
    moved_pairs,
    probe_images,
    render,
    sample_params,
    shapes_images,
)

# sha256 of shapes_images(64, seed=5), computed before ShapeParams existed: the shipped weights
# and published figures were made from these images.
PINNED_IMAGES = "6986d506f7f663883b9c799acc6ce6f2f616a49f359b8a605e5a4e9e0e4e0972"
PINNED_LABELS = "60e40fcd0ad90f59363ade7b18aa710c2733ad6a8ea253fb79efe772ae8f34e6"

_YX = np.mgrid[0:SIZE, 0:SIZE] + 0.5  # pixel centres in image pixels


def _params(n: int, seed: int) -> list[ShapeParams]:
    rng = np.random.default_rng(seed)
    return [sample_params(i % len(CLASSES), rng) for i in range(n)]


def test_images_for_a_seed_are_unchanged():
    x, y = shapes_images(64, seed=5)
    assert x.shape == (64, SIZE, SIZE, 3) and x.dtype == np.uint8
    assert hashlib.sha256(x.tobytes()).hexdigest() == PINNED_IMAGES
    assert hashlib.sha256(y.tobytes()).hexdigest() == PINNED_LABELS


@pytest.mark.parametrize("seed", [0, 1, 7, 2024])
def test_draw_of_sampled_params_is_render(seed):
    r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
    for c in range(len(CLASSES)):
        p = sample_params(c, r1)
        assert p.cls == c and p.class_name == CLASSES[c]
        assert np.array_equal(draw(p), render(c, r2))
    assert r1.random() == r2.random()  # both took the same numbers from the generator


def test_params_are_frozen_and_centre_in_both_units():
    p = _params(8, 3)[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.cx = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        p.noise[0, 0, 0] = 1.0
    assert p.cx_ss == p.cx * 4 and p.cy_ss == p.cy * 4 and p.r_ss == p.r * 4
    assert 6 <= p.r <= 11 and p.r * 0.8 <= p.cx <= SIZE - p.r * 0.8


def test_background_and_mask_helpers_agree_with_the_params():
    rng = np.random.default_rng(9)
    bg = S._background(rng)
    mask = S._shape_mask("circle", rng)
    rng = np.random.default_rng(9)
    p = sample_params(0, rng)
    assert np.array_equal(bg, S._draw_background(p))
    assert np.array_equal(mask, S._draw_mask(p))


def test_position_matches_the_drawn_shapes_centroid():
    params = _params(480, 11)
    agree = []
    for p in params:
        m = S._draw_mask(p)
        cy, cx = (m * _YX[0]).sum() / m.sum(), (m * _YX[1]).sum() / m.sum()
        cell = min(int(cy // (SIZE / 3)), 2) * 3 + min(int(cx // (SIZE / 3)), 2)
        agree.append(cell == attributes(p)["position"])
        x, y = p.centre  # where the shape is drawn (a vertical bar lies at (cy, cx))
        if CLASSES[p.cls] != "triangle":  # symmetric shapes: the centroid is the centre
            assert abs(cx - x) < 1.5 and abs(cy - y) < 1.5, (p.class_name, cx, cy, x, y)
    assert np.mean(agree) >= 0.95


def test_colour_size_texture_labels_match_the_pixels():
    colour, texture = [], []
    for p in _params(240, 12):
        att = attributes(p)
        assert set(att) == set(ATTRIBUTES)
        assert all(0 <= att[k] < ATTRIBUTES[k] for k in ATTRIBUTES)
        img, m = draw(p).astype(np.float64) / 255, S._draw_mask(p)
        bits = (np.median(img[m == 1], axis=0) >= 0.5).astype(int)
        colour.append(int(bits @ [4, 2, 1]) == att["colour"])
        assert att["colour"] == int((p.colour >= 0.5).astype(int) @ [4, 2, 1])
        assert att["size"] == (0 if p.r < 6 + 5 / 3 else 1 if p.r < 6 + 10 / 3 else 2)
        assert att["texture"] == p.texture_kind and att["class"] == p.cls
        if p.texture_kind != 1:  # speckle varies inside 4x4 blocks, blotches barely do
            blocks = img.reshape(8, 4, 8, 4, 3).std(axis=(1, 3))
            clear = m.reshape(8, 4, 8, 4).max(axis=(1, 3)) == 0
            texture.append((blocks[clear].mean() > 0.045) == (p.texture_kind == 2))
    assert np.mean(colour) >= 0.95
    assert np.mean(texture) >= 0.95


def test_probe_images_are_the_shapes_images_with_every_label():
    x, labels = probe_images(400, 21)
    assert x.shape == (400, SIZE, SIZE, 3) and x.dtype == np.uint8
    ref, ref_labels = shapes_images(400, 21)
    assert np.array_equal(x, ref) and np.array_equal(labels["class"], ref_labels)
    assert set(labels) == set(ATTRIBUTES)
    for name, k in ATTRIBUTES.items():
        assert labels[name].dtype == np.int64 and labels[name].shape == (400,)
        assert set(labels[name].tolist()) == set(range(k)), name
    assert (np.bincount(labels["class"]) == 50).all()


def _far_from(p: ShapeParams) -> np.ndarray:
    """Pixels no part of the shape reaches (every shape lies within 1.25 r of its centre)."""
    x, y = p.centre
    return np.hypot(_YX[1] - x, _YX[0] - y) > 1.25 * p.r + 1


@pytest.mark.parametrize(("seed", "min_shift"), [(31, 8.0), (32, 0.0), (33, 14.0), (34, 20.0)])
def test_moved_pairs_differ_only_in_the_centre(seed, min_shift):
    n = 48 if min_shift == 8.0 else 16
    pairs = S._moved_param_pairs(n, seed, min_shift)
    a, b = moved_pairs(n, seed, min_shift)
    assert a.shape == b.shape == (n, SIZE, SIZE, 3) and a.dtype == b.dtype == np.uint8
    assert (np.bincount([pa.cls for pa, _ in pairs], minlength=8) == n // 8).all()
    for i, (pa, pb) in enumerate(pairs):
        assert np.array_equal(a[i], draw(pa)) and np.array_equal(b[i], draw(pb))
        for f in dataclasses.fields(ShapeParams):
            if f.name not in ("cx", "cy"):
                va, vb = getattr(pa, f.name), getattr(pb, f.name)
                assert np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb
        assert math.hypot(pb.cx - pa.cx, pb.cy - pa.cy) >= min_shift
        lo, hi = pa.r * 0.8, SIZE - pa.r * 0.8
        assert lo <= pb.cx <= hi and lo <= pb.cy <= hi
        far = _far_from(pa) & _far_from(pb)
        assert np.array_equal(a[i][far], b[i][far])
        if min_shift > 0:
            assert not np.array_equal(a[i], b[i])


BAD = [
    (probe_images, (0, 1)), (probe_images, (-3, 1)), (probe_images, (100_001, 1)),
    (probe_images, (1.5, 1)), (probe_images, (True, 1)), (probe_images, ("4", 1)),
    (probe_images, (4, -1)), (probe_images, (4, 1.0)), (probe_images, (4, None)),
    (probe_images, (4, "7")),
    (moved_pairs, (0, 1)), (moved_pairs, (4, -2)), (moved_pairs, (4, 1, float("nan"))),
    (moved_pairs, (4, 1, float("inf"))), (moved_pairs, (4, 1, -0.5)),
    (moved_pairs, (4, 1, 20.5)), (moved_pairs, (4, 1, "8")), (moved_pairs, (4, 1, None)),
    (sample_params, (8, np.random.default_rng(0))), (sample_params, (-1, np.random.default_rng(0))),
    (sample_params, (1.0, np.random.default_rng(0))),
]


@pytest.mark.parametrize(("fn", "args"), BAD,  # ids the same in every process (pytest-xdist)
                         ids=[f"{fn.__name__}{args!r}"[:40] for fn, args in BAD])
def test_bad_input_is_refused_in_one_line(fn, args):
    with pytest.raises(InvalidArgument) as e:
        fn(*args)
    msg = str(e.value)
    assert msg and "\n" not in msg


def test_numpy_integers_are_whole_numbers():
    x, labels = probe_images(np.int64(8), np.int64(2))
    assert len(x) == 8 and len(labels["class"]) == 8
