"""A synthetic face data set written in FDDB's exact layout and format (see _fddb).

Each image has a cluttered background, one to four drawn faces and a few non-face distractors
(skin-coloured blobs, balls, boxes). Faces vary in size, in-plane rotation (roll), turn (yaw,
features shifted to one side), skin tone, hair, lighting, occlusion (a bar over the eyes or a
block over part of the face), and the whole image in blur and sensor noise. Every face is
annotated with the ellipse it was drawn as. A given seed always writes the same files.

`render(..., attributes=True)` also labels each face (FACE_ATTRIBUTES). For identity-level
measures, `identity(i)` draws a persistent person (Identity: skin, hair, proportions, features,
a mark or two) and `render_identity(ident, scene_seed)` draws one image of that person in a
scene that depends on `scene_seed` alone: two identities in the same scene differ only inside
the face.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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
NO_HAIR = len(HAIR)  # the "hair" label of a face without hair
OCCLUSIONS = ("none", "dark glasses", "one side", "lower part")  # the "occlusion" labels
FACE_ATTRIBUTES = {"skin": len(SKIN), "hair": len(HAIR) + 1, "occlusion": len(OCCLUSIONS)}
HAIR_STYLES = ("none", "cap", "fringe", "parting")
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


@dataclass(frozen=True)
class FaceLook:
    """How one face is drawn. Lengths are fractions of the face's half-width (across) or
    half-height (down); the defaults are the fixed features every `render` face has."""

    skin: int  # index into SKIN
    skin_rgb: tuple[int, int, int]
    hair: int = NO_HAIR  # index into HAIR, NO_HAIR for none
    hair_rgb: tuple[int, int, int] = (0, 0, 0)
    hair_style: str = "none"  # one of HAIR_STYLES
    hair_top: float = -0.5  # where the hair ends on the forehead (face units, -1 is the top)
    hair_arc: tuple[float, float] = (0.0, 0.0)  # the cap's ends, in tens of degrees
    hair_side: float = 0.0  # fringe length or parting position, by style
    eye_spacing: float = 0.38
    eye_level: float = -0.12
    eye_w: float = 0.17
    eye_h: float = 0.08
    iris_rgb: tuple[int, int, int] = (30, 20, 15)
    iris_r: float = 0.07
    brow_level: float = -0.3
    brow_w: float = 0.04
    brow_tilt: float = 0.0  # how much higher the outer end is (face units)
    nose_length: float = 0.16
    nose_width: float = 0.1
    mouth_w: float = 0.28
    mouth_open: float = 1.0  # times 0.07
    mouth_rgb: tuple[int, int, int] = (150, 50, 50)
    marks: tuple[tuple, ...] = ()  # ("beard", rgb), ("moustache", rgb), ("mole", u, v, r),
    # ("freckles", ((u, v), ...)), ("glasses", rgb, width)


def _random_look(rng) -> FaceLook:
    """The look of a `render` face, drawn from `rng` in the order the data set was made with."""
    skin = int(rng.integers(len(SKIN)))
    skin_rgb = _jitter(rng, SKIN[skin])
    hair = {}
    if rng.random() < 0.85:  # hair: a cap over the top of the head
        i = int(rng.integers(len(HAIR)))
        hair = {"hair": i, "hair_rgb": _jitter(rng, HAIR[i], 10), "hair_style": "cap",
                "hair_top": rng.uniform(-0.62, -0.45)}
        hair["hair_arc"] = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    mouth_open = rng.uniform(0.6, 1.6)
    mouth = (int(150 + rng.integers(-30, 30)), 50, 50)
    return FaceLook(skin, skin_rgb, **hair, mouth_open=mouth_open, mouth_rgb=mouth)


def _marks(look: FaceLook) -> dict:
    return {m[0]: m[1:] for m in look.marks}


def _face(look: FaceLook, a: float, b: float, yaw: float, layout: float | None = None):
    """An upright face, `a` half-height and `b` half-width in pixels, as an RGBA image (drawn
    SS times larger and reduced) and its alpha mask (the face ellipse). The features spread
    over a half-width of `layout` pixels (default `b`)."""
    from PIL import Image, ImageDraw

    A, B = a * SS, b * SS
    F = B if layout is None else layout * SS  # the features' half-width
    pw, ph = int(2 * B + 4 * SS), int(2 * A + 4 * SS)
    cx, cy = pw / 2, ph / 2
    img = Image.new("RGBA", (pw, ph), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    skin = look.skin_rgb
    box = (cx - B, cy - A, cx + B, cy + A)
    d.ellipse(box, fill=(*skin, 255))
    mask = Image.new("L", (pw, ph), 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    marks = _marks(look)

    def P(u, v):  # face coordinates (u across, v down, both in [-1, 1]) to pixels
        return cx + (u + yaw * 0.35 * math.cos(v * math.pi / 2)) * F, cy + v * A

    if "beard" in marks:  # a shade over the jaw, under the hair and features
        d.chord(box, start=25, end=155, fill=(*marks["beard"][0], 255))
    if look.hair_style != "none":
        hair = (*look.hair_rgb, 255)
        top = look.hair_top
        d.chord(box, start=180 + 10 * look.hair_arc[0], end=360 + 10 * look.hair_arc[1],
                fill=hair)
        if look.hair_style == "parting":  # the top line slopes down to the parting side
            side = 1 if look.hair_side >= 0 else -1
            lo, hi = cy + (top + 0.12) * A, cy + (top - 0.05) * A
            d.polygon([(cx - B, cy - A), (cx + B, cy - A), (cx + B, hi if side < 0 else lo),
                       (cx - B, lo if side < 0 else hi)], fill=hair)
            px = cx + look.hair_side * 0.5 * B
            d.line((px, cy - A, px + side * 0.08 * B, cy + (top - 0.1) * A),
                   fill=(*skin, 255), width=max(1, int(0.025 * A)))
        else:
            d.rectangle((cx - B, cy - A, cx + B, cy + top * A), fill=hair)
        if look.hair_style == "fringe":  # a row of locks over the forehead
            n, length = 6, look.hair_side * A
            for k in range(n):
                x0 = cx - 0.8 * B + k * 1.6 * B / n
                d.polygon([(x0, cy + top * A), (x0 + 1.6 * B / n, cy + top * A),
                           (x0 + 0.8 * B / n, cy + top * A + length)], fill=hair)
    if look.hair_style != "none" or "beard" in marks:
        img.putalpha(mask)
        d = ImageDraw.Draw(img)
    dark = tuple(int(c * 0.35) for c in skin)
    for s in (-1, 1):
        ex, ey = P(s * look.eye_spacing, look.eye_level)
        rx, ry = look.eye_w * F, look.eye_h * A
        d.ellipse((ex - rx, ey - ry, ex + rx, ey + ry), fill=(245, 245, 240, 255))
        pr = look.iris_r * F
        d.ellipse((ex - pr + yaw * rx * 0.5, ey - pr, ex + pr + yaw * rx * 0.5, ey + pr),
                  fill=(*look.iris_rgb, 255))
        bx, by = P(s * look.eye_spacing, look.brow_level)
        t = s * look.brow_tilt * A
        d.line((bx - rx, by + t, bx + rx, by - t), fill=(*dark, 255),
               width=max(1, int(look.brow_w * A)))
        if "glasses" in marks:  # a frame, not dark glasses: the eyes show through
            col, width = marks["glasses"]
            gx, gy = 1.3 * rx, 2.4 * ry
            d.rounded_rectangle((ex - gx, ey - gy, ex + gx, ey + gy), radius=0.4 * gy,
                                outline=(*col, 255), width=max(1, int(width * A)))
    if "glasses" in marks:
        col, width = marks["glasses"]
        (lx, ly), (rx_, _ry) = P(-look.eye_spacing, look.eye_level), P(look.eye_spacing,
                                                                         look.eye_level)
        gx = 1.3 * look.eye_w * F
        d.line((lx + gx, ly, rx_ - gx, ly), fill=(*col, 255), width=max(1, int(width * A)))
    nx, ny = P(0.0, 0.15)
    d.polygon([(nx, ny - look.nose_length * A), (nx - look.nose_width * F, ny + 0.05 * A),
               (nx + look.nose_width * F, ny + 0.05 * A)],
              fill=(*(int(c * 0.8) for c in skin), 255))
    mx, my = P(0.0, 0.45)
    mw, mh = look.mouth_w * F, 0.07 * A * look.mouth_open
    if "moustache" in marks:
        ux, uy = P(0.0, 0.45 - 0.07 * look.mouth_open - 0.07)
        d.ellipse((ux - 1.15 * mw, uy - 0.06 * A, ux + 1.15 * mw, uy + 0.05 * A),
                  fill=(*marks["moustache"][0], 255))
    d.ellipse((mx - mw, my - mh, mx + mw, my + mh), fill=(*look.mouth_rgb, 255))
    if "mole" in marks:
        u, v, r = marks["mole"]
        x, y = P(u, v)
        d.ellipse((x - r * F, y - r * F, x + r * F, y + r * F), fill=(*dark, 255))
    if "freckles" in marks:
        spot = (*(int(c * 0.72) for c in skin), 255)
        for u, v in marks["freckles"][0]:
            x, y = P(u, v)
            d.ellipse((x - 0.025 * F, y - 0.025 * F, x + 0.025 * F, y + 0.025 * F), fill=spot)
    img = img.resize((pw // SS, ph // SS), Image.LANCZOS)
    mask = mask.resize((pw // SS, ph // SS), Image.LANCZOS)
    img.putalpha(mask)
    return img, mask


def _paste(img, face, mask, cx: float, cy: float, roll: float, light):
    """Rotate the face by `roll`, shade it with a linear light (angle in degrees, darkest
    level; None: unlit) and paste it centred at (cx, cy). The rotated mask and its corner."""
    from PIL import Image

    face = face.rotate(math.degrees(roll), resample=Image.BICUBIC, expand=True)
    mask = mask.rotate(math.degrees(roll), resample=Image.BICUBIC, expand=True)
    x0, y0 = round(cx - face.width / 2), round(cy - face.height / 2)
    if light is not None:
        angle, lo = light
        light = Image.linear_gradient("L").resize(face.size).rotate(angle)
        shade = np.asarray(light, np.float32) / 255 * (1.25 - lo) + lo
        rgb = np.asarray(face.convert("RGB"), np.float32) * shade[..., None]
        face = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert("RGBA")
        face.putalpha(mask)
    img.paste(face, (x0, y0), face)
    return mask, x0, y0


def _box_iou(p, q) -> float:
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = ix * iy
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0


def render(rng: np.random.Generator, size: tuple[int, int] | None = None,
           masks: bool = False, attributes: bool = False):
    """One image: (RGB uint8 array, [Ellipse], with `masks` each face's alpha mask pasted on an
    empty image of the same size, with `attributes` each face's labels as a dict of ints, keys
    and class counts as in FACE_ATTRIBUTES: "skin" (index into SKIN), "hair" (index into HAIR,
    NO_HAIR for none), "occlusion" (index into OCCLUSIONS)). The labels take nothing from `rng`:
    the image is the same with or without them."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size or (int(rng.integers(300, 451)), int(rng.integers(240, 361)))
    img = _background(rng, w, h)
    for _ in range(int(rng.integers(0, 4))):
        _distractor(rng, img, w, h)
    ellipses: list[Ellipse] = []
    face_masks = []
    labels = []
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
        yaw = float(rng.uniform(-0.6, 0.6))
        look = _random_look(rng)
        face, mask = _face(look, a, b, yaw)
        light = (float(rng.uniform(0, 360)), float(rng.uniform(0.45, 1.0)))
        mask, x0, y0 = _paste(img, face, mask, cx, cy, roll, light)
        occlusion = 0
        if rng.random() < 0.25:  # occlusion
            d = ImageDraw.Draw(img)
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:  # dark glasses
                occlusion = 1
                d.rectangle((cx - b * 0.95, cy - a * 0.25, cx + b * 0.95, cy + a * 0.02),
                            fill=(15, 15, 20))
            elif rng.random() < 0.5:  # something in front of one side
                occlusion = 2
                xs = sorted((cx + s * b * 0.15, cx + s * b * 1.1) for s in [rng.choice([-1, 1])])[0]
                d.rectangle((min(xs), cy - a * 1.1, max(xs), cy + a * 1.1), fill=col)
            else:  # ... or of the lower part
                occlusion = 3
                d.rectangle((cx - b * 1.1, cy + a * 0.3, cx + b * 1.1, cy + a * 1.1), fill=col)
        boxes.append(bx)
        ellipses.append(e)
        labels.append({"skin": look.skin, "hair": look.hair, "occlusion": occlusion})
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
    return (out, ellipses, *([face_masks] if masks else []), *([labels] if attributes else []))


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


# ------------------------------------------------------------------------------ identities
IRIS = ((60, 35, 20), (25, 18, 12), (70, 110, 160), (70, 120, 70), (110, 115, 120),
        (120, 90, 40))  # brown, dark, blue, green, grey, hazel
FRAMES = ((20, 20, 20), (110, 60, 25), (200, 160, 40), (170, 30, 30), (30, 60, 160),
          (180, 180, 190))
MARKS = ("beard", "moustache", "mole", "freckles", "glasses")
MIN_SIDE, MAX_SIDE = 160, 4096  # render_identity's image sides


@dataclass(frozen=True)
class Identity:
    """A person, drawn by `identity(index, seed)`: the face `render_identity` draws in every
    scene. `aspect` is the face's b/a: the features spread over a half-width of `aspect` times
    the face's half-height (the outline, the annotated ellipse, belongs to the scene)."""

    index: int
    seed: int
    aspect: float
    look: FaceLook

    @property
    def marks(self) -> tuple[str, ...]:
        """The names of its distinctive marks (see MARKS)."""
        return tuple(m[0] for m in self.look.marks)


def _whole(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidArgument(f"{what} must be a whole number >= 0, not {value!r}")
    return int(value)


def identity(index: int, seed: int = 0) -> Identity:
    """Identity number `index` of the population `seed`: the same person on every call."""
    index, seed = _whole(index, "an identity's index"), _whole(seed, "an identity's seed")
    rng = np.random.default_rng([seed, 7919, index])
    u = rng.uniform
    skin = int(rng.integers(len(SKIN)))
    skin_rgb = _jitter(rng, SKIN[skin], 12)
    hair = NO_HAIR if rng.random() < 0.15 else int(rng.integers(len(HAIR)))
    style = "none" if hair == NO_HAIR else HAIR_STYLES[1 + int(rng.integers(3))]
    hair_rgb = (0, 0, 0) if hair == NO_HAIR else _jitter(rng, HAIR[hair], 10)
    hair_top, hair_arc = u(-0.6, -0.42), (u(-1, 1), u(-1, 1))
    hair_side = u(0.08, 0.16) if style == "fringe" else u(0.3, 0.7) * rng.choice([-1, 1])
    aspect = u(0.72, 0.86)
    eye_level = u(-0.17, -0.07)
    features = {
        "eye_spacing": u(0.31, 0.45), "eye_level": eye_level, "eye_w": u(0.13, 0.2),
        "eye_h": u(0.06, 0.1), "iris_rgb": _jitter(rng, IRIS[int(rng.integers(len(IRIS)))], 12),
        "iris_r": u(0.05, 0.08), "brow_level": eye_level - u(0.14, 0.22),
        "brow_w": u(0.025, 0.08), "brow_tilt": u(-0.05, 0.07), "nose_length": u(0.1, 0.24),
        "nose_width": u(0.07, 0.15), "mouth_w": u(0.2, 0.36), "mouth_open": u(0.6, 1.6),
        "mouth_rgb": (int(rng.integers(120, 200)), int(rng.integers(35, 80)),
                      int(rng.integers(40, 85)))}
    facial = hair_rgb if hair != NO_HAIR else tuple(int(c * 0.3) for c in skin_rgb)
    marks = []
    for kind in sorted(rng.choice(len(MARKS), 1 + int(rng.random() < 0.5), replace=False)):
        name = MARKS[kind]
        if name == "beard":
            f = u(0.35, 0.7)
            marks.append((name, tuple(int(s * (1 - f) + c * f)
                                      for s, c in zip(skin_rgb, facial, strict=True))))
        elif name == "moustache":
            marks.append((name, facial))
        elif name == "mole":
            marks.append((name, u(0.3, 0.6) * rng.choice([-1, 1]), u(0.05, 0.55), u(0.03, 0.05)))
        elif name == "freckles":
            spots = tuple((u(0.15, 0.6) * s, u(0.0, 0.28)) for s in (-1, 1) for _ in range(5))
            marks.append((name, spots))
        else:
            marks.append((name, FRAMES[int(rng.integers(len(FRAMES)))], u(0.02, 0.035)))
    look = FaceLook(skin, skin_rgb, hair, hair_rgb, style, hair_top, hair_arc, float(hair_side),
                    **features, marks=tuple(marks))
    return Identity(index, seed, aspect, look)


def render_identity(ident: Identity, scene_seed: int, size: tuple[int, int] | None = None, *,
                    clean: bool = False):
    """One image of `ident` in scene `scene_seed`: (RGB uint8 array, the face's Ellipse).

    The scene, everything but the face's identity, comes from `scene_seed` alone: the image
    size (unless `size`, (width, height)), background, clutter, 0 to 3 distractors, the face's
    place, size (half-height 40 to 90 pixels), outline, roll and yaw, the light on it, blur,
    exposure and sensor noise. So two identities in one scene have the same ellipse and the
    same pixels outside it (but for a few pixels of antialiasing and blur at its edge).
    `clean` keeps the scene's background, place and size but draws the face upright, facing
    the camera and unlit, with no blur, exposure change or noise: a reference picture."""
    from PIL import ImageFilter

    if not isinstance(ident, Identity):
        raise InvalidArgument(f"render_identity needs an Identity (see identity()), "
                              f"not {type(ident).__name__}")
    scene_seed = _whole(scene_seed, "a scene seed")
    if size is not None:
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                           and MIN_SIDE <= v <= MAX_SIDE for v in size)):
            raise InvalidArgument(f"size must be (width, height), whole numbers in "
                                  f"[{MIN_SIDE}, {MAX_SIDE}], not {size!r}")
        size = (int(size[0]), int(size[1]))
    if not isinstance(clean, bool):
        raise InvalidArgument(f"clean must be True or False, not {clean!r}")
    # The whole scene is drawn before the face, which takes nothing from the scene's stream.
    rng = np.random.default_rng([scene_seed, 104729])
    w, h = size or (int(rng.integers(300, 451)), int(rng.integers(240, 361)))
    img = _background(rng, w, h)
    for _ in range(int(rng.integers(0, 4))):
        _distractor(rng, img, w, h)
    a = float(rng.uniform(40, min(90, h / 2.6)))
    b = a * float(rng.uniform(0.72, 0.86))
    cx, cy = float(rng.uniform(b, w - b)), float(rng.uniform(a, h - a))
    roll, yaw = float(rng.normal(0, 0.18)), float(rng.uniform(-0.6, 0.6))
    light = (float(rng.uniform(0, 360)), float(rng.uniform(0.45, 1.0)))
    blur = float(rng.uniform(0.5, 2.0)) if rng.random() < 0.3 else 0.0
    exposure = float(rng.uniform(0.6, 1.25))
    noise = rng.normal(0, float(rng.uniform(0, 8)), (h, w, 3))
    if clean:
        roll, yaw, light, blur, exposure, noise = 0.0, 0.0, None, 0.0, 1.0, None
    face, mask = _face(ident.look, a, b, yaw, layout=a * ident.aspect)
    _paste(img, face, mask, cx, cy, roll, light)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img.convert("RGB"), np.float32)
    arr *= exposure
    if noise is not None:
        arr += noise
    return np.clip(arr, 0, 255).astype(np.uint8), Ellipse(a, b, math.pi / 2 - roll, cx, cy)
