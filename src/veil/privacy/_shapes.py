"""The test task: a small CNN that names the shape in a 32x32 image, on generated data.

Images are textured backgrounds with one shape of eight classes, written in the ImageFolder
layout (`<split>/<class>/<index>.png`; the fit split is the folder `train/`). The shipped weights
come from scripts/train_shapes.py.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from veil._newdir import new_directory
from veil.errors import InvalidArgument, NotFound
from veil.privacy._split import SplitModel, split_at
from veil.privacy._tasks import PrivacyTask, register_task
from veil.privacy._util import check_int, first_line, load_tensors
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
def _shape_mask(cls: str, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape, SIZE x SIZE."""
    n = SIZE * _SS
    r = rng.uniform(6.0, 11.0) * _SS
    cx, cy = rng.uniform(r * 0.8, n - r * 0.8, size=2)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    dx, dy = x - cx, y - cy
    if cls == "circle":
        m = dx * dx + dy * dy <= r * r
    elif cls == "ring":
        d = np.sqrt(dx * dx + dy * dy)
        m = (d <= r) & (d >= r * rng.uniform(0.45, 0.65))
    elif cls == "square":
        m = (np.abs(dx) <= r * 0.8) & (np.abs(dy) <= r * 0.8)
    elif cls == "frame":
        inner = r * 0.8 * rng.uniform(0.45, 0.65)
        m = (np.maximum(np.abs(dx), np.abs(dy)) <= r * 0.8) & \
            (np.maximum(np.abs(dx), np.abs(dy)) >= inner)
    elif cls == "triangle":
        up = rng.random() < 0.5
        t = dy if up else -dy
        m = (t <= r * 0.7) & (np.abs(dx) <= (t + r) * 0.6)
    elif cls == "diamond":
        m = np.abs(dx) + np.abs(dy) <= r
    elif cls == "cross":
        w = r * rng.uniform(0.28, 0.4)
        m = ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    elif cls == "bar":
        w = r * rng.uniform(0.25, 0.4)
        m = (np.abs(dx) <= r) & (np.abs(dy) <= w)
        if rng.random() < 0.5:
            m = m.T
    else:  # pragma: no cover - CLASSES is closed
        raise ValueError(cls)
    return m.reshape(SIZE, _SS, SIZE, _SS).mean(axis=(1, 3)).astype(np.float32)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A gradient between two colours with one of three textures, SIZE x SIZE x 3 in [0, 1]."""
    c0, c1 = rng.uniform(0.0, 1.0, size=(2, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    t = (np.cos(theta) * (x - 0.5) + np.sin(theta) * (y - 0.5)) + 0.5
    img = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
    kind = rng.integers(3)
    if kind == 0:  # blotches: upsampled coarse noise
        g = rng.normal(0, 0.12, size=(SIZE // 4, SIZE // 4, 3)).astype(np.float32)
        img = img + np.kron(g, np.ones((4, 4, 1), np.float32))
    elif kind == 1:  # stripes
        f, phi = rng.uniform(0.3, 1.2), rng.uniform(0, 2 * math.pi)
        a = rng.uniform(0, math.pi)
        s = np.sin(f * (np.cos(a) * x + np.sin(a) * y) * SIZE + phi)
        img = img + (0.12 * s)[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    else:  # speckle
        img = img + rng.normal(0, 0.08, size=img.shape).astype(np.float32)
    return img + rng.normal(0, 0.02, size=img.shape).astype(np.float32)


def render(cls_index: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class CLASSES[cls_index], uint8 HxWx3."""
    bg = _background(rng)
    mask = _shape_mask(CLASSES[cls_index], rng)[..., None]
    lum = float(bg.mean())
    while True:  # a colour that stands out from the background's mean brightness
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        if abs(float(colour.mean()) - lum) >= 0.25:
            break
    shade = colour + rng.normal(0, 0.03, size=bg.shape).astype(np.float32)
    img = bg * (1 - mask) + shade * mask
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _shapes_stream(n: int, seed: int) -> Iterator[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    for c in labels:
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


def load_model(device: str | torch.device = "cpu", weights: str | Path | None = None) -> SplitModel:
    """The shipped classifier, split after `relu4` (activation 64 x H/4 x W/4)."""
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
))
