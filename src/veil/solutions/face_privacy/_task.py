"""The `faces` privacy task: FaceBoxes on FDDB-layout data, so `veil privacy fit|evaluate|attack|
bench --task faces` work on it (named by the face-privacy solution's `privacy_task`).

A data set for this task is an FDDB root (the folds that are scored) with two more FDDB-layout
sets under it, as `veil privacy generate --task faces` writes them:

    ROOT/FDDB-folds, ROOT/originalPics   "test": the folds evaluated (mAP)
    ROOT/fit/                            "fit": what the obfuscator's noise is fitted on
    ROOT/attack/                         "attack": the attacker's own images, for its decoder

For the attack, targets are the images stretched to 1024 x 1024 as the model sees them and then
downscaled to 128 x 128 (ATTACK_SIZE): the decoder reconstructs a thumbnail, which is an easier
task than reconstructing full resolution, so the SSIM it reaches is on the attacker's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from veil.errors import InvalidArgument
from veil.privacy import PrivacyTask, Probes, register_task
from veil.progress import Progress
from veil.solutions.face_privacy import _evaluate, _faceboxes, _model, _synth
from veil.solutions.face_privacy._fddb import FddbImage, load_image, read_fddb

ATTACK_SIZE = 128
MAX_BATCH = 8  # 1024 x 1024 inputs: eight are 100 MB
SIZES = {"fit": 100, "attack": 600, "test": 300}  # images, 10 folds each
MAX_IMAGES = 1_000_000  # per split: 100,000 per fold, the generator's bound


def split_root(data: str | Path, split: str) -> Path:
    root = Path(data)
    if split == "test":
        return root
    if split not in _synth.SUBSETS:
        raise InvalidArgument(f"the faces task has no split {split!r} (test, fit, attack)")
    sub = root / split
    if not sub.is_dir():
        raise InvalidArgument(
            f"{root} has no {split}/ set: the faces task fits the obfuscator on ROOT/fit and "
            f"trains the attack on ROOT/attack (FDDB layout); `veil privacy generate --task faces` "
            f"writes both")
    return sub


def _images(data, split: str) -> list[FddbImage]:
    ds = read_fddb(split_root(data, split), within=data)
    return [im for fold in ds.folds for im in fold.images]


def _boxes(im: FddbImage, w: int, h: int) -> torch.Tensor:
    b = torch.tensor([e.box() for e in im.ellipses], dtype=torch.float32).reshape(-1, 4)
    return (b / torch.tensor([w, h, w, h], dtype=torch.float32)).clamp_(0, 1)


class _Loader:
    """Re-iterable (inputs (B, 3, 1024, 1024), [normalised corner boxes per image]) batches."""

    def __init__(self, images: list[FddbImage], batch_size: int, shuffle: bool, targets: str):
        self.images, self.shuffle, self.targets = images, shuffle, targets
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self._epoch = 0

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator:
        order = np.arange(len(self.images))
        if self.shuffle:
            order = np.random.default_rng(self._epoch).permutation(order)
            self._epoch += 1
        for i in range(0, len(order), self.batch_size):
            chunk = [self.images[j] for j in order[i:i + self.batch_size]]
            arrays = [load_image(im) for im in chunk]
            x = torch.stack([_model.to_input(a) for a in arrays])
            if self.targets == "boxes":
                yield x, [_boxes(im, a.shape[1], a.shape[0]) for im, a in zip(chunk, arrays,
                                                                               strict=True)]
            else:
                yield x, F.interpolate(x, size=(ATTACK_SIZE, ATTACK_SIZE), mode="bilinear",
                                       align_corners=False, antialias=True).clamp_(0, 1)


def loader(data, split: str, batch_size: int = MAX_BATCH, shuffle: bool = False) -> Iterable:
    return _Loader(_images(data, split), batch_size, shuffle, "boxes")


def images(data, split: str, batch_size: int = MAX_BATCH) -> Iterable:
    return _Loader(_images(data, split), batch_size, False, "images")


def task_loss(output, targets) -> torch.Tensor:
    loc, conf = output
    return _faceboxes.multibox_loss(loc, conf, targets,
                                    _model.priors(_model.INPUT, loc.device))


def score(model, transform, data, split: str = "test", device="cpu",
          progress: Progress | None = None) -> float:
    """mAP over the split's folds (mean of per-fold AP at IoU 0.5), as the seed reports it."""
    return _evaluate.run(model, split_root(data, split), transform, strict=True,
                         progress=progress).map


def generate(path, *, seed: int = 0, sizes: dict[str, int] | None = None,
             progress: Progress | None = None):
    """ROOT (test folds), ROOT/fit and ROOT/attack; `sizes` counts images per split, each a
    multiple of 10 (ten folds each)."""
    sizes = {**SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SIZES)
    if unknown:
        raise InvalidArgument(f"unknown split(s) {', '.join(sorted(unknown))} for faces "
                              f"(fit, attack, test)")
    for split, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 10 <= n <= MAX_IMAGES or n % 10:
            raise InvalidArgument(f"the faces task writes 10 folds: {split} needs a multiple of "
                                  f"10 images, 10 to {MAX_IMAGES}, not {n!r}")
    return _synth.generate(path, seed=seed, images_per_fold=sizes["test"] // 10,
                           fit_per_fold=sizes["fit"] // 10,
                           attack_per_fold=sizes["attack"] // 10, progress=progress)


# ---------------------------------------------------------------------- leakage probes
def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or \
            (hi is not None and value > hi):
        bound = f"{lo} to {hi}" if hi is not None else f">= {lo}"
        raise InvalidArgument(f"{name} must be a whole number {bound}, not {value!r}")
    return value


IDENTITIES = 10  # N-way identification
PROBE_BATCH = 4  # 1024 x 1024 inputs


def image_boxes(data, split: str) -> list[torch.Tensor]:
    """Each face's box (normalised x0, y0, x1, y1) per image of `images(data, split)`, in its
    order; the image's size is read from its header."""
    from PIL import Image

    out = []
    for im in _images(data, split):
        with Image.open(im.path) as f:
            w, h = f.size
        out.append(_boxes(im, w, h))
    return out


def _norm_box(e, w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = e.box()
    return [min(max(x0 / w, 0.0), 1.0), min(max(y0 / h, 0.0), 1.0),
            min(max(x1 / w, 0.0), 1.0), min(max(y1 / h, 0.0), 1.0)]


class _Generated:
    """Re-iterable batches of generated images, drawn lazily (each call to `draw(i)` returns one
    item), with a length."""

    def __init__(self, n: int, draw, collate):
        self.n, self.draw, self.collate = n, draw, collate

    def __len__(self) -> int:
        return (self.n + PROBE_BATCH - 1) // PROBE_BATCH

    def __iter__(self):
        for i in range(0, self.n, PROBE_BATCH):
            yield self.collate([self.draw(j) for j in range(i, min(i + PROBE_BATCH, self.n))])


def _collate_units(items):
    x = torch.stack([_model.to_input(arr) for arr, _, _ in items])
    boxes = [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for _, b, _ in items]
    labels: dict[str, list[int]] = {}
    for _, _, lab in items:
        for unit in lab:
            for k, v in unit.items():
                labels.setdefault(k, []).append(v)
    return x, boxes, {k: torch.tensor(v, dtype=torch.long) for k, v in labels.items()}


def probe_units(kind: str, n: int, seed: int):
    """Generated scenes labelled per face: kind "attributes" (`n` images of the generator's
    usual scenes, skin tone, hair colour and occlusion) or "identity" (`n` scenes of each of
    IDENTITIES persistent identities, one face each)."""
    check_int("the probe size", n, 1, 100_000)
    check_int("the probe seed", seed, 0)
    if kind == "attributes":
        def draw(j):
            arr, ellipses, attrs = _synth.render(np.random.default_rng([seed, 31337, j]),
                                                 attributes=True)
            h, w = arr.shape[:2]
            return arr, [_norm_box(e, w, h) for e in ellipses], attrs

        return _Generated(n, draw, _collate_units)
    if kind == "identity":
        people = [_synth.identity(i) for i in range(IDENTITIES)]

        def draw(j):
            who, scene = j % IDENTITIES, j // IDENTITIES
            arr, e = _synth.render_identity(people[who], seed * 1_000_003 + scene)
            h, w = arr.shape[:2]
            return arr, [_norm_box(e, w, h)], [{"identity": who}]

        return _Generated(n * IDENTITIES, draw, _collate_units)
    raise InvalidArgument(f"the faces task has no {kind!r} probe (attributes, identity)")


def probe_pairs(n: int, seed: int):
    """`n` same-scene identity swaps: one scene drawn twice, with two different identities."""
    check_int("the number of pairs", n, 1, 100_000)
    check_int("the probe seed", seed, 0)
    people = [_synth.identity(i) for i in range(IDENTITIES)]

    def draw(j):
        rng = np.random.default_rng([seed, 4242, j])
        a, b = rng.choice(IDENTITIES, size=2, replace=False)
        scene = seed * 1_000_003 + 500_000 + j
        return (_synth.render_identity(people[a], scene)[0],
                _synth.render_identity(people[b], scene)[0])

    def collate(items):
        return (torch.stack([_model.to_input(a) for a, _ in items]),
                torch.stack([_model.to_input(b) for _, b in items]))

    return _Generated(n, draw, collate)


PROBES = Probes(attributes=dict(_synth.FACE_ATTRIBUTES), units=probe_units, pairs=probe_pairs,
                pair_name="same-scene identity swap", identities=IDENTITIES, boxes=image_boxes,
                public=image_boxes, public_name="face boxes",
                sizes={"train": 600, "test": 300, "identity_train": 40, "identity_test": 10,
                       "pairs": 100})

TASK = register_task(PrivacyTask(
    name="faces",
    description="FaceBoxes face detector on FDDB-layout data, 1024x1024 input (TR-4928)",
    metric="mAP",
    load_model=_model.load_model,
    loader=loader,
    task_loss=task_loss,
    score=score,
    images=images,
    generate=generate,
    splits={"fit": "fit", "attack": "attack", "test": "test"},
    sizes=SIZES,
    probes=PROBES,
    mechanisms=("noise", *(m for m, f in _model.MECHANISM_WEIGHTS.items() if f.is_file())),
))
