"""Data-parallel lane-detection training on this machine (TR-4896's "Performance evaluation").

    .venv/bin/python benchmarks/lane_training.py [--train-clips 400] [--test-clips 100]
                                                 [--epochs 16] [--scaling-epochs 3] [--seed 7]

Generates a TuSimple-format data set (seed 7: not the data the decoding thresholds were chosen
on), then:

1. scaling: the light model for `--scaling-epochs` epochs with 1 process x 1 thread, then 2
   processes x 1 thread (torchrun, gloo), same per-process batch (8) and loader settings; images/s
   of the epochs after the first, side by side. Efficiency = throughput(2) / (2 x throughput(1));
   target >= 0.8, with input wait < 5% of step time;
2. accuracy: the light model, 1 process with 2 threads, scored on the test labels after every
   epoch; the training time (scoring excluded) until TuSimple accuracy >= 0.95.

Writes benchmarks/out/lane_training.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from veil.solutions.lane_detection import TrainConfig, generate, launch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-clips", type=int, default=400)
    p.add_argument("--test-clips", type=int, default=100)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--scaling-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/lane_training.json"))
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="veil-lane-bench-"))
    data = work / "tusimple"
    t0 = time.perf_counter()
    generate(data, seed=args.seed, train_clips=args.train_clips, test_clips=args.test_clips)
    print(f"generated {args.train_clips} + {args.test_clips} frames in "
          f"{time.perf_counter() - t0:.1f} s ({data})", flush=True)
    result: dict = {"train_clips": args.train_clips, "test_clips": args.test_clips,
                    "seed": args.seed, "scaling": {}, "accuracy": {}}

    for procs in (1, 2):
        cfg = TrainConfig(data=str(data), out=str(work / f"scale-{procs}"),
                          epochs=args.scaling_epochs, batch_size=8, threads=1,
                          num_workers=args.num_workers, use_workers=args.num_workers > 0,
                          use_val=False)
        res = launch(cfg, procs, log=lambda m, n=procs: print(f"  [{n} proc] {m}",
                                                                flush=True))
        rows = res.metrics["epochs"][1:] or res.metrics["epochs"]
        result["scaling"][str(procs)] = {
            "images_per_s": statistics.fmean(r["images_per_s"] for r in rows),
            "input_wait": statistics.fmean(r["input_wait"] for r in rows),
            "epochs": res.metrics["epochs"], "wall_s": res.seconds}
    one, two = (result["scaling"][k]["images_per_s"] for k in ("1", "2"))
    eff = two / (2 * one)
    waits = [result["scaling"][k]["input_wait"] for k in ("1", "2")]
    result["scaling"]["efficiency"] = eff
    print(f"\n[scaling] 1 x 1 thread: {one:.1f} images/s; 2 x 1 thread: {two:.1f} images/s; "
          f"efficiency {eff:.3f} (target >= 0.8: {'MET' if eff >= 0.8 else 'NOT MET'}); input "
          f"wait {100 * waits[0]:.1f}% / {100 * waits[1]:.1f}% (target < 5%: "
          f"{'MET' if max(waits) < 0.05 else 'NOT MET'})", flush=True)

    cfg = TrainConfig(data=str(data), out=str(work / "accuracy"), epochs=args.epochs,
                      batch_size=8, threads=2, num_workers=args.num_workers,
                      use_workers=args.num_workers > 0, use_val=True, val_every=1)
    res = launch(cfg, 1, log=lambda m: print(f"  {m}", flush=True))
    elapsed, reached = 0.0, None
    for r in res.metrics["epochs"]:
        elapsed += r["seconds"]
        if reached is None and r.get("test_accuracy", 0) >= 0.95:
            reached = {"epoch": r["epoch"], "train_seconds": elapsed,
                       "accuracy": r["test_accuracy"]}
    result["accuracy"] = {"epochs": res.metrics["epochs"], "final": res.metrics["test"],
                          "reached_0.95": reached}
    final = res.metrics["test"]
    print(f"\n[accuracy] final after {args.epochs} epochs: Accuracy {final['Accuracy']:.4f}, "
          f"FP {final['FP']:.4f}, FN {final['FN']:.4f}, F1 {final['F1']:.4f}")
    if reached:
        print(f"accuracy >= 0.95 first after epoch {reached['epoch']}: "
              f"{reached['train_seconds']:.0f} s of training ({reached['accuracy']:.4f})")
    else:
        print("accuracy >= 0.95: NOT reached")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    sys.exit(0)


if __name__ == "__main__":
    main()
