"""CTR prediction on Dask (TR-4904's "Training time comparison"), measured honestly on this machine.

    .venv/bin/python benchmarks/ctr.py [--quick] [--data DIR] [--rows 1000000]
        [--scale 50000,100000,...] [--mem-cap-mib 1024] [--mem-sizes 125000,250000,...]
        [--out benchmarks/out/ctr.json] [--markdown]

Data: Criteo-layout day files written by veil's generator (`veil.solutions.ctr.generate`) into a
temporary folder, or the day_15 / day_15_test of `--data DIR` (plain files). Every section runs in
this one invocation, so its ratios are measured side by side:

1. Fit time: the seed's forest (10 trees of depth 10 on the label and the 13 counts) on the same
   `--rows` rows by pandas-sklearn with n_jobs=1 (the seed's setup), pandas-sklearn with n_jobs=2
   (all of this machine's cores: the fair baseline) and dask-rf on a 2-worker LocalCluster (a
   forest per worker, merged); load, fit and predict times, the fit-time ratios, the test AUC of
   each and |AUC(dask-rf) - AUC(one forest)| (target <= 0.01). dask-lightgbm for context.
2. Scale: fit time of dask-rf and pandas-sklearn (n_jobs=1) at `--scale` row counts; a linear
   model t = a + b*n and a power law t = c*n^k fitted to all but the largest, each one's prediction
   of the largest and its error (the seed extrapolated linearly). Then the seed's arithmetic
   (47 min 21 s for 50M rows x 400 = "20 billion" rows, against 1 h 12 min 11 s: 262.39x) redone
   with day 15's real size (~180M rows: Criteo's 24 days hold about 4.37 billion).
3. Memory: each contender runs in a child process inside a memory cgroup (cgroup v1, limit
   `--mem-cap-mib`; the Dask cluster's worker processes are children, so the whole cluster is
   inside the cap; without cgroups: RLIMIT_AS, which is said) on day files of doubling size; the
   largest file each completes. Contenders: the seed's pandas code verbatim (read_csv of all 40
   columns), pandas with usecols (the 14 columns it uses, float32: the fair pandas user), veil's
   pandas-sklearn engine (its block reader) and dask-rf. Target: dask-rf completes a file >= 3x
   larger than the seed's pandas code. A child killed by the OOM killer counts as failed.

Writes `--out` (JSON); `--markdown` also prints the tables as markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# --- the seed's figures (TR-4904, "Training time comparison") ---------------------------------
SEED_SKLEARN_S = 47 * 60 + 21          # "47 minutes and 21 seconds": sklearn, 50M rows, 1 core
SEED_SKLEARN_ROWS = 50_000_000         # first_row_taken
SEED_DASK_S = 1 * 3600 + 12 * 60 + 11  # "1 hour, 12 minutes, and 11 seconds": RAPIDS-Dask
SEED_CLAIMED_ROWS = 20_000_000_000     # "all 20B rows in day15"
SEED_PRINTED_EXTRAPOLATION = "13 days, 3 hours, 40 minutes, and 11 seconds"
SEED_PRINTED_SECONDS = 13 * 86400 + 3 * 3600 + 40 * 60 + 11
SEED_PRINTED_RATIO = 262.39
SEED_DAY_BYTES = 45e9                  # "45GB" for day 15
CRITEO_ROWS = 4.37e9                   # Criteo's 24 days (about 4.37 billion rows)
CRITEO_DAYS = 24
DAY15_ROWS = 180_000_000               # day 15: about 180M rows
AUC_TARGET = 0.01
MEMORY_TARGET = 3.0

HEADER = ["col" + str(i) for i in range(1, 41)]  # the seed's names

DEFAULTS = {"rows": 1_000_000, "test_rows": 100_000,
            "scale": [50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000],
            "mem_sizes": [125_000, 250_000, 500_000, 1_000_000, 2_000_000, 4_000_000,
                          8_000_000],
            "mem_cap_mib": 1024, "mem_timeout": 300, "mem_trees": 3, "lgbm_rounds": 100,
            "repeats": 2, "mem_refine": 2}
QUICK = {"rows": 20_000, "test_rows": 5_000, "scale": [5_000, 10_000, 20_000, 40_000],
         "mem_sizes": [20_000], "mem_cap_mib": 1024, "mem_timeout": 90, "mem_trees": 3,
         "lgbm_rounds": 20, "repeats": 1, "mem_refine": 0}
CONTENDERS = ("pandas-seed", "pandas-usecols", "veil-pandas-sklearn", "dask-rf")


# --- formatting -------------------------------------------------------------------------------

def duration(s: float) -> str:
    """'13 d 3 h 40 min 0 s', '2 h 50 min 28 s', '47 min 21 s', '12.3 s'."""
    if s < 60:
        return f"{s:.1f} s"
    s = round(s)
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{d} d" if d else "", f"{h} h" if h or d else "", f"{m} min", f"{sec} s"]
    return " ".join(p for p in parts if p)


def rows_text(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v == round(v) else f"{v:.3g}{unit}"
    return f"{n:.0f}"


def table(headers: list[str], rows: list[list], markdown: bool = False) -> str:
    cells = [[str(c) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in cells)])


def say(line: str = "") -> None:
    print(line, flush=True)


# --- data -------------------------------------------------------------------------------------

def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def head(src: Path, dst: Path, rows: int) -> int:
    """Copy the first `rows` lines of `src` to `dst` (a smaller day file); the rows copied."""
    done = 0
    with open(src, "rb") as f, open(dst, "wb") as g:
        while done < rows and (chunk := f.read(1 << 24)):
            n = chunk.count(b"\n")
            if done + n > rows:
                pos = -1
                for _ in range(rows - done):
                    pos = chunk.index(b"\n", pos + 1)
                chunk, n = chunk[:pos + 1], rows - done
            g.write(chunk)
            done += n
    return done


def prepare(args, work: Path) -> tuple[Path, int, dict]:
    """The folder with day_15 (at least the largest row count any section needs) and
    day_15_test; its rows; the generator's manifest (or {})."""
    need = max([args.rows, *args.scale, *args.mem_sizes])
    if args.data:
        data = Path(args.data)
        for name in ("day_15", "day_15_test"):
            if not (data / name).is_file():
                sys.exit(f"{data / name} does not exist (a plain Criteo day file is needed)")
        rows = count_lines(data / "day_15")
        if rows < need:
            sys.exit(f"{data / 'day_15'} has {rows:,} rows; the row counts asked for need "
                     f"{need:,}")
        manifest = {}
        if (data / "dataset.json").is_file():
            manifest = json.loads((data / "dataset.json").read_text())
        return data, rows, manifest
    from veil.solutions.ctr import generate

    data = work / "criteo"
    t0 = time.perf_counter()
    generate(data, seed=args.seed, sizes={"rows": need, "test_rows": args.test_rows})
    manifest = json.loads((data / "dataset.json").read_text())
    say(f"generated {need:,} + {args.test_rows:,} rows ({manifest['bytes']['train'] / 1e6:,.0f}"
        f" MB) in {time.perf_counter() - t0:.1f} s: {data}")
    return data, need, manifest


# --- training through veil's engines ----------------------------------------------------------

def run_engine(data: Path, out: Path, engine: str, rows: int, *, n_jobs: int = 1,
               trees: int = 10, max_depth: int = 10, scheduler: str = "",
               seed: int = 0) -> dict:
    from veil.solutions.ctr import TrainConfig, train

    cfg = TrainConfig(data=str(data), out=str(out), engine=engine, rows=rows, trees=trees,
                      max_depth=max_depth, n_jobs=n_jobs, workers=2, seed=seed,
                      scheduler=scheduler if engine != "pandas-sklearn" else "")
    res = train(cfg)
    shutil.rmtree(out, ignore_errors=True)
    return {"engine": engine, "n_jobs": n_jobs if engine == "pandas-sklearn" else None,
            "rows": res.rows, "test_rows": res.test_rows, "trees": res.trees,
            "workers": res.workers, "seconds": dict(res.seconds),
            "auc": res.metrics["auc"], "accuracy": res.metrics["accuracy"],
            "logloss": res.metrics["logloss"],
            "majority_accuracy": res.metrics["majority_accuracy"]}


def section_compare(args, data: Path, work: Path, scheduler: str) -> dict:
    say(f"\n[1] fit time on the first {args.rows:,} rows: {args.trees} trees of depth "
        f"{args.max_depth}, the label and 13 counts (float32, missing as 0)")
    runs: dict = {}
    plan = [("pandas-sklearn n_jobs=1", "pandas-sklearn", 1, args.trees),
            ("pandas-sklearn n_jobs=2", "pandas-sklearn", 2, args.trees),
            ("dask-rf 2 workers", "dask-rf", 1, args.trees),
            ("dask-lightgbm 2 workers", "dask-lightgbm", 1, args.lgbm_rounds)]
    # untimed warm-up: imports in this process and on the workers, the file in the page cache
    for _name, engine, n_jobs, trees in plan:
        run_engine(data, work / "run", engine, min(args.rows, args.scale[0]), n_jobs=n_jobs,
                   trees=trees, max_depth=args.max_depth, scheduler=scheduler, seed=args.seed)
    for rep in range(args.repeats):  # round robin: a slow spell hits every engine alike
        for name, engine, n_jobs, trees in plan:
            r = run_engine(data, work / "run", engine, args.rows, n_jobs=n_jobs, trees=trees,
                           max_depth=args.max_depth, scheduler=scheduler, seed=args.seed)
            s = r["seconds"]
            say(f"  {name} (run {rep + 1}): load {s['load']:.2f} s, fit {s['fit']:.2f} s, "
                f"predict {s['predict']:.2f} s, AUC {r['auc']:.4f}")
            if name not in runs:
                runs[name] = {**r, "seconds_all": []}
            runs[name]["seconds_all"].append(s)
            runs[name]["seconds"] = {k: min(x[k] for x in runs[name]["seconds_all"])
                                     for k in s}
    one, two = runs["pandas-sklearn n_jobs=1"], runs["pandas-sklearn n_jobs=2"]
    rf = runs["dask-rf 2 workers"]
    ratios = {"n_jobs=1 / dask-rf": one["seconds"]["fit"] / rf["seconds"]["fit"],
              "n_jobs=2 / dask-rf": two["seconds"]["fit"] / rf["seconds"]["fit"],
              "n_jobs=1 / n_jobs=2": one["seconds"]["fit"] / two["seconds"]["fit"]}
    auc_diff = abs(rf["auc"] - one["auc"])
    return {"rows": args.rows, "trees": args.trees, "max_depth": args.max_depth,
            "repeats": args.repeats, "lightgbm_rounds": args.lgbm_rounds, "runs": runs,
            "fit_ratios": ratios,
            "auc_diff": auc_diff, "auc_diff_n_jobs_2": abs(rf["auc"] - two["auc"]),
            "auc_target": AUC_TARGET, "auc_held": auc_diff <= AUC_TARGET}


def compare_tables(c: dict, md: bool) -> str:
    rows = []
    fit1 = c["runs"]["pandas-sklearn n_jobs=1"]["seconds"]["fit"]
    fit2 = c["runs"]["pandas-sklearn n_jobs=2"]["seconds"]["fit"]
    for name, r in c["runs"].items():
        s = r["seconds"]
        rows.append([name, f"{r['trees']}", f"{s['load']:.2f}", f"{s['fit']:.2f}",
                     f"{s['predict']:.2f}", f"{fit1 / s['fit']:.2f}x", f"{fit2 / s['fit']:.2f}x",
                     f"{r['auc']:.4f}", f"{r['accuracy']:.4f}", f"{r['logloss']:.4f}"])
    head_ = ["engine", "trees", "load s", "fit s", "predict s", "fit speed-up vs n_jobs=1",
             "vs n_jobs=2", "AUC", "accuracy", "log-loss"]
    maj = next(iter(c["runs"].values()))["majority_accuracy"]
    verdict = "held" if c["auc_held"] else "MISSED"
    return (table(head_, rows, md) + "\n\n"
            f"{c['rows']:,} training rows, {next(iter(c['runs'].values()))['test_rows']:,} test "
            f"rows (majority-class accuracy {maj:.4f}); times: the best of "
            f"{c.get('repeats', 1)} run(s) each, after an untimed warm-up. dask-rf: each worker "
            f"fits its share of the trees on its half of the rows (cuML's algorithm), so it can "
            f"gain more than 2x over 2 cores; the AUC gap is what that costs. dask-lightgbm: "
            f"{c['lightgbm_rounds']} boosting rounds, for context.\n"
            f"AUC gap between dask-rf (forests of the 2 workers merged) and one forest "
            f"(n_jobs=1) on the same rows: {c['auc_diff']:.4f} (target <= {AUC_TARGET}: "
            f"{verdict})")


# --- scale ------------------------------------------------------------------------------------

def fit_models(ns: list[int], ts: list[float]) -> dict:
    """Linear (t = a + b*n) and power-law (t = c*n^k, log-log least squares) fits to all points
    but the largest; each one's prediction of the largest and relative error."""
    import numpy as np

    n, t = np.asarray(ns[:-1], float), np.asarray(ts[:-1], float)
    big, actual = float(ns[-1]), float(ts[-1])
    b, a = np.polyfit(n, t, 1)
    k, logc = np.polyfit(np.log(n), np.log(t), 1)
    lin = a + b * big
    pw = math.exp(logc) * big ** k
    prop = float(t[-1]) * big / float(n[-1])  # the seed's way: one measurement, scaled by rows
    return {"fitted_on": [int(x) for x in ns[:-1]], "largest": int(big), "actual_s": actual,
            "linear": {"a": float(a), "b": float(b), "predicted_s": float(lin),
                       "rel_error": float((lin - actual) / actual)},
            "power": {"c": float(math.exp(logc)), "k": float(k), "predicted_s": float(pw),
                      "rel_error": float((pw - actual) / actual)},
            "proportional": {"from_rows": int(n[-1]), "predicted_s": prop,
                             "rel_error": (prop - actual) / actual}}


def section_scale(args, data: Path, work: Path, scheduler: str) -> dict:
    say(f"\n[2] scale: fit time at {', '.join(f'{n:,}' for n in args.scale)} rows")
    out = {"rows": args.scale, "engines": {}}
    for name, engine in (("pandas-sklearn n_jobs=1", "pandas-sklearn"),
                         ("dask-rf 2 workers", "dask-rf")):
        fits, loads = [], []
        for n in args.scale:
            r = run_engine(data, work / "run", engine, n, n_jobs=1, trees=args.trees,
                           max_depth=args.max_depth, scheduler=scheduler, seed=args.seed)
            fits.append(r["seconds"]["fit"])
            loads.append(r["seconds"]["load"])
            say(f"  {name} {n:,} rows: fit {fits[-1]:.2f} s (load {loads[-1]:.2f} s)")
        out["engines"][name] = {"fit_s": fits, "load_s": loads,
                                "models": fit_models(args.scale, fits)}
    return out


def scale_tables(s: dict, md: bool) -> str:
    names = list(s["engines"])
    rows = [[f"{n:,}", *(f"{s['engines'][e]['fit_s'][i]:.2f}" for e in names)]
            for i, n in enumerate(s["rows"])]
    t1 = table(["rows", *(f"{e} fit s" for e in names)], rows, md)
    rows = []
    for e in names:
        m = s["engines"][e]["models"]
        lin, pw, pr = m["linear"], m["power"], m["proportional"]
        rows.append([e, f"{m['largest']:,}", f"{m['actual_s']:.2f}",
                     f"{lin['predicted_s']:.2f} ({100 * lin['rel_error']:+.1f}%)",
                     f"{pw['predicted_s']:.2f} ({100 * pw['rel_error']:+.1f}%)",
                     f"{pw['k']:.3f}",
                     f"{pr['predicted_s']:.2f} ({100 * pr['rel_error']:+.1f}%)"])
    t2 = table(["engine", "largest rows", "measured s", "linear a+b*n predicts",
                "power law c*n^k predicts", "k", "t(n') x n/n' (the seed's way) predicts"],
               rows, md)
    fitted = ", ".join(f"{n:,}" for n in s["engines"][names[0]]["models"]["fitted_on"])
    return f"{t1}\n\nModels fitted to {fitted} rows, predicting the largest:\n\n{t2}"


def seed_arithmetic(bytes_per_row: float | None = None, k: float | None = None) -> dict:
    """The seed's extrapolation from its own figures, and the same with day 15's real size."""
    factor = SEED_CLAIMED_ROWS / SEED_SKLEARN_ROWS
    extrapolated = SEED_SKLEARN_S * factor
    corrected_factor = DAY15_ROWS / SEED_SKLEARN_ROWS
    corrected = SEED_SKLEARN_S * corrected_factor
    out = {
        "sklearn_s": SEED_SKLEARN_S, "sklearn_rows": SEED_SKLEARN_ROWS, "dask_s": SEED_DASK_S,
        "claimed_rows": SEED_CLAIMED_ROWS, "factor": factor,
        "extrapolated_s": extrapolated, "extrapolated": duration(extrapolated),
        "printed_extrapolation": SEED_PRINTED_EXTRAPOLATION,
        "printed_minus_computed_s": SEED_PRINTED_SECONDS - extrapolated,
        "ratio": extrapolated / SEED_DASK_S, "printed_ratio": SEED_PRINTED_RATIO,
        "ratio_reproduced": round(extrapolated / SEED_DASK_S, 2) == SEED_PRINTED_RATIO,
        "criteo_rows": CRITEO_ROWS, "criteo_rows_per_day": CRITEO_ROWS / CRITEO_DAYS,
        "day15_rows": DAY15_ROWS, "corrected_factor": corrected_factor,
        "corrected_s": corrected, "corrected": duration(corrected),
        "corrected_ratio": corrected / SEED_DASK_S,
        "claimed_over_real_rows": SEED_CLAIMED_ROWS / DAY15_ROWS,
    }
    if bytes_per_row:
        out["bytes_per_row"] = bytes_per_row
        out["rows_in_45GB"] = SEED_DAY_BYTES / bytes_per_row
        out["bytes_per_row_if_20B"] = SEED_DAY_BYTES / SEED_CLAIMED_ROWS
    if k:
        out["power_k"] = k
        out["corrected_power_s"] = SEED_SKLEARN_S * corrected_factor ** k
        out["corrected_power_ratio"] = out["corrected_power_s"] / SEED_DASK_S
    return out


def seed_tables(a: dict, compare: dict | None, md: bool) -> str:
    t1 = table(["approach (seed, TR-4904)", "rows, as the seed says", "training time",
                "rows, corrected", "training time, corrected"], [
        ["scikit-learn, 1 core, first 50M rows of day 15 (measured)",
         rows_text(a["sklearn_rows"]), duration(a["sklearn_s"]), rows_text(a["sklearn_rows"]),
         duration(a["sklearn_s"])],
        ["RAPIDS-Dask, 3 GPUs, all of day 15 (measured)", rows_text(a["claimed_rows"]),
         duration(a["dask_s"]), f"~{rows_text(a['day15_rows'])}", duration(a["dask_s"])],
        ["scikit-learn, all of day 15 (linear extrapolation)",
         f"{rows_text(a['claimed_rows'])} (x{a['factor']:.0f})", duration(a["extrapolated_s"]),
         f"~{rows_text(a['day15_rows'])} (x{a['corrected_factor']:.1f})",
         duration(a["corrected_s"])],
        ["Dask's speed-up", "", f"{a['ratio']:.2f}x", "", f"{a['corrected_ratio']:.2f}x"],
    ], md)
    notes = [
        f"{duration(a['sklearn_s'])} = {a['sklearn_s']} s x {a['factor']:.0f} = "
        f"{a['extrapolated_s']:,.0f} s = {a['extrapolated']}; / {a['dask_s']} s = "
        f"{a['ratio']:.2f}x (the seed prints {a['printed_ratio']}: "
        f"{'reproduced' if a['ratio_reproduced'] else 'NOT reproduced'}; it prints the time as "
        f"\"{a['printed_extrapolation']}\", {a['printed_minus_computed_s']:+.0f} s off).",
        f"Criteo's {CRITEO_DAYS} days hold about {rows_text(a['criteo_rows'])} rows "
        f"(~{rows_text(a['criteo_rows_per_day'])} a day): day 15 is ~{rows_text(a['day15_rows'])}"
        f" rows, not 20B ({a['claimed_over_real_rows']:.0f}x fewer); corrected: "
        f"{a['sklearn_s']} s x {a['corrected_factor']:.1f} = {a['corrected']}, "
        f"{a['corrected_ratio']:.2f}x against 3 GPUs.",
    ]
    if "rows_in_45GB" in a:
        notes.append(f"The seed's 45 GB at {a['bytes_per_row']:.0f} bytes a row (the Criteo "
                     f"layout, as generated here) is ~{rows_text(a['rows_in_45GB'])} rows; 20B "
                     f"rows would be {a['bytes_per_row_if_20B']:.2f} bytes a row.")
    if "power_k" in a:
        notes.append(f"With the power law measured here for one-core scikit-learn (k = "
                     f"{a['power_k']:.3f}) instead of a straight line: "
                     f"{duration(a['corrected_power_s'])}, {a['corrected_power_ratio']:.2f}x.")
    out = t1 + "\n\n" + "\n".join(f"- {n}" for n in notes)
    if compare:
        rows = []
        fit1 = compare["runs"]["pandas-sklearn n_jobs=1"]["seconds"]["fit"]
        for name, r in compare["runs"].items():
            hw = ("1 core" if name.endswith("n_jobs=1") else
                  "2 cores" if "n_jobs=2" in name else "2 worker processes x 1 thread")
            rows.append([f"{name} ({hw})", f"{r['rows']:,}", duration(r["seconds"]["fit"]),
                         f"{fit1 / r['seconds']['fit']:.2f}x", f"{r['auc']:.4f}"])
        out += ("\n\nveil, measured on this machine in the same run (same rows for every "
                "engine, nothing extrapolated):\n\n"
                + table(["approach (veil)", "rows", "fit time", "speed-up vs 1 core", "AUC"],
                        rows, md))
    return out


# --- memory -----------------------------------------------------------------------------------

def _cgroup_root() -> Path | None:
    """Where to make the benchmark's memory cgroup: under this process's own memory cgroup
    (so the machine's accounting above it still applies), else the v1 hierarchy's root."""
    base = Path("/sys/fs/cgroup/memory")
    if not (base / "cgroup.procs").is_file() or os.geteuid() != 0:
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                own = base / path.lstrip("/")
                if own.is_dir() and os.access(own, os.W_OK):
                    return own
    except OSError:
        pass
    return base if os.access(base, os.W_OK) else None


def _cgroup_kill_all(cg: Path) -> None:
    """End the processes this benchmark started that are still in its cgroup (by pid)."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _oom_kills(cg: Path) -> int:
    try:
        for line in (cg / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_capped(spec: dict, cap: int, timeout: float) -> dict:
    """Run one contender (`--_child`) in a child process under a memory cap of `cap` bytes."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", json.dumps(spec)]
    root = _cgroup_root()
    cg, preexec, how = None, None, "rlimit-as"
    if root is not None:
        cg = root / f"veil-bench-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        try:
            cg.mkdir()
            (cg / "memory.limit_in_bytes").write_text(str(cap))
            if (cg / "memory.memsw.limit_in_bytes").exists():
                (cg / "memory.memsw.limit_in_bytes").write_text(str(cap))
            how = "cgroup-v1"
        except OSError as e:
            say(f"  (cgroup {cg} unusable: {e}; falling back to RLIMIT_AS)")
            with contextlib.suppress(OSError):
                cg.rmdir()
            cg = None
    if cg is not None:
        # the child joins the cgroup before it runs any Python: sh writes its own pid, then execs
        argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cg / "cgroup.procs"), *cmd]
    else:
        argv = cmd

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    result = {"contender": spec["kind"], "rows": spec["rows"], "cap_bytes": cap, "how": how}
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, preexec_fn=preexec)
        timed_out = oom_stop = False
        while True:  # wait, watching the cgroup: the first OOM kill ends the run (failed)
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if cg is not None and _oom_kills(cg):
                    oom_stop = True  # e.g. a Dask worker: its tasks would wait for it forever
                elif time.perf_counter() - t0 < timeout:
                    continue
                else:
                    timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if cg is not None:
                    _cgroup_kill_all(cg)
                out, err = proc.communicate()
                break
        result["wall_s"] = time.perf_counter() - t0
        result["returncode"] = proc.returncode
        if cg is not None:
            result["oom_kills"] = _oom_kills(cg)
            result["cgroup_peak_bytes"] = int((cg / "memory.max_usage_in_bytes").read_text())
            result["cgroup_failcnt"] = int((cg / "memory.failcnt").read_text())
    finally:
        if cg is not None:
            _cgroup_kill_all(cg)
            for _ in range(50):
                try:
                    cg.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if lines and proc.returncode == 0 and not result.get("oom_kills"):
        result.update(json.loads(lines[-1][len("RESULT "):]))
        result["status"] = "ok"
    elif oom_stop or result.get("oom_kills") or (proc.returncode == -signal.SIGKILL
                                                 and not timed_out):
        result["status"] = "oom-killed"
    elif timed_out:
        result["status"] = "timeout"
    else:
        tail = [x for x in err.strip().splitlines() if x.strip()]
        result["status"] = "failed"
        result["error"] = tail[-1][:300] if tail else f"exit {proc.returncode}"
    if result["status"] != "ok" and err.strip():
        result["stderr_tail"] = err.strip().splitlines()[-1][:300]
    return result


def _vm_hwm() -> int:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which keeps the peak
    of the process that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(spec: dict) -> None:
    """One memory contender, in its own (capped) process; prints RESULT {json}."""
    kind, data, trees, depth = spec["kind"], Path(spec["data"]), spec["trees"], spec["depth"]
    t0 = time.perf_counter()
    out: dict = {}
    if kind in ("pandas-seed", "pandas-usecols"):
        import numpy as np
        import pandas as pd
        from sklearn import metrics
        from sklearn.ensemble import RandomForestClassifier

        def load(path: Path):
            if kind == "pandas-seed":  # the seed's cell, verbatim but for the file name
                df = pd.read_csv(path, delimiter="\t", names=HEADER)
                df_sliced = df.iloc[:, 0:14]
                y = df_sliced.pop("col1")
                return df_sliced.astype(np.float32).fillna(0), y
            df = pd.read_csv(path, delimiter="\t", names=HEADER[:14], usecols=range(14),
                             dtype=np.float32)
            y = df.pop("col1")
            return df.fillna(0), y

        x, y = load(data / "day_15")
        t1 = time.perf_counter()
        model = RandomForestClassifier(max_depth=depth, n_estimators=trees,
                                       random_state=0).fit(x, y)
        t2 = time.perf_counter()
        rows = len(y)
        del x, y
        tx, ty = load(data / "day_15_test")
        out["accuracy"] = float(metrics.accuracy_score(ty, model.predict(tx)))
        out["seconds"] = {"load": t1 - t0, "fit": t2 - t1, "predict": time.perf_counter() - t2}
        out["rows_trained"] = rows
        out["peak_rss_bytes"] = _vm_hwm()
    else:
        from veil.solutions.ctr import TrainConfig, train

        engine = "pandas-sklearn" if kind == "veil-pandas-sklearn" else "dask-rf"
        with tempfile.TemporaryDirectory(prefix="veil-ctr-child-") as tmp:
            res = train(TrainConfig(data=str(data), out=tmp, engine=engine, trees=trees,
                                    max_depth=depth, workers=2, n_jobs=1))
        out["accuracy"] = res.metrics["accuracy"]
        out["auc"] = res.metrics["auc"]
        out["seconds"] = dict(res.seconds)
        out["rows_trained"] = res.rows
        # the engine's ru_maxrss figures: a process started by exec keeps the peak of the one
        # that forked it, so these overstate; the cgroup's peak is the measure that counts
        out["engine_peak_rss_bytes"] = res.peak_rss_bytes
        out["peak_rss_bytes"] = _vm_hwm()  # this (client) process
    print("RESULT " + json.dumps(out), flush=True)


def section_memory(args, source: Path, work: Path) -> dict:
    cap = args.mem_cap_mib * 2**20
    say(f"\n[3] memory: the largest day file each contender completes (load, fit, predict) "
        f"under a {args.mem_cap_mib} MiB cap; files of {', '.join(map(rows_text, args.mem_sizes))}"
        f" rows, then {args.mem_refine} bisection step(s) between the last file completed and "
        f"the first failed")
    folders: dict[int, Path] = {}
    out: dict = {"cap_mib": args.mem_cap_mib, "sizes": args.mem_sizes, "trees": args.mem_trees,
                 "max_depth": args.max_depth, "contenders": args.contenders,
                 "refine_steps": args.mem_refine, "runs": [],
                 "doubling": {}, "largest": dict.fromkeys(CONTENDERS, 0),
                 "first_failed": dict.fromkeys(CONTENDERS)}

    def attempt(kind: str, n: int, refine: bool) -> bool:
        if n not in folders:
            d = work / f"mem-{n}"
            d.mkdir(parents=True, exist_ok=True)
            head(source / "day_15", d / "day_15", n)
            os.link(source / "day_15_test", d / "day_15_test")
            folders[n] = d
        spec = {"kind": kind, "data": str(folders[n]), "rows": n, "trees": args.mem_trees,
                "depth": args.max_depth}
        r = run_capped(spec, cap, args.mem_timeout)
        r["refine"] = refine
        out["runs"].append(r)
        out["how"] = r["how"]
        peak = r.get("peak_rss_bytes")
        extra = (f", peak RSS {peak / 2**20:,.0f} MiB" if peak else "") + (
            f", cgroup peak {r['cgroup_peak_bytes'] / 2**20:,.0f} MiB"
            if "cgroup_peak_bytes" in r else "")
        say(f"  {kind} {n:,} rows{' (bisection)' if refine else ''}: {r['status']} in "
            f"{r['wall_s']:.1f} s{extra}"
            + (f" ({r.get('error') or r.get('stderr_tail', '')})"
               if r["status"] not in ("ok", "oom-killed") else ""))
        if r["status"] != "ok":
            failed = out["first_failed"][kind]
            if failed is None or n < failed["rows"]:
                out["first_failed"][kind] = {"rows": n, "status": r["status"]}
            return False
        out["largest"][kind] = max(out["largest"][kind], n)
        return True

    try:
        for kind in args.contenders:
            for n in args.mem_sizes:
                if not attempt(kind, n, False):
                    break
            failed = out["first_failed"][kind]
            out["doubling"][kind] = {"completed": out["largest"][kind],
                                     "failed": failed["rows"] if failed else None}
            for _ in range(args.mem_refine if failed else 0):
                lo, hi = out["largest"][kind], out["first_failed"][kind]["rows"]
                mid = int(round((lo + hi) / 2, -3))
                if not lo < mid < hi:
                    break
                attempt(kind, mid, True)
                for n in [n for n in folders if n not in args.mem_sizes]:
                    shutil.rmtree(folders.pop(n), ignore_errors=True)
    finally:
        for d in folders.values():
            shutil.rmtree(d, ignore_errors=True)
    seed_max = out["largest"]["pandas-seed"]
    dask_max = out["largest"]["dask-rf"]
    seed_fail = (out["first_failed"]["pandas-seed"] or {}).get("rows")
    dask_fail = (out["first_failed"]["dask-rf"] or {}).get("rows")
    out["dask_over_seed"] = dask_max / seed_max if seed_max else None
    # the true limits lie between the largest completed and the first failed: their ratio too
    out["dask_over_seed_bounds"] = (
        [dask_max / seed_fail if seed_fail else None,
         dask_fail / seed_max if dask_fail and seed_max else None])
    out["dask_over_usecols"] = (dask_max / out["largest"]["pandas-usecols"]
                                if out["largest"]["pandas-usecols"] else None)
    out["target"] = MEMORY_TARGET
    # undetermined (None) when the seed's code completed every size: the sizes were too small
    out["held"] = (None if out["first_failed"]["pandas-seed"] is None or not seed_max
                   or "dask-rf" not in args.contenders
                   else dask_max >= MEMORY_TARGET * seed_max)
    out["open_ended"] = {k: out["first_failed"][k] is None for k in args.contenders}
    return out


def memory_tables(m: dict, md: bool) -> str:
    rows = []
    for kind in m["contenders"]:
        mine = [r for r in m["runs"] if r["contender"] == kind]
        ok = [r for r in mine if r["status"] == "ok"]
        last = max(ok, key=lambda r: r["rows"]) if ok else None
        first = mine[0] if mine and "cgroup_peak_bytes" in mine[0] else None
        failed = m["first_failed"][kind]
        dbl = m.get("doubling", {}).get(kind)
        pts = sorted((r["rows"], r["cgroup_peak_bytes"]) for r in ok if "cgroup_peak_bytes" in r)
        # between the largest completed and the largest at most half of it (a stable span)
        below = [q for q in pts if pts and q[0] <= pts[-1][0] / 2]
        slope = ((pts[-1][1] - below[-1][1]) / 2**20 / ((pts[-1][0] - below[-1][0]) / 1e6)
                 if below else None)
        rows.append([
            kind,
            (f"{rows_text(dbl['completed']) if dbl['completed'] else 'none'} / "
             f"{rows_text(dbl['failed']) if dbl['failed'] else '-'}") if dbl else "",
            rows_text(m["largest"][kind]) if m["largest"][kind] else "none",
            (f"{rows_text(failed['rows'])} ({failed['status']})" if failed
             else f"none up to {rows_text(m['sizes'][-1])}"),
            (f"{first['cgroup_peak_bytes'] / 2**20:,.0f} ({rows_text(first['rows'])})"
             if first else ""),
            f"{last['cgroup_peak_bytes'] / 2**20:,.0f}" if last and "cgroup_peak_bytes" in last
            else "",
            f"{slope:,.0f}" if slope is not None else "",
            f"{last['seconds']['fit']:.1f}" if last else "",
            f"{m['largest'][kind] / m['largest']['pandas-seed']:.2f}x"
            if m["largest"]["pandas-seed"] and m["largest"][kind] else ""])
    how = {"cgroup-v1": "a cgroup v1 memory limit (memory and memory+swap) on the child process "
           "and everything it starts", "rlimit-as": "RLIMIT_AS on the child process"}
    ratio, usecols = m["dask_over_seed"], m["dask_over_usecols"]
    ratio_t = "n/a" if ratio is None else f"{ratio:.2f}x"
    usecols_t = "n/a" if usecols is None else f"{usecols:.2f}x"
    verdict = ("undetermined: the seed's code completed every size tried" if m["held"] is None
               else "held" if m["held"] else "MISSED")
    bound = (" (at least: dask-rf completed every size tried)"
             if m["open_ended"].get("dask-rf") else "")
    lo, hi = m.get("dask_over_seed_bounds") or (None, None)
    bounds = (f"; the true limits' ratio lies between {lo:.2f}x and {hi:.2f}x (largest "
              f"completed against first failed)" if lo and hi else "")
    return (table(["contender", "doubling: completed / failed", "largest file completed",
                   "first failure",
                   "cgroup peak MiB at the smallest", "at the largest completed",
                   "MiB per 1M more rows (largest completed vs half its size)", "fit s at largest",
                   "vs the seed's code"],
                  rows, md)
            + f"\n\nCap {m['cap_mib']} MiB via {how.get(m.get('how', ''), m.get('how'))}; "
            f"{m['trees']} trees of depth {m['max_depth']} (each process builds one tree at a "
            f"time, so the peak does not depend on the number of trees; fewer keep this short); "
            f"load, fit and predict the test file; an OOM-killed or timed-out run counts as "
            f"failed. Sizes double from {rows_text(m['sizes'][0])}, then "
            f"{m.get('refine_steps', 0)} bisection step(s) narrow each contender's limit.\n"
            f"dask-rf / the seed's pandas code: {ratio_t}{bound} (target >= "
            f"{MEMORY_TARGET:.0f}x: {verdict}){bounds}; dask-rf / pandas with usecols: "
            f"{usecols_t}.")


# --- main -------------------------------------------------------------------------------------

def print_tables(result: dict, markdown: bool) -> None:
    for md in (False, True) if markdown else (False,):
        say("\n" + ("## markdown (docs/benchmarks.md)\n" if md else ""))
        h = "### " if md else "== "
        if "compare" in result:
            say(f"{h}Fit time, side by side\n\n{compare_tables(result['compare'], md)}\n")
        if "scale" in result:
            say(f"{h}Scale\n\n{scale_tables(result['scale'], md)}\n")
        say(f"{h}The seed's arithmetic, and corrected\n\n"
            f"{seed_tables(result['seed'], result.get('compare'), md)}\n")
        if "memory" in result:
            say(f"{h}Memory under a cap\n\n{memory_tables(result['memory'], md)}\n")


def ints(text: str) -> list[int]:
    return sorted(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, < 60 s)")
    p.add_argument("--data", default="", help="a folder with day_15 and day_15_test "
                   "(default: generate into a temporary folder)")
    p.add_argument("--rows", type=int, help="rows of the fit-time comparison")
    p.add_argument("--test-rows", type=int, help="rows of the generated day_15_test")
    p.add_argument("--scale", type=ints, help="row counts of the scale section (>= 4)")
    p.add_argument("--mem-sizes", type=ints, help="day-file sizes (rows) of the memory section")
    p.add_argument("--mem-cap-mib", type=int, help="the memory cap, MiB")
    p.add_argument("--mem-timeout", type=float, help="seconds before a capped run counts as "
                   "failed")
    p.add_argument("--contenders", type=lambda t: [c for c in CONTENDERS if c in t.split(",")],
                   default=list(CONTENDERS), help="memory section: which of "
                   + ", ".join(CONTENDERS))
    p.add_argument("--mem-refine", type=int, help="bisection steps after the doubling, "
                   "between the last file completed and the first failed")
    p.add_argument("--mem-trees", type=int, help="trees in the memory section (one core "
                   "builds one tree at a time, so the peak does not depend on it; time does)")
    p.add_argument("--lgbm-rounds", type=int, help="dask-lightgbm's boosting rounds")
    p.add_argument("--repeats", type=int, help="timed runs of each engine in section 1 (the "
                   "best is reported)")
    p.add_argument("--trees", type=int, default=10)
    p.add_argument("--max-depth", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma-separated sections to skip: "
                   "compare,scale,memory")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/ctr.json"))
    p.add_argument("--markdown", action="store_true", help="also print markdown tables")
    p.add_argument("--render", type=Path, help="print the tables of an earlier run's JSON "
                   "(nothing is measured)")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        child(json.loads(args._child))
        return 0
    if args.render:
        print_tables(json.loads(args.render.read_text()), args.markdown)
        return 0
    preset = QUICK if args.quick else DEFAULTS
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if len(args.scale) < 4:
        p.error("--scale needs at least 4 row counts (3 to fit, the largest to predict)")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    # a TERM (or an INT, where a background shell ignores it) unwinds through the finally
    # blocks: the capped child is killed, its cgroup removed, the temporary files deleted
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="veil-ctr-bench-"))
    result: dict = {"quick": args.quick, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release()}}
    try:
        data, total_rows, manifest = prepare(args, work)
        result["data"] = {"folder": str(data) if args.data else "(generated)",
                          "rows": total_rows, "test_rows": count_lines(data / "day_15_test"),
                          "bytes": (data / "day_15").stat().st_size,
                          "oracle": manifest.get("oracle")}
        if "compare" not in skip or "scale" not in skip:
            from veil.solutions.ctr import cluster

            with cluster(workers=2) as client:
                address = client.scheduler.address
                say(f"a local Dask cluster of 2 worker processes at {address} (shared by "
                    "sections 1 and 2; train() connects to it)")
                if "compare" not in skip:
                    result["compare"] = section_compare(args, data, work, address)
                if "scale" not in skip:
                    result["scale"] = section_scale(args, data, work, address)
        k = None
        if "scale" in result:
            k = result["scale"]["engines"]["pandas-sklearn n_jobs=1"]["models"]["power"]["k"]
        result["seed"] = seed_arithmetic(result["data"]["bytes"] / total_rows, k)
        if "memory" not in skip:
            result["memory"] = section_memory(args, data, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = time.perf_counter() - t_start

    print_tables(result, args.markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
