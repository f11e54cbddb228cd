"""The toy solution's registration: one data format (points.csv), one model, one metric, two
jobs (train, evaluate) and a Kubernetes export."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from veil import k8s
from veil.errors import InvalidArgument
from veil.solutions import (
    CheckReport,
    DatasetFormat,
    JobSpec,
    Metric,
    ModelSpec,
    Solution,
    register,
)
from veil.train import JobContext, JobOutput


def generate(path, *, seed=0, sizes=None, progress=None) -> Path:
    n = {"points": 50, **(sizes or {})}["points"]
    if n < 2:
        raise InvalidArgument(f"--points must be at least 2, not {n}")
    path = Path(path)
    path.mkdir(parents=True)
    rng = random.Random(seed)
    if progress is not None:
        progress.start(n, "writing points")
    with open(path / "points.csv", "w") as f:
        for _ in range(n):
            x = rng.uniform(-5, 5)
            f.write(f"{x:.6f},{2 * x + 1 + rng.gauss(0, 0.1):.6f}\n")
            if progress is not None:
                progress.advance(1)
    (path / "dataset.json").write_text(json.dumps({"format": "points", "seed": seed,
                                                   "points": n}) + "\n")
    return path


def read(path) -> tuple[list[tuple[float, float]], list[str]]:
    f = Path(path) / "points.csv"
    if not f.is_file():
        raise InvalidArgument(f"{f}: no such file")
    points, errors = [], []
    for i, line in enumerate(f.read_text().splitlines(), start=1):
        try:
            x, y = (float(v) for v in line.split(","))
            points.append((x, y))
        except ValueError:
            errors.append(f"{f}:{i}: not two numbers: {line!r}")
    return points, errors


def check(path) -> CheckReport:
    points, errors = read(path)
    return CheckReport({"points": len(points)}, errors,
                       f"{len(points)} points; {len(errors)} problem(s).")


def mse(predictions, truth) -> float:
    return sum((p - t) ** 2 for p, t in zip(predictions, truth, strict=True)) / len(truth)


@dataclass
class TrainConfig:
    ridge: float = field(default=0.0, metadata={"help": "L2 penalty on the slope."})


@dataclass
class EvaluateConfig:
    model: str = field(default="model.json", metadata={"help": "The fitted line (model.json).",
                                                       "path": True})


def _points(ctx: JobContext):
    points, errors = read(ctx.data)
    if errors:
        raise InvalidArgument(errors[0])
    return points


def prepare(cfg, ctx: JobContext) -> None:
    _points(ctx)


def train(cfg: TrainConfig, ctx: JobContext) -> JobOutput:
    pts = _points(ctx)
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts) + cfg.ridge
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    line = {"slope": slope, "intercept": my - slope * mx}
    (ctx.out / "model.json").write_text(json.dumps(line) + "\n")
    err = mse([line["slope"] * x + line["intercept"] for x, _ in pts], [y for _, y in pts])
    ctx.log(f"fitted y = {slope:.3f} x + {line['intercept']:.3f}")
    return JobOutput({"mse": err, "slope": slope}, [], {"mse": f"{err:.6f}"}, line)


def evaluate(cfg: EvaluateConfig, ctx: JobContext) -> JobOutput:
    line = json.loads(Path(cfg.model).read_text())
    pts = _points(ctx)
    err = mse([line["slope"] * x + line["intercept"] for x, _ in pts], [y for _, y in pts])
    return JobOutput({"mse": err}, [], {"mse": f"{err:.6f}"}, line)


def manifests(cfg: TrainConfig, target: k8s.Target, opts, *, data: str = "points"):
    c = k8s.container("toy", target.image, ["veil", "solutions", "toy", "train", "--data",
                                            f"/data/{data}", "--ridge", str(cfg.ridge)],
                      mounts={"data": "/data"}, gpus=target.gpus)
    template = k8s.pod_template([c], [k8s.pvc_volume("data", opts.pvc)],
                                project=target.project)
    return {"toy-train.yaml": k8s.job("toy-train", target.namespace, template,
                                      project=target.project)}


@dataclass
class ExportOptions:
    pvc: str = field(default="toy-data", metadata={"help": "The data PVC (mounted at /data)."})


SOLUTION = register(Solution(
    name="toy", report="TR-0000", description="A line fitted to points (tests only).",
    formats=[DatasetFormat("points", "points.csv: x,y per line", generate=generate,
                           check=check, read=read, sizes={"points": 50},
                           size_help={"points": "How many points."})],
    models=[ModelSpec("line", "y = a x + b", build=lambda: {"slope": 0.0, "intercept": 0.0})],
    metrics=[Metric("mse", mse, higher_is_better=False, description="mean squared error")],
    jobs=[JobSpec("train", "Fit the line.", TrainConfig, run=train, prepare=prepare,
                  metric="mse", out_required=True, data="a folder with points.csv",
                  k8s=manifests, k8s_options=ExportOptions),
          JobSpec("evaluate", "Score a fitted line.", EvaluateConfig, run=evaluate,
                  prepare=prepare, metric="mse")],
))
