"""The white-box reconstruction attack: an inversion decoder trained on obfuscated activations.

The adversary knows the head and the learned noise distribution, so it can make as many
(obfuscated activation, image) pairs as it likes from its own images, which are disjoint from
the images it is scored on. It trains a decoder per noise setting and is scored by PSNR and SSIM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass

import torch
from torch import nn

from veil.errors import InvalidArgument
from veil.privacy._metrics import psnr, ssim
from veil.progress import Progress, or_silent

Transform = Callable[[torch.Tensor], torch.Tensor]


class InversionDecoder(nn.Module):
    """Activation (C, h, w) back to an image (3, h * scale, w * scale) in [0, 1].

    Input standardisation, three 3x3 convolutions, then one pixel-shuffle stage per factor of
    two of `scale` (halving the width each time), batch norm throughout.
    """

    def __init__(self, in_channels: int, scale: int, width: int = 96, out_channels: int = 3):
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise InvalidArgument(f"the decoder upsamples by powers of two, not {scale}")

        def block(cin: int, cout: int, shuffle: bool = False) -> list[nn.Module]:
            conv = nn.Conv2d(cin, 4 * cout if shuffle else cout, 3, padding=1)
            return [conv, *([nn.PixelShuffle(2)] if shuffle else []), nn.BatchNorm2d(cout),
                    nn.ReLU()]

        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels, affine=False),
                                   *block(in_channels, width), *block(width, width),
                                   *block(width, width)]
        w = width
        for _ in range(int(math.log2(scale))):
            nxt = max(w // 2, 16)
            layers += block(w, nxt, shuffle=True)
            w = nxt
        layers += [nn.Conv2d(w, out_channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)


@dataclass
class Pairs:
    """Clean activations of the head and the images they came from, held in memory."""

    activations: torch.Tensor
    images: torch.Tensor

    @property
    def scale(self) -> int:
        return self.images.shape[-1] // self.activations.shape[-1]


def collect(head: Callable, batches: Iterable, device, limit: int | None = None, *,
            progress: Progress | None = None) -> Pairs:
    """Run the head over (inputs, images) batches once; activations and images on CPU.

    With `limit`, keep that many images spread evenly over the split (splits may be ordered by
    class). `progress` gets one phase, advancing once per batch."""
    progress = or_silent(progress)
    progress.start(len(batches) if isinstance(batches, Sized) else 0, "running the head")
    acts, imgs = [], []
    with torch.no_grad():
        for x, img in batches:
            acts.append(head(x.to(device)).cpu())
            imgs.append(img.cpu())
            progress.advance(1)
    if not acts:
        raise InvalidArgument("no images to attack with: the split is empty")
    a, i = torch.cat(acts), torch.cat(imgs)
    if limit is not None and limit < len(a):
        keep = torch.linspace(0, len(a) - 1, max(limit, 1)).round().long()
        a, i = a[keep], i[keep]
    if a.ndim != 4 or i.ndim != 4:
        raise InvalidArgument("the attack needs image-shaped activations (N, C, H, W)")
    if i.shape[-1] % a.shape[-1] or i.shape[-2] % a.shape[-2]:
        raise InvalidArgument(f"images {tuple(i.shape[-2:])} are not a whole multiple of the "
                              f"activation's {tuple(a.shape[-2:])}")
    return Pairs(a, i)


def observe(transform: Transform | None, a: torch.Tensor, k: int) -> torch.Tensor:
    """What the adversary sees: the mean of `k` independent obfuscations of `a`."""
    if transform is None:
        return a
    out = transform(a)
    for _ in range(k - 1):
        out = out + transform(a)
    return out / k if k > 1 else out


def train_decoder(pairs: Pairs, transform: Transform | None, *, k: int = 1, epochs: int = 8,
                  batch_size: int = 64, lr: float = 1e-2, width: int = 96, device="cpu",
                  seed: int = 0, progress: Progress | None = None) -> InversionDecoder:
    """Fit a decoder on fresh obfuscations of `pairs` every batch (MSE on pixels).

    `progress` advances once per epoch, within a phase its caller started."""
    progress = or_silent(progress)
    torch.manual_seed(seed)
    dec = InversionDecoder(pairs.activations.shape[1], pairs.scale, width=width).to(device)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    n = len(pairs.activations)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    dec.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            a = pairs.activations[idx].to(device)
            with torch.no_grad():
                seen = observe(transform, a, k)
            loss = nn.functional.mse_loss(dec(seen), pairs.images[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress.advance(1)
    return dec.eval()


def reconstruct(dec: InversionDecoder, pairs: Pairs, transform: Transform | None, *, k: int = 1,
                batch_size: int = 256, device="cpu") -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs.activations), batch_size):
            a = pairs.activations[i:i + batch_size].to(device)
            out.append(dec(observe(transform, a, k)).cpu())
    return torch.cat(out)


def score(recon: torch.Tensor, images: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR (dB) and mean SSIM of reconstructions against the originals."""
    return float(psnr(recon, images).mean()), float(ssim(recon, images).mean())
