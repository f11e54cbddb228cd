"""A training run as a person reads it: the scores beside the majority class and the oracle,
the time of each phase and the peak memory of each process."""

from __future__ import annotations

import veil.solutions as vs


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def render(res) -> vs.Rendered:
    run = res.output.detail
    m = run.metrics
    lines = [f"{run.engine}: trained on {run.rows:,} rows"
             + (f" ({run.skipped:,} malformed rows skipped)" if run.skipped else ""),
             f"Accuracy {m['accuracy']:.4f} (majority class {m['majority_accuracy']:.4f})  "
             f"AUC {m['auc']:.4f}  log-loss {m['logloss']:.4f}  on {m['rows']:,} test rows",
             "Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items()),
             "Peak memory: " + ", ".join(f"{k} {_mib(v)}" for k, v in
                                         run.peak_rss_bytes.items())]
    if run.dashboard:
        lines.append(f"Dask dashboard (while it ran): {run.dashboard}")
    lines.append(f"Model: {run.model}")
    if res.run_id:
        lines.append(f"MLflow run: {res.run_id}")
    if res.snapshot:
        lines.append(f"Snapshot: {res.snapshot} (volume {res.snapshot_volume})")
    data = {**run.as_dict(), "run_id": res.run_id, "snapshot": res.snapshot}
    return vs.Rendered(lines, [], data, 0)
