#!/usr/bin/env python
"""Reproduce src/veil/privacy/weights/shapes_cnn.pt: the shapes classifier veil's privacy tests use.

Trains on images generated in memory (a seed disjoint from the ones `veil privacy generate`
uses), on CPU. About two minutes on two cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from veil.privacy import _shapes, split_at


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=_shapes.WEIGHTS)
    p.add_argument("--images", type=int, default=16000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--noise-at", default=_shapes.SPLIT_LAYER,
                   help="layer after which noise is injected during training ('' for none)")
    p.add_argument("--noise-max", type=float, default=8.0,
                   help="injected noise std, drawn per image from [0, this] x the channel's std")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    t0 = time.time()
    xs, ys = _shapes.make_arrays(args.images, args.seed)
    vx, vy = _shapes.make_arrays(2000, args.seed + 1)
    x = torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255)
    y = torch.from_numpy(ys)
    val_x = torch.from_numpy(vx).permute(0, 3, 1, 2).float().div_(255)
    val_y = torch.from_numpy(vy)
    print(f"generated {len(x)} + {len(val_x)} images in {time.time() - t0:.1f}s")

    net = _shapes.shapes_cnn()
    split = split_at(net, args.noise_at) if args.noise_at else None  # shares net's modules
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # every class is mirror-symmetric
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            if split is None:
                out = net(xb)
            else:  # a tail that tolerates noise on the activation it receives
                a = split.forward_head(xb)
                std = a.detach().transpose(0, 1).flatten(1).std(1).view(1, -1, 1, 1)
                r = torch.rand(len(idx), 1, 1, 1, generator=gen) * args.noise_max
                r = torch.where(torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5, r, 0.0)
                out = split.forward_tail(a + r * std * torch.randn(a.shape, generator=gen))
            loss = torch.nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            acc = float((net(val_x).argmax(1) == val_y).float().mean())
        print(f"epoch {epoch + 1}/{args.epochs}  loss {total / len(x):.4f}  "
              f"val accuracy {acc:.4f}  ({time.time() - t0:.0f}s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
