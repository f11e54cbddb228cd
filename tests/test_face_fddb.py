"""FDDB layout: the reader on hand-written files in the real format, and the generator."""

from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pytest

pytest.importorskip("PIL")

from veil.errors import InvalidArgument, NotFound
from veil.solutions.face_privacy import (
    Ellipse,
    generate,
    load_image,
    read_fddb,
    render,
)
from veil.solutions.face_privacy._fddb import fold_files

# Two records as they appear in the real FDDB-fold-01-ellipseList.txt (two spaces before the 1).
REAL = """2002/08/11/big/img_591
1
123.583300 85.549500 1.265839 269.693400 161.781200  1
2002/08/26/big/img_265
3
67.363819 44.511485 -1.476417 105.249970 87.209036  1
41.936870 27.064477 1.471906 184.070915 129.345601  1
70.993052 43.355200 1.370217 340.894300 117.498951  1
"""


def write_real_layout(root, folds=(1,), text=REAL, size=(450, 350)):
    """The fold files of `text`, and a blank JPEG of `size` for each image they name."""
    from PIL import Image

    (root / "FDDB-folds").mkdir(parents=True, exist_ok=True)
    (root / "originalPics").mkdir(exist_ok=True)
    for i in folds:
        names = [line for line in text.splitlines() if "/" in line]
        lst, ell = fold_files(root, i)
        lst.write_text("\n".join(names) + "\n")
        ell.write_text(text)
        for n in names:
            pic = root / "originalPics" / f"{n}.jpg"
            if ".." not in n and not n.startswith("/") and not pic.exists():
                pic.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size).save(pic)
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("fddb") / "FDDB", seed=5, images_per_fold=3)


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------- reader
def test_reads_the_real_format(tmp_path):
    ds = read_fddb(write_real_layout(tmp_path), folds=[1])
    (fold,) = ds.folds
    assert fold.name == "FDDB-fold-1" and len(fold.images) == 2 and fold.faces == 4
    first = fold.images[0]
    assert first.name == "2002/08/11/big/img_591"
    assert first.path == tmp_path / "originalPics" / "2002/08/11/big/img_591.jpg"
    assert first.ellipses[0] == Ellipse(123.5833, 85.5495, 1.265839, 269.6934, 161.7812)


def test_ellipse_box_is_the_bounding_rectangle():
    upright = Ellipse(major=40, minor=30, angle=math.pi / 2, cx=100, cy=80)
    assert upright.box() == pytest.approx((70, 40, 130, 120))
    lying = Ellipse(major=40, minor=30, angle=0.0, cx=100, cy=80)
    assert lying.box() == pytest.approx((60, 50, 140, 110))
    # A tilted ellipse: the box must touch the densely sampled outline on all four sides.
    e = Ellipse(major=50, minor=20, angle=0.6, cx=0, cy=0)
    t = np.linspace(0, 2 * np.pi, 100_000)
    x = e.major * np.cos(t) * math.cos(e.angle) - e.minor * np.sin(t) * math.sin(e.angle)
    y = e.major * np.cos(t) * math.sin(e.angle) + e.minor * np.sin(t) * math.cos(e.angle)
    assert e.box() == pytest.approx((x.min(), y.min(), x.max(), y.max()), abs=1e-3)


def test_a_path_that_is_not_fddb_shaped(tmp_path):
    with pytest.raises(NotFound, match="no data set"):
        read_fddb(tmp_path / "missing")
    (tmp_path / "x").write_text("")
    with pytest.raises(InvalidArgument, match="not a directory"):
        read_fddb(tmp_path / "x")
    with pytest.raises(InvalidArgument, match="not an FDDB data set: no FDDB-folds or "
                                              "originalPics/"):
        read_fddb(tmp_path)


@pytest.mark.parametrize("bad, line, match", [
    ("123.5 85.5 1.26 269.6 161.7  1", None, None),  # control: well-formed
    ("123.5 85.5 1.26 269.6  1", 3, "expected 'major_radius minor_radius angle center_x "
                                    "center_y 1'"),
    ("123.5 abc 1.26 269.6 161.7  1", 3, "got '123.5 abc"),
    ("-3 85.5 1.26 269.6 161.7  1", 3, "radii must be positive"),
])
def test_malformed_ellipse_lines_name_file_and_line(tmp_path, bad, line, match):
    text = f"2002/08/11/big/img_591\n1\n{bad}\n"
    write_real_layout(tmp_path, text=text)
    if line is None:
        assert read_fddb(tmp_path, folds=[1]).folds[0].faces == 1
        return
    with pytest.raises(InvalidArgument) as e:
        read_fddb(tmp_path, folds=[1])
    assert str(e.value).startswith(f"{fold_files(tmp_path, 1)[1]}:{line}: ")
    assert match in str(e.value)


def test_count_and_list_mismatches(tmp_path):
    write_real_layout(tmp_path, text="a/img_1\n2\n10 8 1.5 20 20  1\n")
    with pytest.raises(InvalidArgument, match=r"ellipseList.txt:3: 'a/img_1' announces 2 faces"):
        read_fddb(tmp_path, folds=[1])
    write_real_layout(tmp_path, text="a/img_1\nseveral\n")
    with pytest.raises(InvalidArgument, match=r":2: expected the number of faces in 'a/img_1'"):
        read_fddb(tmp_path, folds=[1])
    write_real_layout(tmp_path, text="a/img_1\n0\n")
    fold_files(tmp_path, 1)[0].write_text("a/img_2\n")
    with pytest.raises(InvalidArgument, match="list different images"):
        read_fddb(tmp_path, folds=[1])


def test_a_broken_fold_does_not_lose_the_others(generated, tmp_path):
    import shutil

    root = tmp_path / "FDDB"
    shutil.copytree(generated, root)
    ell = fold_files(root, 4)[1]
    lines = ell.read_text().splitlines()
    lines[2] = "not an ellipse"
    ell.write_text("\n".join(lines) + "\n")
    fold_files(root, 7)[0].unlink()
    with pytest.raises(InvalidArgument, match=r"FDDB-fold-04-ellipseList\.txt:3: "):
        read_fddb(root)
    ds = read_fddb(root, strict=False)
    assert [f.index for f in ds.folds] == [1, 2, 3, 5, 6, 8, 9, 10]
    assert sorted(ds.errors) == [4, 7]
    assert "missing fold file" in ds.errors[7] and "FDDB-fold-07.txt" in ds.errors[7]
    with pytest.raises(InvalidArgument, match="numbered 1 to 10"):
        read_fddb(root, folds=[11])


def test_missing_and_unreadable_images(generated, tmp_path):
    import shutil

    root = tmp_path / "FDDB"
    shutil.copytree(generated, root)
    images = read_fddb(root).images
    images[0].path.unlink()
    with pytest.raises(InvalidArgument, match=re.escape(f"missing image {images[0].path}")):
        load_image(images[0])
    images[1].path.write_bytes(b"this is not a jpeg")
    with pytest.raises(InvalidArgument, match=re.escape(f"unreadable image {images[1].path}")):
        load_image(images[1])


# ---------------------------------------------------------------------- generator
def test_generated_data_is_fddb(generated):
    ds = read_fddb(generated)
    assert [f.name for f in ds.folds] == [f"FDDB-fold-{i}" for i in range(1, 11)]
    assert all(len(f.images) == 3 for f in ds.folds)
    meta = json.loads((generated / "dataset.json").read_text())
    assert meta["faces"] == sum(f.faces for f in ds.folds) >= 30
    for im in ds.images:
        arr = load_image(im)
        h, w, _ = arr.shape
        assert arr.dtype == np.uint8 and 240 <= h <= 360 and 300 <= w <= 450
        assert 1 <= len(im.ellipses) <= 4
        for e in im.ellipses:
            x1, y1, x2, y2 = e.box()
            assert -2 <= x1 < x2 <= w + 2 and -2 <= y1 < y2 <= h + 2
            assert e.major > e.minor and abs(e.angle - math.pi / 2) < 1.0  # upright-ish


def test_generation_is_seeded_and_atomic(generated, tmp_path):
    again = generate(tmp_path / "again", seed=5, images_per_fold=3)
    assert digest(again) == digest(generated)
    other = generate(tmp_path / "other", seed=6, images_per_fold=3)
    assert digest(other) != digest(generated)
    with pytest.raises(InvalidArgument, match="is not empty"):
        generate(again, seed=5, images_per_fold=3)
    with pytest.raises(InvalidArgument, match="at least one image"):
        generate(tmp_path / "none", images_per_fold=0)
    assert not (tmp_path / "none").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]  # no leftovers


def test_annotations_are_the_faces_as_drawn():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(10):
        arr, ellipses, masks = render(rng, masks=True)
        h, w, _ = arr.shape
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        for e, m in zip(ellipses, masks, strict=True):
            c, s = math.cos(e.angle), math.sin(e.angle)
            u = (xx - e.cx) * c + (yy - e.cy) * s
            v = -(xx - e.cx) * s + (yy - e.cy) * c
            inside = (u / e.major) ** 2 + (v / e.minor) ** 2 <= 1
            iou = (inside & m).sum() / (inside | m).sum()
            assert iou > 0.9, (e, iou)
            checked += 1
    assert checked >= 15


def test_generated_images_vary(generated):
    ds = read_fddb(generated)
    arrays = [load_image(im) for im in ds.images[:12]]
    sizes = {a.shape for a in arrays}
    assert len(sizes) > 6
    radii = [e.major for im in ds.images for e in im.ellipses]
    assert max(radii) > 2.5 * min(radii)
    means = [a.reshape(-1, 3).mean(0).mean() for a in arrays]
    assert np.std(means) > 5
