"""Training FaceBoxes on an FDDB-layout data set (scripts/train_faceboxes.py drives this).

Each sample is a random crop with the image's aspect ratio, 30-100% of its sides, stretched to
`size` x `size` and flipped at random, with brightness, contrast and saturation jitter. Evaluation
stretches whole images to 1024 x 1024, so training on 512 x 512 crops of about half the image
sees faces at the evaluation's scale (and from half to twice it), at a quarter of the cost.
Faces whose centre falls outside the crop are dropped, the others clipped to it.

Noise can be injected at the split, as `veil privacy` will add it (veil.privacy's
train_under_noise): for a share of the samples, r * std * unit Laplace noise with
r ~ U[0, noise_max), std each channel's over the batch. With `freeze_head` only the tail learns
(the head, what an attacker inverts, stays as it was).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from veil.privacy import split_at, train_under_noise
from veil.progress import Log, Progress
from veil.solutions.face_privacy import _faceboxes
from veil.solutions.face_privacy._fddb import FddbDataset, load_image


@dataclass
class Sample:
    image: np.ndarray  # RGB uint8
    boxes: np.ndarray  # (T, 4) x1, y1, x2, y2 in pixels


def samples(dataset: FddbDataset) -> list[Sample]:
    out = []
    for fold in dataset.folds:
        for im in fold.images:
            boxes = np.array([e.box() for e in im.ellipses], np.float32).reshape(-1, 4)
            out.append(Sample(load_image(im), boxes))
    return out


def augment(rng: np.random.Generator, s: Sample, size: int,
            crop: tuple[float, float] = (0.3, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """(image (3, size, size) in [0, 1], normalised corner boxes (T, 4))."""
    h, w = s.image.shape[:2]
    for _ in range(20):
        f = float(rng.uniform(*crop))
        cw, ch = max(1, round(w * f)), max(1, round(h * f))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        centres = (s.boxes[:, :2] + s.boxes[:, 2:]) / 2
        inside = ((centres[:, 0] >= x0) & (centres[:, 0] < x0 + cw)
                  & (centres[:, 1] >= y0) & (centres[:, 1] < y0 + ch))
        if inside.any() or len(s.boxes) == 0:
            break
    boxes = s.boxes[inside].copy()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - x0).clip(0, cw) / cw
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - y0).clip(0, ch) / ch
    x = torch.from_numpy(s.image[y0:y0 + ch, x0:x0 + cw].copy())
    x = x.permute(2, 0, 1)[None].float().div_(255)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=cw > size or ch > size)[0]
    if rng.random() < 0.5:
        x = x.flip(-1)
        boxes[:, [0, 2]] = 1 - boxes[:, [2, 0]]
    # photometric jitter
    x = x * float(rng.uniform(0.7, 1.3)) + float(rng.uniform(-0.12, 0.12))
    mean = x.mean()
    x = (x - mean) * float(rng.uniform(0.7, 1.3)) + mean
    grey = x.mean(0, keepdim=True)
    x = (x - grey) * float(rng.uniform(0.6, 1.4)) + grey
    keep = ((boxes[:, 2] - boxes[:, 0]) * size >= 6) & ((boxes[:, 3] - boxes[:, 1]) * size >= 6)
    return x.clamp_(0, 1), torch.from_numpy(boxes[keep])


class _Crops:
    """Re-iterable batches of augmented crops: each pass draws a new order and new crops and
    yields `len(data) // batch_size` full batches of (images, [boxes per image])."""

    def __init__(self, data: list[Sample], batch_size: int, size: int,
                 rng: np.random.Generator):
        self.data, self.batch_size, self.size, self.rng = data, batch_size, size, rng

    def __len__(self) -> int:
        return len(self.data) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        order = self.rng.permutation(len(self.data))
        for b in range(len(self)):
            picked = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = [augment(self.rng, self.data[i], self.size) for i in picked]
            yield torch.stack([t[0] for t in batch]), [t[1] for t in batch]


def train(net, data: list[Sample], *, epochs: int, batch_size: int = 16, lr: float = 2e-3,
          size: int = 512, seed: int = 0, noise_max: float = 0.0, noisy_share: float = 0.0,
          freeze_head: bool = False, progress: Progress | None = None,
          log: Log | None = None) -> list[float]:
    """AdamW with a one-cycle schedule on augmented crops (see the module's docstring), through
    veil.privacy.train_under_noise; returns the mean loss of each epoch."""
    rng = np.random.default_rng(seed)
    pri = _faceboxes.priors(size, size)

    def loss(output, targets):
        return _faceboxes.multibox_loss(*output, targets, pri)

    return train_under_noise(
        split_at(net, "head"), _Crops(data, batch_size, size, rng), loss, epochs=epochs,
        noise_max=noise_max, noisy_share=noisy_share, distribution="laplace",
        freeze_head=freeze_head, lr=lr, weight_decay=5e-4, pct_start=0.15, max_grad_norm=10.0,
        seed=seed, progress=progress, log=log)
