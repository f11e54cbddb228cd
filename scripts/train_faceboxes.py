#!/usr/bin/env python
"""Reproduce src/veil/solutions/face_privacy/weights/faceboxes.pt, the face detector of
`veil solutions face-privacy` and the `faces` privacy task.

It generates its own training split with the FDDB-layout generator (seed 1000, disjoint from the
seed-0 data sets that `veil privacy generate --task faces` and the demo write), and a validation
split (seed 2000), then trains on CPU in two stages:

1. the whole network on clean 512 x 512 crops (see veil.solutions.face_privacy._train);
2. the head frozen, the tail fine-tuned with Laplace noise at the split (0 to 8x each channel's
   standard deviation, on three samples in four; veil.privacy.train_under_noise), so the
   server-side tail learns to read through the obfuscator's noise while what an attacker
   inverts, the head, stays unchanged.
   (Even noise at ALPHA a has a standard deviation of sqrt(a / (1 - a)) times the signal's:
   2x at 0.8, 4.4x at 0.95, 7x at 0.98.)

    python scripts/train_faceboxes.py [--work DIR] [--epochs 40] [--tail-epochs 15]
    python scripts/train_faceboxes.py --init DIR/stage1.pt   # stage 2 only

Weights are saved in float32 (about 4 MB).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from veil.privacy import split_at
from veil.progress import TqdmProgress
from veil.solutions import face_privacy as fp


def validate(net, dataset: fp.FddbDataset) -> float:
    model = split_at(net, "head").eval()
    aps = []
    for fold in dataset.folds:
        images = [fp.load_image(im) for im in fold.images]
        dets = []
        for i in range(0, len(images), 8):
            dets += fp.detect(model, images[i:i + 8])
        aps.append(fp.average_precision(dets, [im.ellipses for im in fold.images]))
    return sum(aps) / len(aps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/veil-faceboxes"))
    p.add_argument("--images-per-fold", type=int, default=150)
    p.add_argument("--val-images-per-fold", type=int, default=20)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--tail-epochs", type=int, default=15)
    p.add_argument("--noise", type=float, default=8.0)
    p.add_argument("--noisy-share", type=float, default=0.75)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--init", type=Path, help="skip stage 1: start from these weights")
    p.add_argument("--out", type=Path, default=fp.WEIGHTS)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_root, val_root = args.work / "train", args.work / "val"
    if not train_root.exists():
        fp.generate(train_root, seed=1000, images_per_fold=args.images_per_fold)
    if not val_root.exists():
        fp.generate(val_root, seed=2000, images_per_fold=args.val_images_per_fold)
    data = fp.training_samples(fp.read_fddb(train_root))
    val = fp.read_fddb(val_root)
    print(f"{len(data)} training images, {sum(len(s.boxes) for s in data)} faces "
          f"({time.perf_counter() - t0:.0f} s)")
    net = fp.faceboxes()
    if args.init:
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    else:
        with TqdmProgress() as progress:
            fp.train_detector(net, data, epochs=args.epochs, lr=args.lr, size=args.size, seed=1,
                         progress=progress, log=print)
        torch.save(net.state_dict(), args.work / "stage1.pt")
    print(f"stage 1: validation mAP {validate(net, val):.4f} ({time.perf_counter() - t0:.0f} s)")
    if args.tail_epochs:
        with TqdmProgress() as progress:
            fp.train_detector(net, data, epochs=args.tail_epochs, lr=args.lr / 4, size=args.size,
                         seed=2, noise_max=args.noise, noisy_share=args.noisy_share,
                         freeze_head=True, progress=progress, log=print)
        print(f"stage 2: validation mAP {validate(net, val):.4f} "
              f"({time.perf_counter() - t0:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
