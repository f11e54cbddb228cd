#!/usr/bin/env python
"""Reproduce src/veil/privacy/weights/shapes_cnn.pt: the shapes classifier veil's privacy tests use.

Two stages, on images generated in memory (seeds disjoint from the ones `veil privacy generate`
uses), on CPU; about ten minutes on two cores.

1. The head (the four conv layers before the split at `relu4`) is trained jointly with a light
   tail, with Gaussian noise injected at the split for half the images (0 to 8x each channel's
   standard deviation).
2. The head is frozen and a wide tail (three conv layers of 192 channels) is trained on it from
   scratch for 30 epochs, with Laplace noise of 0 to 12x injected for three images in four.

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

from veil.privacy import _shapes, split_at


def tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = _shapes.make_arrays(n, seed)
    return torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(ys)


def unit_noise(shape, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Zero-mean, unit-variance Gaussian or Laplace noise."""
    if kind == "gaussian":
        return torch.randn(shape, generator=gen)
    u = (torch.rand(shape, generator=gen) - 0.5).clamp(-0.4999999, 0.4999999)
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)


def train(net, split, params, x, y, val, *, epochs: int, lr: float, noise_max: float,
          noisy_share: float, noise: str, freeze_head: bool, seed: int, label: str,
          t0: float) -> None:
    """AdamW with a one-cycle schedule; noise r * std * unit noise at the split, with
    r ~ U[0, noise_max) for a `noisy_share` of the images (std: each channel's, over the batch
    or, with a frozen head, over the first 4,000 training images)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    fixed_std = None
    if freeze_head:
        with torch.no_grad():
            split.head.eval()
            a = torch.cat([split.forward_head(x[i:i + 500]) for i in range(0, 4000, 500)])
            fixed_std = a.transpose(0, 1).flatten(1).std(1).view(1, -1, 1, 1)
    for epoch in range(epochs):
        net.train()
        if freeze_head:
            split.head.eval()  # batch-norm statistics of the head stay as they are
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # every class is mirror-symmetric
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            with torch.set_grad_enabled(not freeze_head):
                a = split.forward_head(xb)
            std = fixed_std if freeze_head else a.detach().transpose(0, 1).flatten(1).std(1).view(
                1, -1, 1, 1)
            r = torch.rand(len(idx), 1, 1, 1, generator=gen) * noise_max
            r = torch.where(torch.rand(len(idx), 1, 1, 1, generator=gen) < noisy_share, r, 0.0)
            out = split.forward_tail(a + r * std * unit_noise(a.shape, noise, gen))
            loss = torch.nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            acc = float((net(val[0]).argmax(1) == val[1]).float().mean())
        print(f"{label} epoch {epoch + 1}/{epochs}  loss {total / len(x):.4f}  "
              f"val accuracy {acc:.4f}  ({time.time() - t0:.0f}s)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=_shapes.WEIGHTS)
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
        light = _shapes.shapes_cnn(tail="light")
        light_split = split_at(light, _shapes.SPLIT_LAYER)  # shares light's modules
        train(light, light_split, list(light.parameters()), x, y, val, epochs=args.epochs,
              lr=3e-3, noise_max=args.noise_max, noisy_share=0.5, noise="gaussian",
              freeze_head=False, seed=args.seed, label="stage 1 (head + light tail)", t0=t0)
        head_state = light.state_dict()

    net = _shapes.shapes_cnn()
    split = split_at(net, _shapes.SPLIT_LAYER)
    head_names = {name for name, _ in split.head.named_children()}
    split.head.load_state_dict({k: v for k, v in head_state.items()
                                if k.split(".")[0] in head_names})

    for prm in split.head.parameters():
        prm.requires_grad_(False)
    train(net, split, list(split.tail.parameters()), x, y, val, epochs=args.tail_epochs, lr=3e-3,
          noise_max=args.tail_noise_max, noisy_share=args.tail_noisy_share, noise="laplace",
          freeze_head=True,
          seed=args.seed + 2, label="stage 2 (wide tail, head frozen)", t0=t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
