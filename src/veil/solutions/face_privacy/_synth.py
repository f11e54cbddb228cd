"""A synthetic face data set written in FDDB's exact layout and format (see _fddb).

Each image has a cluttered background, one to four drawn faces and a few non-face distractors
(skin-coloured blobs, balls, boxes). Faces vary in size, in-plane rotation (roll), turn (yaw,
features shifted to one side), skin tone, hair, lighting, occlusion (a bar over the eyes or a
block over part of the face), and the whole image in blur and sensor noise. Every face is
annotated with the ellipse it was drawn as. A given seed always writes the same files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from veil._newdir import new_directory
from veil.errors import InvalidArgument
from veil.progress import Progress, or_silent
from veil.solutions.face_privacy._fddb import FOLDS, Ellipse, FddbImage, write_fold

SKIN = ((255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
        (92, 56, 30))
HAIR = ((20, 15, 10), (60, 40, 20), (120, 80, 40), (200, 170, 110), (150, 150, 150),
        (90, 20, 10))
SS = 2  # supersampling


def _jitter(rng, colour, amount=18):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _background(rng, w: int, h: int):
    from PIL import Image, ImageDraw

    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
    grad = (c0[None] * (1 - t[:, None]) + c1[None] * t[:, None]).astype(np.uint8)
    arr = np.broadcast_to(grad[None] if len(t) == w else grad[:, None], (h, w, 3)).copy()
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 16))):  # clutter
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            d.rectangle((x0, y0, x1, y1), fill=col)
        elif kind == 1:
            d.line((x0, y0, x1, y1), fill=col, width=int(rng.integers(1, 6)))
        else:
            d.ellipse((x0, y0, x1, y1), outline=col, width=int(rng.integers(1, 4)))
    return img


def _distractor(rng, img, w: int, h: int) -> None:
    """Something face-sized that is not a face."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    r = int(rng.integers(12, max(14, min(w, h) // 5)))
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    kind = rng.integers(0, 3)
    if kind == 0:  # a featureless skin-coloured blob
        d.ellipse((cx - r * 0.8, cy - r, cx + r * 0.8, cy + r),
                  fill=_jitter(rng, SKIN[rng.integers(len(SKIN))]))
    elif kind == 1:  # a ball with a highlight
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
        d.ellipse((cx - r // 2, cy - r // 2, cx - r // 6, cy - r // 6), fill=(255, 255, 255))
    else:  # a box with two dots (a face-like pattern without a face's shape)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=col)
        for sx in (-1, 1):
            d.ellipse((cx + sx * r // 2 - 3, cy - 3, cx + sx * r // 2 + 3, cy + 3), fill=(0, 0, 0))


def _face(rng, a: float, b: float, yaw: float):
    """An upright face, `a` half-height and `b` half-width in pixels, as an RGBA image (drawn
    SS times larger and reduced) and its alpha mask (the face ellipse)."""
    from PIL import Image, ImageDraw

    A, B = a * SS, b * SS
    pw, ph = int(2 * B + 4 * SS), int(2 * A + 4 * SS)
    cx, cy = pw / 2, ph / 2
    img = Image.new("RGBA", (pw, ph), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    skin = _jitter(rng, SKIN[rng.integers(len(SKIN))])
    box = (cx - B, cy - A, cx + B, cy + A)
    d.ellipse(box, fill=(*skin, 255))
    mask = Image.new("L", (pw, ph), 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)

    def P(u, v):  # face coordinates (u across, v down, both in [-1, 1]) to pixels
        return cx + (u + yaw * 0.35 * math.cos(v * math.pi / 2)) * B, cy + v * A

    if rng.random() < 0.85:  # hair: a cap over the top of the head
        hair = (*_jitter(rng, HAIR[rng.integers(len(HAIR))], 10), 255)
        top = rng.uniform(-0.62, -0.45)
        d.chord(box, start=180 + 10 * rng.uniform(-1, 1), end=360 + 10 * rng.uniform(-1, 1),
                fill=hair)
        d.rectangle((cx - B, cy - A, cx + B, cy + top * A), fill=hair)
        img.putalpha(mask)
        d = ImageDraw.Draw(img)
    dark = tuple(int(c * 0.35) for c in skin)
    for s in (-1, 1):
        ex, ey = P(s * 0.38, -0.12)
        rx, ry = 0.17 * B, 0.08 * A
        d.ellipse((ex - rx, ey - ry, ex + rx, ey + ry), fill=(245, 245, 240, 255))
        pr = 0.07 * B
        d.ellipse((ex - pr + yaw * rx * 0.5, ey - pr, ex + pr + yaw * rx * 0.5, ey + pr),
                  fill=(30, 20, 15, 255))
        bx, by = P(s * 0.38, -0.3)
        d.line((bx - rx, by, bx + rx, by), fill=(*dark, 255),
               width=max(1, int(0.04 * A)))
    nx, ny = P(0.0, 0.15)
    d.polygon([(nx, ny - 0.16 * A), (nx - 0.1 * B, ny + 0.05 * A), (nx + 0.1 * B, ny + 0.05 * A)],
              fill=(*(int(c * 0.8) for c in skin), 255))
    mx, my = P(0.0, 0.45)
    mw, mh = 0.28 * B, 0.07 * A * rng.uniform(0.6, 1.6)
    d.ellipse((mx - mw, my - mh, mx + mw, my + mh),
              fill=(int(150 + rng.integers(-30, 30)), 50, 50, 255))
    img = img.resize((pw // SS, ph // SS), Image.LANCZOS)
    mask = mask.resize((pw // SS, ph // SS), Image.LANCZOS)
    img.putalpha(mask)
    return img, mask


def _box_iou(p, q) -> float:
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = ix * iy
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0


def render(rng: np.random.Generator, size: tuple[int, int] | None = None,
           masks: bool = False):
    """One image: (RGB uint8 array, [Ellipse], and with `masks` each face's alpha mask pasted
    on an empty image of the same size)."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size or (int(rng.integers(300, 451)), int(rng.integers(240, 361)))
    img = _background(rng, w, h)
    for _ in range(int(rng.integers(0, 4))):
        _distractor(rng, img, w, h)
    ellipses: list[Ellipse] = []
    face_masks = []
    boxes: list[tuple[float, float, float, float]] = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(20):
            a = float(rng.uniform(16, min(90, h / 2.6)))
            b = a * float(rng.uniform(0.72, 0.86))
            cx, cy = float(rng.uniform(b, w - b)), float(rng.uniform(a, h - a))
            roll = float(rng.normal(0, 0.18))
            e = Ellipse(a, b, math.pi / 2 - roll, cx, cy)
            bx = e.box()
            if all(_box_iou(bx, o) < 0.05 for o in boxes):
                break
        else:
            continue
        face, mask = _face(rng, a, b, float(rng.uniform(-0.6, 0.6)))
        face = face.rotate(math.degrees(roll), resample=Image.BICUBIC, expand=True)
        mask = mask.rotate(math.degrees(roll), resample=Image.BICUBIC, expand=True)
        x0, y0 = round(cx - face.width / 2), round(cy - face.height / 2)
        light = Image.linear_gradient("L").resize(face.size).rotate(float(rng.uniform(0, 360)))
        lo = float(rng.uniform(0.45, 1.0))
        shade = np.asarray(light, np.float32) / 255 * (1.25 - lo) + lo
        rgb = np.asarray(face.convert("RGB"), np.float32) * shade[..., None]
        face = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert("RGBA")
        face.putalpha(mask)
        img.paste(face, (x0, y0), face)
        if rng.random() < 0.25:  # occlusion
            d = ImageDraw.Draw(img)
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:  # dark glasses
                d.rectangle((cx - b * 0.95, cy - a * 0.25, cx + b * 0.95, cy + a * 0.02),
                            fill=(15, 15, 20))
            elif rng.random() < 0.5:  # something in front of one side
                xs = sorted((cx + s * b * 0.15, cx + s * b * 1.1) for s in [rng.choice([-1, 1])])[0]
                d.rectangle((min(xs), cy - a * 1.1, max(xs), cy + a * 1.1), fill=col)
            else:  # ... or of the lower part
                d.rectangle((cx - b * 1.1, cy + a * 0.3, cx + b * 1.1, cy + a * 1.1), fill=col)
        boxes.append(bx)
        ellipses.append(e)
        if masks:
            m = Image.new("L", (w, h), 0)
            m.paste(mask, (x0, y0), mask)
            face_masks.append(np.asarray(m) > 127)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    arr = np.asarray(img.convert("RGB"), np.float32)
    arr *= float(rng.uniform(0.6, 1.25))  # exposure
    arr += rng.normal(0, float(rng.uniform(0, 8)), arr.shape)  # sensor noise
    out = np.clip(arr, 0, 255).astype(np.uint8)
    return (out, ellipses, face_masks) if masks else (out, ellipses)


SUBSETS = ("fit", "attack")  # extra FDDB-layout sets under the root, for veil.privacy


def _write_folds(root: Path, seed: int, images_per_fold: int, stream: int,
                 progress: Progress) -> int:
    from PIL import Image

    faces = 0
    for fold in FOLDS:
        rng = np.random.default_rng([seed, fold] if stream == 0 else [seed, fold, stream])
        images = []
        for j in range(images_per_fold):
            arr, ellipses = render(rng)
            name = f"synth/fold-{fold:02d}/img_{j:04d}"
            target = root / "originalPics" / f"{name}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(target, quality=92)
            images.append(FddbImage(name, target, ellipses))
            faces += len(ellipses)
            progress.advance(1)
        write_fold(root, fold, images)
    return faces


def generate(path: str | Path, *, seed: int = 0, images_per_fold: int = 30,
             fit_per_fold: int = 0, attack_per_fold: int = 0,
             progress: Progress | None = None) -> Path:
    """Write a synthetic FDDB data set: 10 folds of `images_per_fold` images.

    With `fit_per_fold` / `attack_per_fold`, also write `fit/` and `attack/` under it, each an
    FDDB-layout set of 10 folds from independent random streams: the images veil.privacy fits
    the obfuscator on and trains the reconstruction attack on (never the evaluated folds).
    The files appear all at once: they are written beside `path` and renamed into place."""
    from veil.train import check_seed

    path = Path(path)
    check_seed(seed)
    if not isinstance(images_per_fold, int) or images_per_fold < 1:
        raise InvalidArgument(f"each fold needs at least one image, not {images_per_fold!r}")
    for what, n in (("fit_per_fold", fit_per_fold), ("attack_per_fold", attack_per_fold)):
        if not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"{what} must be a whole number >= 0, not {n!r}")
    progress = or_silent(progress)
    with new_directory(path) as tmp:  # checks the destination before any progress is shown
        progress.start(10 * (images_per_fold + fit_per_fold + attack_per_fold),
                       "writing images")
        faces = _write_folds(tmp, seed, images_per_fold, 0, progress)
        extra = {}
        for stream, (subset, n) in enumerate(zip(SUBSETS, (fit_per_fold, attack_per_fold),
                                                 strict=True), start=1):
            if n:
                extra[subset] = {"images_per_fold": n,
                                 "faces": _write_folds(tmp / subset, seed, n, stream, progress)}
        (tmp / "dataset.json").write_text(json.dumps(
            {"format": "fddb", "generator": "veil.solutions.face_privacy", "seed": seed,
             "images_per_fold": images_per_fold, "faces": faces, **extra}, indent=2) + "\n")
    return path
