"""The privacy frontier (issue 17): mechanism x ALPHA x identity-level measure x utility, side by
side in one run, against the issue's targets.

    .venv/bin/python benchmarks/privacy_frontier.py --task shapes [--preset quick|full]
    .venv/bin/python benchmarks/privacy_frontier.py --task faces --alphas 0.8,0.95
    .venv/bin/python benchmarks/privacy_frontier.py --task shapes --mechanisms noise,bottleneck
    .venv/bin/python benchmarks/privacy_frontier.py --task faces --merge A.json B.json

For each mechanism the task ships (`veil privacy tasks`: noise, bottleneck, adversarial, deep)
and each ALPHA, `veil.privacy._report.leakage` fits the Gaussian obfuscator on the mechanism,
retrains every attacker from scratch (whole-image decoders, the per-face decoder, attribute and
identity classifiers) and computes the two-input bound; the task metric is scored over
`--draws` noise draws. Then:

- the row "trusted": everything runs on the trusted side and only the output (class, boxes)
  leaves. Its leakage is what the output says, by construction; its cost is the tail's compute
  moved to the trusted side, measured here as (head + tail) / head on one frame;
- the speed of each mechanism: head + obfuscation + tail of the mechanism against head + tail
  of the baseline model, medians of interleaved runs on the task's bench input (1080p frame),
  on this machine's CPU.

Data: the benchmarks' generated sets (seed 0), written if missing: shapes 4,000 fit, 2,000
attack, 1,000 test images in benchmarks/out/privacy/data; faces 100 fit, 600 attack, 300 test in
benchmarks/out/faces/data. Writes benchmarks/out/privacy_frontier_TASK_PRESET.json (or --out)
and docs/img/privacy_frontier_TASK.png, and prints the table in Markdown. --merge combines the
JSON of several runs (say, one process per mechanism) into one table and plot.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path

import torch

from veil.privacy import bench, get_task, load_task_model, obfuscators
from veil.privacy.leakage import as_dict as _plain
from veil.privacy.leakage import leakage
from veil.progress import TqdmProgress

DATA = {"shapes": (Path("benchmarks/out/privacy/data"),
                   {"fit": 4000, "attack": 2000, "test": 1000}),
        "faces": (Path("benchmarks/out/faces/data"), {"fit": 100, "attack": 600, "test": 300})}
ALPHAS = {"shapes": (0.8, 0.9, 0.95), "faces": (0.8, 0.9, 0.95)}
UTILITY = {"shapes": (0.97, None), "faces": (0.95, 0.94)}  # mean, lower end of the 95% interval


def targets(task: str, row: dict) -> dict[str, bool]:
    """Each of the issue's leakage targets for this row: held or not."""
    out: dict[str, bool] = {}
    attrs = {a["name"]: a for a in row["attributes"]}
    two = row["two_input"]["median"]["1"] if row.get("two_input") else math.nan
    if task == "faces":
        out["face crop gain <= 2.0 dB"] = row["region"] is not None and \
            row["region"]["gain"] <= 2.0
        out["thumbnail gain over mean <= 3.7 dB"] = row["ladder"]["gain_over_mean"] <= 3.7
        out["two-identity test <= 0.60"] = two <= 0.60
        out["10-way identification <= 16.5%"] = row["identity"]["accuracy"] <= 0.165
        for a in ("skin", "hair"):
            out[f"{a} <= majority + 5"] = attrs[a]["over_majority"] <= 0.05
    else:
        out["position <= chance + 10"] = attrs["position"]["over_chance"] <= 0.10
        for a in ("colour", "texture"):
            out[f"{a} <= majority + 5"] = attrs[a]["over_majority"] <= 0.05
        out["two-input test <= 0.60"] = two <= 0.60
    return out


def against_baseline(rows: list[dict]) -> None:
    """Utility as a share of the baseline model's clean metric (what a user had before any
    mechanism), not of each mechanism's own clean figure; and whether the target holds."""
    base = next((r["utility"]["clean"] for r in rows if r["mechanism"] == "noise"), None)
    for r in rows:
        u = r["utility"]
        ref = base if base is not None else u["clean"]
        low = u["mean"] - (u["of_clean"] - u["low95_of_clean"]) * u["clean"]
        u["baseline_clean"] = ref
        u["of_baseline"] = u["mean"] / ref
        u["low95_of_baseline"] = low / ref


def utility_holds(task: str, row: dict) -> bool:
    mean, low = UTILITY[task]
    u = row["utility"]
    return u["of_baseline"] >= mean and (low is None or u["low95_of_baseline"] >= low)


def speed(task, mechanisms: list[str], obfs: dict, repeats: int) -> dict:
    """Per mechanism: its head + obfuscation + tail against the baseline's head + tail."""
    out = {}
    base = None
    for m in mechanisms:
        r = bench(task, obfs[m], repeats=repeats, obf_repeats=max(repeats, 20), mechanism=m)
        if m == "noise":
            base = r
        out[m] = {"head_ms": r.head.median_ms, "tail_ms": r.tail.median_ms,
                  "obfuscation_ms": r.obfuscation.median_ms,
                  "clean_ms": r.clean.median_ms, "private_ms": r.private.median_ms,
                  "activation_shape": r.activation_shape, "activation_bytes": r.activation_bytes}
    for v in out.values():
        if base is not None:
            v["adds_to_baseline"] = v["private_ms"] / base.clean.median_ms - 1
    if base is not None:
        out["trusted"] = {"trusted_compute_x": base.clean.median_ms / base.head.median_ms,
                          "head_ms": base.head.median_ms, "tail_ms": base.tail.median_ms}
    return out


def table(task: str, rows: list[dict], spd: dict) -> str:
    faces = task == "faces"
    against_baseline(rows)
    for r in rows:
        r["utility_holds"] = utility_holds(task, r)
    head = ["mechanism", "ALPHA", "utility: of baseline clean (95% low); own clean",
            "gain over mean image",
            "ladder place"]
    head += (["face-crop gain", "identity (10-way)", "skin over maj.", "hair over maj.",
              "occlusion over maj."] if faces else
             ["position over chance", "colour over maj.", "size over maj.",
              "texture over maj."])
    head += ["two-input median (k=1)", "k=64", "adds to head+tail", "targets held"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        a = {x["name"]: x for x in r["attributes"]}
        u = r["utility"]
        cells = [r["mechanism"], f"{r['alpha']:g}",
                 f"{u['of_baseline']:.1%} ({u['low95_of_baseline']:.1%}); {u['clean']:.3f}",
                 f"{r['ladder']['gain_over_mean']:+.2f} dB", r["ladder"]["place"]]
        if faces:
            cells += [f"{r['region']['gain']:+.2f} dB" if r["region"] else "-",
                      f"{r['identity']['accuracy']:.1%}",
                      *(f"{a[n]['over_majority'] * 100:+.1f}" for n in
                        ("skin", "hair", "occlusion"))]
        else:
            cells += [f"{a['position']['over_chance'] * 100:+.1f}",
                      *(f"{a[n]['over_majority'] * 100:+.1f}" for n in
                        ("colour", "size", "texture"))]
        two = r["two_input"]["median"]
        sp = spd.get(r["mechanism"], {}).get("adds_to_baseline")
        held = r["targets"]
        cells += [f"{two['1']:.3f}", f"{two['64']:.3f}",
                  "-" if sp is None else f"{sp:+.1%}",
                  ("utility OK; " if r["utility_holds"] else "utility MISSED; ")
                  + f"{sum(held.values())}/{len(held)}"]
        lines.append("| " + " | ".join(cells) + " |")
    t = spd.get("trusted")
    if t:
        n = len(head)
        cells = ["trusted (send only the output)", "-", "100% (exact)",
                 "0 over the output's guess (by construction)", "the public output"]
        cells += ["-"] * (n - len(cells) - 4)
        cells += ["-", "-", f"{t['trusted_compute_x']:.1f}x trusted-side compute",
                  "all, by construction"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(task: str, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    against_baseline(rows)
    measures = [("gain over mean image (dB)", lambda r: r["ladder"]["gain_over_mean"]),
                ("two-input test, median (k=1)", lambda r: r["two_input"]["median"]["1"])]
    if task == "faces":
        measures += [("10-way identification", lambda r: r["identity"]["accuracy"]),
                     ("face-crop gain (dB)",
                      lambda r: r["region"]["gain"] if r["region"] else math.nan)]
    else:
        pos = next(i for i, a in enumerate(rows[0]["attributes"]) if a["name"] == "position")
        measures += [("position over chance",
                      lambda r: r["attributes"][pos]["over_chance"])]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.6))
    for ax, (name, get) in zip(axes, measures, strict=True):
        for m in dict.fromkeys(r["mechanism"] for r in rows):
            pts = sorted((r["utility"]["of_baseline"], get(r), r["alpha"]) for r in rows
                         if r["mechanism"] == m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
            for x, y, a in pts:
                ax.annotate(f"{a:g}", (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.axvline(UTILITY[task][0], color="grey", ls=":", lw=1)
        ax.set_xlabel("utility, share of the baseline's clean")
        ax.set_title(name, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: leakage against utility per mechanism (labels: ALPHA)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="shapes", choices=sorted(DATA))
    p.add_argument("--mechanisms", default=None, help="comma-separated (default: all shipped)")
    p.add_argument("--alphas", default=None, help="comma-separated ALPHAs")
    p.add_argument("--preset", default="full", choices=("quick", "full", "smoke"))
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5, help="bench runs per mechanism")
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/out/frontier"))
    p.add_argument("--out", type=Path, default=None, help="the JSON to write")
    p.add_argument("--no-speed", action="store_true", help="skip the per-mechanism timing")
    p.add_argument("--merge", type=Path, nargs="+", help="combine these runs' JSON instead")
    p.add_argument("--speed-only", action="store_true",
                   help="only time the mechanisms, side by side (obfuscators at the first ALPHA)")
    args = p.parse_args()
    if args.merge:
        runs = [json.loads(f.read_text()) for f in args.merge]
        rows = [r for run in runs for r in run["rows"]]
        spd: dict = {}
        for run in runs:
            spd.update(run.get("speed") or {})
        base = spd.get("noise")
        for m, v in spd.items():  # against the baseline's head + tail, whichever run timed it
            if base and m != "trusted":
                v["adds_to_baseline"] = v["private_ms"] / base["clean_ms"] - 1
        plot(args.task, rows, Path(f"docs/img/privacy_frontier_{args.task}.png"))
        print(table(args.task, rows, spd))
        print("\nmerged: " + ", ".join(f"{f} ({run['preset']} preset, commit {run['commit']}, "
                                       f"{run['seconds'] / 60:.0f} min)"
                                       for f, run in zip(args.merge, runs, strict=True)))
        return
    task = get_task(args.task)
    mechanisms = args.mechanisms.split(",") if args.mechanisms else list(task.mechanisms)
    alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else ALPHAS[args.task]
    data, sizes = DATA[args.task]
    if not (data / "dataset.json").exists():
        task.generate(data, seed=0, sizes=sizes)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    torch.manual_seed(0)
    started = time.time()
    rows, obfs = [], {}
    wd = args.workdir / args.task
    with TqdmProgress() as progress:
        for m in mechanisms:
            for alpha in alphas if not args.speed_only else ():
                t0 = time.time()
                r = leakage(task, data, alpha, mechanism=m, preset=args.preset,
                            draws=args.draws, workdir=wd, progress=progress, log=print)
                row = _plain(r)
                row.pop("json_path", None)
                row["seconds"] = time.time() - t0
                for key in ("median", "p90"):
                    row["two_input"][key] = {str(k): v for k, v in
                                             row["two_input"][key].items()}
                row["targets"] = targets(args.task, row)
                rows.append(row)
                print(f"{m} ALPHA {alpha:g}: {row['seconds']:.0f} s", flush=True)
            model = load_task_model(task, "cpu", m)
            obfs[m] = obfuscators(task, data, [alphas[0]], workdir=wd, model=model,
                                  mechanism=m)[alphas[0]]
        spd = {} if args.no_speed else speed(task, mechanisms, obfs, args.repeats)
    out = {"task": args.task, "preset": args.preset, "commit": commit, "alphas": alphas,
           "mechanisms": mechanisms, "draws": args.draws, "rows": rows, "speed": spd,
           "threads": torch.get_num_threads(), "seconds": time.time() - started}
    path = args.out or Path(f"benchmarks/out/privacy_frontier_{args.task}_{args.preset}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    if rows:
        plot(args.task, rows, Path(f"docs/img/privacy_frontier_{args.task}.png"))
    print(table(args.task, rows, spd))
    print(f"\n{args.task}, {args.preset} preset, commit {commit}, "
          f"{(time.time() - started) / 60:.1f} min; wrote {path}")


if __name__ == "__main__":
    main()
