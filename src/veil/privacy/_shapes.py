"""The test task: a small CNN that names the shape in a 32x32 image, on generated data.

Images are textured backgrounds with one shape of eight classes, written in the ImageFolder
layout (`<split>/<class>/<index>.png`; the fit split is the folder `train/`). The shipped weights
come from scripts/train_shapes.py.
"""

from __future__ import annotations

import json
import math
import operator
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from veil._newdir import new_directory
from veil.errors import InvalidArgument, NotFound
from veil.privacy._split import SplitModel, split_at
from veil.privacy._tasks import PrivacyTask, Probes, register_task
from veil.privacy._util import check_float, check_int, first_line, load_tensors
from veil.progress import Progress, or_silent

CLASSES = ("circle", "ring", "square", "frame", "triangle", "diamond", "cross", "bar")
SIZE = 32
SHAPES_SPLIT_LAYER = "relu4"
SHAPES_WEIGHTS = Path(__file__).parent / "weights" / "shapes_cnn.pt"
DEFAULT_SIZES = {"fit": 4000, "attack": 2000, "test": 1000}
MAX_IMAGES = 100_000  # per split: the loaders hold a split in memory, 12 KB an image as floats
DISK_PER_IMAGE = 4096  # bytes: a PNG of about 2.5 KB fills one file-system block
SPLITS = {"fit": "train", "attack": "attack", "test": "test"}  # role -> ImageFolder folder
_SS = 4  # supersampling for anti-aliased edges


# ---------------------------------------------------------------------- images
# An image is drawn from a ShapeParams: `sample_params` takes every random number from the
# generator in the order the drawing uses them, and `draw` turns the parameters into pixels.
# `render(c, rng)` is `draw(sample_params(c, rng))`; the images for a seed never change (the
# shipped weights and published figures depend on them: tests/test_shapes_probe.py pins a hash).

_SIZE_CUTS = (6.0 + 5.0 / 3.0, 6.0 + 10.0 / 3.0)  # radius bins: r is uniform in [6, 11]

ATTRIBUTES: dict[str, int] = {"class": len(CLASSES), "position": 9, "colour": 8, "size": 3,
                              "texture": 3}
"""Each attribute `attributes` names, with its number of classes."""


def _frozen(a, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.array(a, dtype=np.float32)  # a copy: the parameters do not share memory
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, not {arr.shape}")
    arr.setflags(write=False)
    return arr


_TEXTURE_SHAPES = {0: (SIZE // 4, SIZE // 4, 3), 1: (3,), 2: (SIZE, SIZE, 3)}


@dataclass(frozen=True, eq=False)
class ShapeParams:
    """Everything one shapes image is drawn from (its arrays are read-only copies).

    Positions are in pixels of the 32x32 image, pixel i spanning [i, i + 1); the mask is
    computed at `_SS` times that resolution from `cx_ss`, `cy_ss`, `r_ss` (exact multiples).
    """

    cls: int  #: index into CLASSES
    cx: float  #: shape centre, image pixels
    cy: float
    r: float  #: radius, image pixels, in [6, 11]
    inner: float | None  #: ring, frame: inner edge as a fraction of the outer one
    width: float | None  #: cross, bar: half-width of an arm as a fraction of r
    up: bool | None  #: triangle: pointing up
    transposed: bool | None  #: bar: vertical
    c0: np.ndarray  #: background gradient's two colours, float32 (3,)
    c1: np.ndarray
    theta: float  #: gradient direction, radians
    texture_kind: int  #: 0 blotch, 1 stripe, 2 speckle
    texture: np.ndarray  #: float32: blotch (8, 8, 3), stripe colour (3,), speckle (32, 32, 3)
    stripe: tuple[float, float, float] | None  #: stripes: frequency, phase, angle
    noise: np.ndarray  #: final background noise, float32 (32, 32, 3)
    colour: np.ndarray  #: shape colour in [0, 1], float32 (3,)
    shade: np.ndarray  #: the shape colour's per-pixel noise, float32 (32, 32, 3)

    def __post_init__(self):
        put = object.__setattr__
        put(self, "c0", _frozen(self.c0, (3,), "c0"))
        put(self, "c1", _frozen(self.c1, (3,), "c1"))
        if self.texture_kind not in _TEXTURE_SHAPES:
            raise ValueError(f"texture_kind must be 0, 1 or 2, not {self.texture_kind!r}")
        put(self, "texture", _frozen(self.texture, _TEXTURE_SHAPES[self.texture_kind],
                                     "texture"))
        put(self, "noise", _frozen(self.noise, (SIZE, SIZE, 3), "noise"))
        put(self, "colour", _frozen(self.colour, (3,), "colour"))
        put(self, "shade", _frozen(self.shade, (SIZE, SIZE, 3), "shade"))

    @property
    def cx_ss(self) -> float:
        return self.cx * _SS  # exact: _SS is a power of two

    @property
    def cy_ss(self) -> float:
        return self.cy * _SS

    @property
    def r_ss(self) -> float:
        return self.r * _SS

    @property
    def class_name(self) -> str:
        return CLASSES[self.cls]

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the drawn shape's centre, image pixels. That is (cx, cy) except for a
        vertical bar: the mask is transposed, which mirrors it across the diagonal, so the bar
        lies at (cy, cx) (the drawing has always done so)."""
        return (self.cy, self.cx) if self.transposed else (self.cx, self.cy)


def _sample_background(rng: np.random.Generator) -> dict:
    c0, c1 = rng.uniform(0.0, 1.0, size=(2, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    kind = int(rng.integers(3))
    stripe = None
    if kind == 0:
        texture = rng.normal(0, 0.12, size=(SIZE // 4, SIZE // 4, 3)).astype(np.float32)
    elif kind == 1:
        f, phi = rng.uniform(0.3, 1.2), rng.uniform(0, 2 * math.pi)
        a = rng.uniform(0, math.pi)
        stripe = (float(f), float(phi), float(a))
        texture = rng.uniform(-1, 1, size=3).astype(np.float32)
    else:
        texture = rng.normal(0, 0.08, size=(SIZE, SIZE, 3)).astype(np.float32)
    noise = rng.normal(0, 0.02, size=(SIZE, SIZE, 3)).astype(np.float32)
    return {"c0": c0, "c1": c1, "theta": float(theta), "texture_kind": kind, "texture": texture,
            "stripe": stripe, "noise": noise}


def _draw_background(p) -> np.ndarray:
    """A gradient between two colours with one of three textures, SIZE x SIZE x 3 in [0, 1]."""
    c0, c1 = p.c0, p.c1
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    t = (np.cos(p.theta) * (x - 0.5) + np.sin(p.theta) * (y - 0.5)) + 0.5
    img = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
    if p.texture_kind == 0:  # blotches: upsampled coarse noise
        img = img + np.kron(p.texture, np.ones((4, 4, 1), np.float32))
    elif p.texture_kind == 1:  # stripes
        f, phi, a = p.stripe
        s = np.sin(f * (np.cos(a) * x + np.sin(a) * y) * SIZE + phi)
        img = img + (0.12 * s)[..., None] * p.texture
    else:  # speckle
        img = img + p.texture
    return img + p.noise


def _sample_shape(cls_index: int, rng: np.random.Generator) -> dict:
    n = SIZE * _SS
    r = rng.uniform(6.0, 11.0) * _SS
    cx, cy = rng.uniform(r * 0.8, n - r * 0.8, size=2)
    inner = width = up = transposed = None
    cls = CLASSES[cls_index]
    if cls in ("ring", "frame"):
        inner = rng.uniform(0.45, 0.65)
    elif cls == "triangle":
        up = bool(rng.random() < 0.5)
    elif cls == "cross":
        width = rng.uniform(0.28, 0.4)
    elif cls == "bar":
        width = rng.uniform(0.25, 0.4)
        transposed = bool(rng.random() < 0.5)
    return {"cls": cls_index, "cx": float(cx) / _SS, "cy": float(cy) / _SS, "r": r / _SS,
            "inner": None if inner is None else float(inner),
            "width": None if width is None else float(width), "up": up,
            "transposed": transposed}


def _draw_mask(p) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the shape, SIZE x SIZE."""
    n = SIZE * _SS
    # the centre as numpy float64 and the radius as a Python float, as they were drawn
    r, cx, cy = float(p.r * _SS), np.float64(p.cx * _SS), np.float64(p.cy * _SS)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    dx, dy = x - cx, y - cy
    cls = CLASSES[p.cls]
    if cls == "circle":
        m = dx * dx + dy * dy <= r * r
    elif cls == "ring":
        d = np.sqrt(dx * dx + dy * dy)
        m = (d <= r) & (d >= r * p.inner)
    elif cls == "square":
        m = (np.abs(dx) <= r * 0.8) & (np.abs(dy) <= r * 0.8)
    elif cls == "frame":
        inner = r * 0.8 * p.inner
        m = (np.maximum(np.abs(dx), np.abs(dy)) <= r * 0.8) & \
            (np.maximum(np.abs(dx), np.abs(dy)) >= inner)
    elif cls == "triangle":
        t = dy if p.up else -dy
        m = (t <= r * 0.7) & (np.abs(dx) <= (t + r) * 0.6)
    elif cls == "diamond":
        m = np.abs(dx) + np.abs(dy) <= r
    elif cls == "cross":
        w = r * p.width
        m = ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    elif cls == "bar":
        w = r * p.width
        m = (np.abs(dx) <= r) & (np.abs(dy) <= w)
        if p.transposed:
            m = m.T
    else:  # pragma: no cover - CLASSES is closed
        raise ValueError(cls)
    return m.reshape(SIZE, _SS, SIZE, _SS).mean(axis=(1, 3)).astype(np.float32)


def _shape_mask(cls: str, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape, SIZE x SIZE."""
    return _draw_mask(SimpleNamespace(**_sample_shape(CLASSES.index(cls), rng)))


def _background(rng: np.random.Generator) -> np.ndarray:
    """A gradient between two colours with one of three textures, SIZE x SIZE x 3 in [0, 1]."""
    return _draw_background(SimpleNamespace(**_sample_background(rng)))


def _class_index(cls_index) -> int:
    try:
        c = operator.index(cls_index)
    except TypeError:
        c = None
    if c is None or isinstance(cls_index, bool) or not 0 <= c < len(CLASSES):
        raise InvalidArgument(f"the class index must be a whole number in [0, "
                              f"{len(CLASSES) - 1}], not {cls_index!r}")
    return c


def sample_params(cls_index: int, rng: np.random.Generator) -> ShapeParams:
    """The parameters of one image of class CLASSES[cls_index], taken from `rng` in the order
    `render` always took them (background, shape, colour, shade)."""
    cls_index = _class_index(cls_index)
    bg = _sample_background(rng)
    shape = _sample_shape(cls_index, rng)
    lum = float(_draw_background(SimpleNamespace(**bg)).mean())
    while True:  # a colour that stands out from the background's mean brightness
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        if abs(float(colour.mean()) - lum) >= 0.25:
            break
    shade = rng.normal(0, 0.03, size=(SIZE, SIZE, 3)).astype(np.float32)
    return ShapeParams(**shape, **bg, colour=colour, shade=shade)


def draw(params: ShapeParams) -> np.ndarray:
    """The image `params` describe, uint8 HxWx3."""
    bg = _draw_background(params)
    mask = _draw_mask(params)[..., None]
    shade = params.colour + params.shade
    img = bg * (1 - mask) + shade * mask
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render(cls_index: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class CLASSES[cls_index], uint8 HxWx3."""
    return draw(sample_params(cls_index, rng))


def attributes(params: ShapeParams) -> dict[str, int]:
    """The image's attribute labels (see ATTRIBUTES): "class"; "position", the 3x3 grid cell
    row * 3 + col of the drawn shape's centre (`ShapeParams.centre`); "colour", bits R G B
    (4, 2, 1) set where the shape's colour is >= 0.5; "size", the radius in thirds of [6, 11]
    pixels; "texture", the background's texture (0 blotch, 1 stripe, 2 speckle)."""
    cell, (x, y) = SIZE / 3, params.centre
    col, row = min(max(int(x // cell), 0), 2), min(max(int(y // cell), 0), 2)
    bits = [int(v >= 0.5) for v in params.colour]
    return {"class": params.cls, "position": row * 3 + col,
            "colour": bits[0] * 4 + bits[1] * 2 + bits[2],
            "size": int(np.searchsorted(_SIZE_CUTS, params.r, side="right")),
            "texture": params.texture_kind}


def _check_count_seed(n, seed) -> tuple[int, int]:
    if isinstance(seed, np.integer):
        seed = int(seed)
    if isinstance(n, np.integer):
        n = int(n)
    return (check_int("the image count", n, 1, MAX_IMAGES), check_int("the seed", seed, 0))


def _balanced_classes(n: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    return labels


def probe_images(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`n` shapes images (N, 32, 32, 3) uint8, classes balanced and shuffled, and every
    attribute of ATTRIBUTES as labels (name -> int64 (N,)). The images are those of
    `shapes_images(n, seed)`."""
    n, seed = _check_count_seed(n, seed)
    rng = np.random.default_rng(seed)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels = {name: np.empty(n, np.int64) for name in ATTRIBUTES}
    for i, c in enumerate(_balanced_classes(n, rng)):
        p = sample_params(int(c), rng)
        out[i] = draw(p)
        for name, v in attributes(p).items():
            labels[name][i] = v
    return out, labels


_MOVE_TRIES = 64  # directions tried from one centre before the centre is drawn again


def _moved(p: ShapeParams, min_shift: float, rng: np.random.Generator
           ) -> tuple[ShapeParams, ShapeParams]:
    """`p` (its centre drawn again where no move of `min_shift` fits) and a copy with the
    centre moved at least `min_shift` pixels in a random direction, inside the bounds the
    centre is drawn in."""
    lo, hi = p.r * 0.8, SIZE - p.r * 0.8  # the bounds of _sample_shape, in image pixels
    while True:
        far = math.hypot(max(p.cx - lo, hi - p.cx), max(p.cy - lo, hi - p.cy))
        if far >= min_shift:
            for _ in range(_MOVE_TRIES):
                a = rng.uniform(0, 2 * math.pi)
                u, v = math.cos(a), math.sin(a)
                # how far the ray from the centre in direction (u, v) stays inside the bounds
                reach = min((hi - p.cx) / u if u > 0 else (lo - p.cx) / u if u < 0 else math.inf,
                            (hi - p.cy) / v if v > 0 else (lo - p.cy) / v if v < 0 else math.inf)
                if reach < min_shift:
                    continue
                d = rng.uniform(min_shift, reach)
                x, y = p.cx + d * u, p.cy + d * v
                if lo <= x <= hi and lo <= y <= hi and math.hypot(x - p.cx, y - p.cy) >= min_shift:
                    return p, replace(p, cx=x, cy=y)
        cx, cy = rng.uniform(lo * _SS, hi * _SS, size=2)  # a new start, drawn like the first
        p = replace(p, cx=float(cx) / _SS, cy=float(cy) / _SS)


def _moved_param_pairs(n: int, seed: int, min_shift: float
                       ) -> list[tuple[ShapeParams, ShapeParams]]:
    n, seed = _check_count_seed(n, seed)
    min_shift = check_float("min_shift", min_shift, 0.0, 20.0)
    rng = np.random.default_rng(seed)
    return [_moved(sample_params(int(c), rng), min_shift, rng)
            for c in _balanced_classes(n, rng)]


def moved_pairs(n: int, seed: int, min_shift: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """`n` pairs of shapes images (A, B), each (N, 32, 32, 3) uint8, classes balanced and
    shuffled: B is A with the shape's centre moved at least `min_shift` image pixels (at most
    20) in a random direction, inside the bounds the centre is drawn in; background, noise,
    colour, size and everything else are the same."""
    pairs = _moved_param_pairs(n, seed, min_shift)
    a = np.stack([draw(pa) for pa, _ in pairs])
    b = np.stack([draw(pb) for _, pb in pairs])
    return a, b


def _shapes_stream(n: int, seed: int) -> Iterator[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    for c in _balanced_classes(n, rng):
        yield render(int(c), rng), int(c)


def shapes_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` shapes images (N, 32, 32, 3) uint8 and their labels (indices into the eight
    classes), classes balanced and shuffled; the same seed gives the same images."""
    pairs = list(_shapes_stream(n, seed))
    return (np.stack([img for img, _ in pairs]),
            np.array([c for _, c in pairs], dtype=np.int64))


def _check_disk(path: Path, images: int) -> None:
    """Refuse a data set the file system under `path` has no room for, before writing it."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    need, free = images * DISK_PER_IMAGE + (1 << 20), shutil.disk_usage(where).free
    if need > free:
        raise InvalidArgument(f"{images} images need about {need / 2**20:.0f} MiB, and "
                              f"{where} has {free / 2**20:.0f} MiB free")


def generate(path: str | Path, *, seed: int = 0, sizes: dict[str, int] | None = None,
             progress: Progress | None = None) -> Path:
    """Write the fit (folder `train/`), attack and test splits as PNG files in the ImageFolder
    layout; `sizes` maps "fit", "attack" and "test" to image counts.

    The files appear all at once: they are written beside `path` and renamed into place."""
    from PIL import Image

    path = Path(path)
    unknown = set(sizes or {}) - set(SPLITS)
    if unknown:
        raise InvalidArgument(f"unknown split(s) {', '.join(sorted(unknown))} for shapes "
                              f"(fit, attack, test)")
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    check_int("the seed", seed, 0)
    for split, n in sizes.items():
        if isinstance(n, int) and not isinstance(n, bool) and n <= 0:
            raise InvalidArgument(f"split {split} needs at least one image, not {n}")
        check_int(f"the {split} split's image count", n, 1, MAX_IMAGES)
    _check_disk(path, sum(sizes.values()))
    progress = or_silent(progress)
    folders = {SPLITS[role]: n for role, n in sizes.items()}
    with new_directory(path) as tmp:  # checks the destination before any progress is shown
        progress.start(sum(sizes.values()), "writing shapes images")
        for i, (folder, n) in enumerate(folders.items()):
            for c in CLASSES:
                (tmp / folder / c).mkdir(parents=True, exist_ok=True)
            for j, (img, lab) in enumerate(_shapes_stream(n, seed * 1000 + 17 * (i + 1))):
                Image.fromarray(img).save(tmp / folder / CLASSES[lab] / f"{j:06d}.png")
                progress.advance(1)
        (tmp / "dataset.json").write_text(json.dumps(
            {"task": "shapes", "format": "imagefolder", "classes": list(CLASSES), "seed": seed,
             "sizes": folders, "image_size": [SIZE, SIZE]}, indent=2) + "\n")
    return path


def read_split(data: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of one split as (N, 3, H, W) float in [0, 1] and their labels."""
    from PIL import Image, UnidentifiedImageError

    root = Path(data) / split
    if not root.is_dir():
        raise NotFound(f"no split {split!r} in {data} (expected {root}/<class>/*.png)")
    images, labels = [], []
    for k, cls in enumerate(CLASSES):
        folder = root / cls
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            try:
                with Image.open(f) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (OSError, UnidentifiedImageError):
                raise InvalidArgument(f"{f}: not a readable image") from None
            if arr.shape[:2] != (SIZE, SIZE):
                raise InvalidArgument(f"{f}: {arr.shape[1]}x{arr.shape[0]} pixels, the shapes "
                                      f"task reads {SIZE}x{SIZE}")
            images.append(arr)
            labels.append(k)
    extra = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in CLASSES)
    if extra:
        raise InvalidArgument(f"{root}: unknown class folders {', '.join(extra)}")
    if not images:
        raise InvalidArgument(f"{root} holds no images")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    return x, torch.tensor(labels)


_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _split_tensors(data, split):
    key = (str(Path(data).resolve()), split)
    if key not in _CACHE:
        _CACHE[key] = read_split(data, split)
    return _CACHE[key]


class _Batches:
    """Re-iterable (images, labels) batches; reshuffled on every pass when asked."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self._gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = (torch.randperm(len(self.x), generator=self._gen) if self.shuffle
                 else torch.arange(len(self.x)))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def loader(data, split: str, batch_size: int = 128, shuffle: bool = False) -> Iterable:
    x, y = _split_tensors(data, split)
    return _Batches(x, y, batch_size, shuffle)


def images(data, split: str, batch_size: int = 256) -> Iterable:
    x, _ = _split_tensors(data, split)
    return _Batches(x, x, batch_size, False)


# ---------------------------------------------------------------------- model
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class Normalize(nn.Module):
    """Images in [0, 1] to roughly zero mean, unit variance (part of the head)."""

    def forward(self, x):
        return (x - 0.5) * 4.0


def _block(i: int, cin: int, cout: int, stride: int) -> list[tuple[str, nn.Module]]:
    return [(f"conv{i}", _conv(cin, cout, stride)), (f"bn{i}", nn.BatchNorm2d(cout)),
            (f"relu{i}", nn.ReLU(inplace=False))]


TAIL_WIDTH = 192


def shapes_cnn(tail: str = "wide") -> nn.Sequential:
    """The architecture: four conv layers in the head (stride 4, 64 channels out), then a tail.

    `tail="wide"` (shipped): three conv layers of 192 channels, the middle one of stride 2, global
    average pooling and a linear classifier. `tail="light"`: one conv layer of 128 channels
    (stride 2), pooling and the classifier; scripts/train_shapes.py trains the head with it
    before training the wide tail on the frozen head.
    """
    layers: list[tuple[str, nn.Module]] = [("norm", Normalize())]
    for i, (cin, cout, stride) in enumerate([(3, 32, 1), (32, 32, 2), (32, 64, 2), (64, 64, 1)], 1):
        layers += _block(i, cin, cout, stride)
    if tail == "wide":
        w = TAIL_WIDTH
        layers += _block(5, 64, w, 1) + _block(6, w, w, 2) + _block(7, w, w, 1)
    elif tail == "light":
        w = 128
        layers += _block(5, 64, w, 2)
    else:
        raise ValueError(f"tail must be 'wide' or 'light', not {tail!r}")
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
               ("fc", nn.Linear(w, len(CLASSES)))]
    return nn.Sequential(OrderedDict(layers))


MECHANISM_WEIGHTS = {m: Path(__file__).parent / "weights" / f"shapes_{m}.pt"
                     for m in ("bottleneck", "adversarial", "deep")}


def load_model(device: str | torch.device = "cpu", weights: str | Path | None = None, *,
               mechanism: str = "noise") -> SplitModel:
    """The shipped classifier, split after `relu4` (activation 64 x H/4 x W/4); with a
    `mechanism` other than "noise", that mechanism's shipped SplitModel (or `weights`, a
    mechanism weights file; veil.privacy._mechanisms)."""
    if mechanism != "noise":
        from veil.privacy import _mechanisms

        _mechanisms.check_mechanism(mechanism, MECHANISM_WEIGHTS)
        return _mechanisms.load(shapes_cnn, weights or MECHANISM_WEIGHTS[mechanism],
                                name="shapes-cnn", mechanism=mechanism, device=device)
    net = shapes_cnn()
    path = Path(weights) if weights else SHAPES_WEIGHTS
    if not path.is_file():
        raise NotFound(f"no weights at {path}: run scripts/train_shapes.py")
    state = load_tensors(path, 1 << 30, "the shapes model's weights")
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InvalidArgument(f"{path}: not weights for shapes-cnn ({first_line(e)})") from None
    model = split_at(net, SHAPES_SPLIT_LAYER, name="shapes-cnn").to(device)
    return model.eval()


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels)


def score(model: SplitModel, transform, data, split: str = "test",
          device: str | torch.device = "cpu", progress: Progress | None = None) -> float:
    """Top-1 accuracy on `split` with `transform` (None: clean) applied to the activation;
    `progress` gets one phase, advancing once per batch."""
    correct = total = 0
    batches = loader(data, split, batch_size=256)
    progress = or_silent(progress)
    progress.start(len(batches), "predicting")
    with torch.no_grad():
        for x, y in batches:
            a = model.forward_head(x.to(device))
            if transform is not None:
                a = transform(a)
            pred = model.forward_tail(a).argmax(1).cpu()
            correct += int((pred == y).sum())
            total += len(y)
            progress.advance(1)
    return correct / total


# ---------------------------------------------------------------------- leakage probes
PROBE_ATTRIBUTES = {k: v for k, v in ATTRIBUTES.items() if k != "class"}  # class is public
PROBE_BATCH = 256


class _ProbeBatches:
    """Re-iterable batches of a generated probe set, with a length."""

    def __init__(self, arrays: tuple[np.ndarray, ...], extra=None, batch_size=PROBE_BATCH):
        self.arrays, self.extra, self.batch_size = arrays, extra, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.arrays[0]) / self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.arrays[0]), self.batch_size):
            xs = [torch.from_numpy(a[i:i + self.batch_size]).permute(0, 3, 1, 2).float()
                  .div_(255) for a in self.arrays]
            if self.extra is None:
                yield tuple(xs)
            else:
                yield xs[0], None, {k: torch.from_numpy(v[i:i + self.batch_size])
                                    for k, v in self.extra.items()}


def probe_units(kind: str, n: int, seed: int) -> Iterable:
    """Generated images labelled with position cell, colour bin, size and texture (one unit an
    image); the shapes task has no identities."""
    if kind != "attributes":
        raise InvalidArgument(f"the shapes task has no {kind!r} probe (it has attributes)")
    imgs, labels = probe_images(n, seed)
    return _ProbeBatches((imgs,), {k: labels[k] for k in PROBE_ATTRIBUTES})


def probe_pairs(n: int, seed: int) -> Iterable:
    """Pairs of images identical but for the shape, moved by at least 8 pixels."""
    return _ProbeBatches(moved_pairs(n, seed, 8.0))


def public(data, split: str) -> torch.Tensor:
    """What the classifier's output tells anyone: each image's class."""
    return _split_tensors(data, split)[1]


PROBES = Probes(attributes=PROBE_ATTRIBUTES, units=probe_units, pairs=probe_pairs,
                pair_name="shape moved >= 8 px", public=public, public_name="class",
                sizes={"train": 3000, "test": 1000, "pairs": 500, "identity_train": 0,
                       "identity_test": 0})

TASK = register_task(PrivacyTask(
    name="shapes",
    description="8-class shape classifier on generated 32x32 images (the test model)",
    metric="accuracy",
    load_model=load_model,
    loader=loader,
    task_loss=task_loss,
    score=score,
    images=images,
    generate=generate,
    splits=SPLITS,
    sizes=DEFAULT_SIZES,
    probes=PROBES,
    mechanisms=("noise", *(m for m, f in MECHANISM_WEIGHTS.items() if f.is_file())),
))
