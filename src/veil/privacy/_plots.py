"""PNG figures for the sweep, the attack and the reconstruction grid (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def evaluate_plot(result, path: Path) -> Path:
    """Metric against ALPHA, with the clean value as a line."""
    rows = [r for r in result.rows if r.alpha is not None]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.axhline(result.clean, color="grey", ls="--", label=f"clean ({result.clean:.4f})")
    ax.plot([r.alpha for r in rows], [r.value for r in rows], "o-", label="obfuscated")
    ax.set_xlabel("ALPHA")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.task}: {result.metric} under {result.distribution} obfuscation")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def attack_plot(result, path: Path) -> Path:
    """Reconstruction PSNR and SSIM against ALPHA (clean at ALPHA 0)."""
    alphas = [r.alpha for r in result.rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(alphas, [r.psnr for r in result.rows], "o-")
    a1.set_ylabel("PSNR (dB)")
    a2.plot(alphas, [r.ssim for r in result.rows], "o-", color="tab:red")
    a2.axhline(0.2, color="grey", ls="--", label="SSIM 0.2")
    floor = getattr(result, "floor_ssim", float("nan"))
    if floor == floor:  # not NaN
        a2.axhline(floor, color="tab:green", ls=":", label=f"mean image ({floor:.3f})")
        a1.axhline(result.floor_psnr, color="tab:green", ls=":", label="mean image")
        a1.legend()
    a2.set_ylabel("SSIM")
    a2.legend()
    for ax in (a1, a2):
        ax.set_xlabel("ALPHA (0 = clean activation)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.task}: white-box reconstruction from the transmitted activation")
    return _save(fig, path)


def attack_grid(images: torch.Tensor, recons: dict[float, torch.Tensor], path: Path,
                rows: int = 6) -> Path:
    """Original | reconstruction from the clean activation | from each obfuscated one."""
    rows = min(rows, len(images))
    pick = torch.linspace(0, len(images) - 1, rows).round().long()  # spread over the split
    images = images[pick]
    recons = {a: r[pick] for a, r in recons.items()}
    cols = [("original", images)] + [
        ("clean" if a == 0 else f"ALPHA {a:g}", r) for a, r in sorted(recons.items())]
    h, w = images.shape[-2:]
    cell = 1.1  # inches per image
    fig, axes = plt.subplots(rows, len(cols), squeeze=False,
                             figsize=(len(cols) * cell * max(1.0, w / h) + 0.3, rows * cell + 0.5))
    for j, (title, batch) in enumerate(cols):
        for i in range(rows):
            ax = axes[i][j]
            img = batch[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
    fig.suptitle("white-box inversion of the transmitted activation", fontsize=9)
    return _save(fig, path)

