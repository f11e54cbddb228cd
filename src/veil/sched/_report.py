"""GPUs allocated per project over time, as a PNG (the seed's analytics view)."""

from __future__ import annotations

from pathlib import Path


def plot_history(hist: list[tuple[float, str, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not hist:
        from veil.errors import InvalidArgument

        raise InvalidArgument("nothing to plot yet: no allocation has been recorded")
    t0 = hist[0][0]
    end = max(t for t, _, _ in hist)
    fig, ax = plt.subplots(figsize=(8, 4))
    for project in sorted({p for _, p, _ in hist}):
        pts = [(t - t0, g) for t, p, g in hist if p == project]
        xs = [x for x, _ in pts] + [end - t0]
        ys = [y for _, y in pts] + [pts[-1][1]]
        ax.step(xs, ys, where="post", label=project)
    ax.set_xlabel("seconds")
    ax.set_ylabel("GPUs allocated")
    ax.set_title("GPUs allocated per project")
    ax.legend()
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
