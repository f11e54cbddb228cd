"""Leakage measures: reconstruction PSNR and SSIM, and a Gaussian-channel information bound."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# h(Gaussian) - h(Laplace) at equal variance: 0.5 * log2(pi / e) bits.
_LAPLACE_EXCESS_BITS = 0.5 * math.log2(math.pi / math.e)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of two (N, C, H, W) batches."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-12))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    return (g / g.sum()).float()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, valid region only, averaged over channels."""
    x, y = x.float(), y.float()
    c, h, w = x.shape[1:]
    size = min(11, h, w)
    g = _gaussian_window(size, 1.5).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, size, size).contiguous()

    def blur(t):
        return F.conv2d(t, kernel, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def information_bound(signal_var: torch.Tensor, noise_var: torch.Tensor,
                      distribution: str = "gaussian", k: int = 1) -> torch.Tensor:
    """Upper bound in bits on I(activation; obfuscated activation), per element.

    For independent additive noise N of variance v: I(X; X + N) <= 0.5 log2(2 pi e (s + v)) - h(N)
    (a Gaussian has the largest entropy at a given variance). For Gaussian noise that is
    0.5 log2(1 + s / v); Laplace noise adds 0.5 log2(pi / e) = 0.104 bits. The mean of `k`
    obfuscations has variance v / k; for Laplace noise the entropy power inequality keeps the
    excess at or below 0.104 bits, so the same form bounds it. Elements that never vary leak
    nothing.
    """
    v = noise_var / k
    bits = 0.5 * torch.log2(1 + signal_var / v.clamp(min=1e-30))
    if distribution == "laplace":
        bits = bits + _LAPLACE_EXCESS_BITS
    return torch.where(signal_var > 0, bits, torch.zeros_like(bits))
