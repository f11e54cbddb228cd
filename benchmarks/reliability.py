"""Reliability (issue 15): the audit of veil as an attacker and a careless user would use it,
repeated at a modest scale against the real components, with every outcome counted.

    .venv/bin/python benchmarks/reliability.py [--only data,sched,...]

Runs each area's script (benchmarks/reliability_AREA.py: data, sched, serve, solutions,
privacy) as its own process, in a fresh veil home; each prints its table and, as its last line,
a JSON object {"area", "rows": [{"check", "tried", "held", "notes"}]}. This script prints one
table of all rows and the totals, and writes benchmarks/out/reliability.json. A row whose
trials did not all hold is shown as such, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AREAS = ["data", "sched", "serve", "solutions", "privacy"]


def run_area(area: str) -> dict:
    script = HERE / f"reliability_{area}.py"
    with tempfile.TemporaryDirectory(prefix=f"veil-rel-{area}-") as tmp:
        env = {**os.environ, "VEIL_HOME": str(Path(tmp) / "home")}
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=env, cwd=HERE.parent)
        seconds = time.monotonic() - t0
    lines = p.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        result = {"area": area, "rows": [], "failed": f"exit {p.returncode}: " + " | ".join(tail)}
    result["seconds"] = round(seconds, 1)
    result["exit"] = p.returncode
    result["table"] = "\n".join(lines[:-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(AREAS), help="comma-separated areas")
    args = ap.parse_args()
    areas = [a for a in args.only.split(",") if a]
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(f"error: no area {unknown[0]!r}: choose from {', '.join(AREAS)}", file=sys.stderr)
        return 2
    results = []
    for area in areas:
        print(f"== {area}", flush=True)
        r = run_area(area)
        print(r["table"])
        if "failed" in r:
            print(f"   the script itself failed: {r['failed']}")
        print(f"   ({r['seconds']} s)\n", flush=True)
        results.append(r)

    width = max([len(row["check"]) for r in results for row in r["rows"]] + [5])
    print(f"{'area':<10} {'check':<{width}} {'tried':>6} {'held':>6}")
    tried = held = 0
    for r in results:
        for row in r["rows"]:
            mark = "" if row["held"] == row["tried"] else "   <-- did not all hold"
            print(f"{r['area']:<10} {row['check']:<{width}} {row['tried']:>6} {row['held']:>6}"
                  f"{mark}")
            tried += row["tried"]
            held += row["held"]
    print(f"{'total':<10} {'':<{width}} {tried:>6} {held:>6}")
    out = HERE / "out" / "reliability.json"
    out.parent.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE.parent).stdout.strip()
    out.write_text(json.dumps({"commit": commit, "tried": tried, "held": held,
                               "areas": [{k: v for k, v in r.items() if k != "table"}
                                         for r in results]}, indent=2) + "\n")
    print(f"wrote {out}")
    ok = held == tried and all("failed" not in r for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
