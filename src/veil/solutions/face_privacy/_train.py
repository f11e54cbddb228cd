"""Training FaceBoxes on an FDDB-layout data set (scripts/train_faceboxes.py drives this).

Each sample is a random crop with the image's aspect ratio, 30-100% of its sides, stretched to
`size` x `size` and flipped at random, with brightness, contrast and saturation jitter. Evaluation
stretches whole images to 1024 x 1024, so training on 512 x 512 crops of about half the image
sees faces at the evaluation's scale (and from half to twice it), at a quarter of the cost.
Faces whose centre falls outside the crop are dropped, the others clipped to it.

Noise can be injected at the split, as `veil privacy` will add it: for a share of the samples,
r * std * unit Laplace noise with r ~ U[0, noise_max), std each channel's over the batch. With
`freeze_head` only the tail learns (the head, what an attacker inverts, stays as it was).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

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


def unit_laplace(shape, gen: torch.Generator) -> torch.Tensor:
    u = (torch.rand(shape, generator=gen) - 0.5).clamp(-0.4999999, 0.4999999)
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)


def train(net, data: list[Sample], *, epochs: int, batch_size: int = 16, lr: float = 2e-3,
          size: int = 512, seed: int = 0, noise_max: float = 0.0, noisy_share: float = 0.0,
          freeze_head: bool = False, log: Callable[[str], None] = print) -> None:
    """AdamW with a one-cycle schedule on augmented crops (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head, tail = net.head, net.tail
    params = list(tail.parameters()) if freeze_head else list(net.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
    per_epoch = len(data) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch,
                                                pct_start=0.15)
    pri = _faceboxes.priors(size, size)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        if freeze_head:
            head.eval()
        order = rng.permutation(len(data))
        total, n = 0.0, 0
        for b in range(per_epoch):
            picked = order[b * batch_size:(b + 1) * batch_size]
            batch = [augment(rng, data[i], size) for i in picked]
            x = torch.stack([t[0] for t in batch])
            targets = [t[1] for t in batch]
            if freeze_head:
                with torch.no_grad():
                    a = head(x)
            else:
                a = head(x)
            if noise_max > 0 and noisy_share > 0:
                std = a.detach().transpose(0, 1).flatten(1).std(1).view(1, -1, 1, 1)
                r = torch.rand(len(x), 1, 1, 1, generator=gen) * noise_max
                r = r * (torch.rand(len(x), 1, 1, 1, generator=gen) < noisy_share)
                a = a + r * std * unit_laplace(a.shape, gen)
            loc, conf = tail(a)
            loss = _faceboxes.multibox_loss(loc, conf, targets, pri)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
            n += 1
        log(f"epoch {epoch + 1}/{epochs}  loss {total / max(n, 1):.3f}  "
            f"{time.perf_counter() - t0:.0f} s")
    net.eval()
