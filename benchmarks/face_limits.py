"""How the shipped face detector behaves outside the generated faces it was trained on: false
positives per image where there is no face, and on the generated FDDB test folds.

    .venv/bin/python benchmarks/face_limits.py [--images-per-fold 10] [--negatives 50]

The detector (src/veil/solutions/face_privacy/weights/faceboxes.pt) was trained on generated
faces only. This runs it, at the score thresholds below (0.5 is `infer`'s default), on:
- the seed-0 generated FDDB test folds (what `veil solutions face-privacy generate FDDB`
  writes): faces found, and detections matching no face (IoU < 0.5 with every face's box);
- images with no face: the shapes task's 32 x 32 images (`veil privacy generate`), uniform
  RGB noise, and smooth textures (blurred noise, 400 x 300);
- real photographs shipped with scikit-image (no download): those without a person, where
  every detection is false, and the two with one person's face (astronaut, camera), where
  every detection but the best-overlapping one on the face is false.
Writes benchmarks/out/face_limits.json and prints the table docs/face_privacy.md quotes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from veil.jsonio import dumps
from veil.privacy import shapes_images
from veil.solutions.face_privacy import detect, generate, load_image, load_model, read_fddb

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
# scikit-image's bundled photographs (skimage/data/, in its wheel): none shows a person
NO_PERSON = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "coins.png",
             "hubble_deep_field.jpg", "retina.jpg", "brick.png", "grass.png", "gravel.png",
             "moon.png", "page.png", "text.png", "horse.png", "clock_motion.png", "ihc.png")
# ... and one person each: the face's box (x1, y1, x2, y2), drawn by hand on the photograph
ONE_FACE = {"astronaut.png": (175, 40, 275, 165), "camera.png": (170, 70, 255, 200)}


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _false(dets, faces: list, thr: float) -> tuple[int, int]:
    """(false positives, faces found) among detections scoring >= thr: each face takes the
    best-scoring detection with IoU >= 0.5 with its box, every other detection is false."""
    boxes, scores = dets
    keep = [b for b, s in zip(boxes, scores, strict=True) if s >= thr]  # best first
    used = [False] * len(faces)
    false = 0
    for b in keep:
        best = max(range(len(faces)), key=lambda j: _iou(b, faces[j]), default=None)
        if best is not None and not used[best] and _iou(b, faces[best]) >= 0.5:
            used[best] = True
        else:
            false += 1
    return false, sum(used)


def _run(model, images: list[np.ndarray], faces: list[list], batch: int) -> list:
    print(f"detecting on {len(images)} images ...", file=sys.stderr, flush=True)
    out = []
    for i in range(0, len(images), batch):
        out += detect(model, images[i:i + batch])
    return [(d, f) for d, f in zip(out, faces, strict=True)]


def _row(name: str, runs: list, note: str) -> dict:
    n_faces = sum(len(f) for _, f in runs)
    row = {"set": name, "images": len(runs), "faces": n_faces, "note": note}
    for thr in THRESHOLDS:
        fp, found = zip(*(_false(d, f, thr) for d, f in runs), strict=True)
        row[f"fp_per_image@{thr:g}"] = sum(fp) / len(runs)
        row[f"images_with_fp@{thr:g}"] = sum(1 for x in fp if x)
        if n_faces:
            row[f"faces_found@{thr:g}"] = sum(found) / n_faces
    return row


def _textures(n: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(n)]
    smooth = []
    for _ in range(n):
        small = rng.integers(0, 256, (int(rng.integers(4, 24)), int(rng.integers(4, 24)), 3),
                             dtype=np.uint8)
        im = Image.fromarray(small).resize((400, 300), Image.BICUBIC)
        smooth.append(np.asarray(im.filter(ImageFilter.GaussianBlur(float(rng.uniform(1, 6))))))
    return noise, smooth


def _photo(name: str) -> np.ndarray:
    import skimage.data

    with Image.open(Path(skimage.data.__file__).parent / name) as im:
        return np.asarray(im.convert("RGB"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images-per-fold", type=int, default=10,
                   help="Generated FDDB test images per fold (10 folds).")
    p.add_argument("--negatives", type=int, default=50,
                   help="Images per generated no-face set (shapes, noise, textures).")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/face_limits.json"))
    args = p.parse_args()

    t0 = time.monotonic()
    model = load_model("cpu")
    rows, detail = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "FDDB", seed=0, images_per_fold=args.images_per_fold,
                        fit_per_fold=0)
        ds = read_fddb(root)
        runs = _run(model, [load_image(im) for im in ds.images],
                    [[e.box() for e in im.ellipses] for im in ds.images], args.batch_size)
    rows.append(_row("generated FDDB test folds (seed 0)", runs, "1-4 faces, 0-3 distractors"))
    shapes, _ = shapes_images(args.negatives, seed=0)
    noise, smooth = _textures(args.negatives, seed=0)
    for name, images, note in (("shapes task images", list(shapes), "32 x 32, no face"),
                               ("uniform RGB noise", noise, "400 x 300, no face"),
                               ("smooth textures", smooth, "blurred noise, no face")):
        rows.append(_row(name, _run(model, images, [[]] * len(images), args.batch_size), note))
    photos = {n: _photo(n) for n in (*NO_PERSON, *ONE_FACE)}
    runs = _run(model, [photos[n] for n in NO_PERSON], [[]] * len(NO_PERSON), args.batch_size)
    rows.append(_row("real photographs without a person", runs,
                     f"{len(NO_PERSON)} of scikit-image's (a cat, coffee, a rocket, ...)"))
    detail["no_person"] = {n: [round(float(s), 3) for s in d[1] if s >= 0.5]
                           for n, (d, _) in zip(NO_PERSON, runs, strict=True)}
    runs = _run(model, [photos[n] for n in ONE_FACE], [[b] for b in ONE_FACE.values()],
                args.batch_size)
    rows.append(_row("real photographs of one person", runs, "astronaut, camera"))
    detail["one_face"] = {n: [{"box": [round(float(v)) for v in b], "score": round(float(s), 3),
                               "on_face": bool(_iou(b, ONE_FACE[n]) >= 0.5)}
                              for b, s in zip(*d, strict=True) if s >= 0.5]
                          for n, (d, _) in zip(ONE_FACE, runs, strict=True)}

    print(f"{'set':<38} {'images':>6}  " + "  ".join(f"FP/img@{t:g}" for t in THRESHOLDS)
          + "  faces found@0.5")
    for r in rows:
        found = f"{r['faces_found@0.5']:.3f}" if "faces_found@0.5" in r else "-"
        print(f"{r['set']:<38} {r['images']:>6}  "
              + "  ".join(f"{r[f'fp_per_image@{t:g}']:>10.2f}" for t in THRESHOLDS)
              + f"  {found:>15}")
    for name, dets in detail["one_face"].items():
        shown = ", ".join(f"{d['score']:.3f}{' (face)' if d['on_face'] else ''}" for d in dets)
        print(f"  {name}: scores >= 0.5: {shown or 'none'}")
    for name, scores in detail["no_person"].items():
        if scores:
            print(f"  {name}: {len(scores)} false at >= 0.5 (best {max(scores):.3f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps({"rows": rows, "detail": detail, "thresholds": THRESHOLDS,
                               "seconds": round(time.monotonic() - t0, 1)}) + "\n")
    print(f"wrote {args.out} in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
