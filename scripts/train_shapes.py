#!/usr/bin/env python
"""Reproduce src/veil/privacy/weights/shapes_cnn.pt: the shapes classifier veil's privacy tests use.

Two stages, on images generated in memory (seeds disjoint from the ones `veil privacy generate`
uses), on CPU; about ten minutes on two cores.

1. The head (the four conv layers before the split at `relu4`) is trained jointly with a light
   tail, with Gaussian noise injected at the split for half the images (0 to 8x each channel's
   standard deviation).
2. The head is frozen and a wide tail (three conv layers of 192 channels) is trained on it from
   scratch for 30 epochs, with Laplace noise of 0 to 12x injected for three images in four.

Both stages run veil.privacy.train_under_noise, with each channel's standard deviation taken
over the batch in stage 1 and over the first 4,000 images once in stage 2 (the frozen head's
activations do not move).

Freezing the head in stage 2 keeps what an attacker sees unchanged: only the server-side tail
learns to read through heavier noise. Training head and tail jointly under heavier noise makes
the head itself discard what a reconstruction needs (docs/benchmarks.md), so the obfuscator
would no longer be what protects the input.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.nn.functional import cross_entropy

from veil.privacy import (
    SHAPES_SPLIT_LAYER,
    SHAPES_WEIGHTS,
    shapes_cnn,
    shapes_images,
    split_at,
    train_under_noise,
)
from veil.progress import TqdmProgress


def tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = shapes_images(n, seed)
    return torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(ys)


class Batches:
    """Shuffled batches of 128 images, a random half of them mirrored (every class is
    mirror-symmetric); a new order on every pass."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, batch_size: int = 128):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            flip = torch.rand(len(idx), generator=self.gen) < 0.5
            yield torch.where(flip[:, None, None, None], self.x[idx].flip(3), self.x[idx]), \
                self.y[idx]


def channel_std(split, x: torch.Tensor, n: int = 4000) -> torch.Tensor:
    """Each channel's standard deviation at the split over the first `n` images (head in eval
    mode): the noise scale of stage 2, fixed because the frozen head's activations do not move."""
    with torch.no_grad():
        split.head.eval()
        a = torch.cat([split.forward_head(x[i:i + 500]) for i in range(0, min(n, len(x)), 500)])
    return a.transpose(0, 1).flatten(1).std(1)


def accuracy(val: tuple[torch.Tensor, torch.Tensor]):
    return lambda model: float((model(val[0]).argmax(1) == val[1]).float().mean())


def printer(label: str):
    return lambda line: print(f"{label} {line}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=SHAPES_WEIGHTS)
    p.add_argument("--images", type=int, default=16000)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--epochs", type=int, default=12, help="stage 1 epochs")
    p.add_argument("--noise-max", type=float, default=8.0, help="stage 1 noise, x channel std")
    p.add_argument("--tail-epochs", type=int, default=30, help="stage 2 epochs")
    p.add_argument("--tail-noise-max", type=float, default=12.0, help="stage 2 noise, x std")
    p.add_argument("--tail-noisy-share", type=float, default=0.75,
                   help="stage 2: share of images that get noise")
    p.add_argument("--head-from", type=Path,
                   help="skip stage 1: take the head from these weights (a shapes-cnn state dict)")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    t0 = time.time()
    x, y = tensors(args.images, args.seed)
    val = tensors(2000, args.seed + 1)
    print(f"generated {len(x)} + {len(val[0])} images in {time.time() - t0:.1f}s", flush=True)

    if args.head_from:
        head_state = torch.load(args.head_from, map_location="cpu", weights_only=True)
    else:
        light = shapes_cnn(tail="light")
        light_split = split_at(light, SHAPES_SPLIT_LAYER)  # shares light's modules
        with TqdmProgress() as progress:
            train_under_noise(light_split, Batches(x, y, args.seed), cross_entropy,
                              epochs=args.epochs, lr=3e-3, weight_decay=1e-4,
                              noise_max=args.noise_max, noisy_share=0.5, distribution="gaussian",
                              freeze_head=False, seed=args.seed, validate=accuracy(val),
                              progress=progress, log=printer("stage 1 (head + light tail)"))
        head_state = light.state_dict()

    net = shapes_cnn()
    split = split_at(net, SHAPES_SPLIT_LAYER)
    head_names = {name for name, _ in split.head.named_children()}
    split.head.load_state_dict({k: v for k, v in head_state.items()
                                if k.split(".")[0] in head_names})

    with TqdmProgress() as progress:
        train_under_noise(split, Batches(x, y, args.seed + 2), cross_entropy,
                          epochs=args.tail_epochs, lr=3e-3, weight_decay=1e-4,
                          noise_max=args.tail_noise_max, noisy_share=args.tail_noisy_share,
                          distribution="laplace", channel_std=channel_std(split, x),
                          freeze_head=True, seed=args.seed + 2, validate=accuracy(val),
                          progress=progress, log=printer("stage 2 (wide tail, head frozen)"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
