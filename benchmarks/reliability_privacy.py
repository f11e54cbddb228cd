"""Reliability (issue 15), confidential inference: bad values given to `veil privacy ...` and
damaged saved obfuscators, each tried as a real `veil` process and counted.

    .venv/bin/python benchmarks/reliability_privacy.py [--every N] [--budget SECONDS]

The cases are the two tables of tests/test_hardening_privacy.py (which runs all of them
in-process): CASES, bad values of every `veil privacy` command, and DAMAGES, edits of a saved
obfuscator's two files, given to `veil privacy evaluate --obfuscator`. Each process starts
torch (about 2.5 CPU seconds), so by default every 3rd case of each table runs (`--every 1`:
all of them), and no new trial starts after `--budget` seconds; trials not run are not counted.

A trial held when the process exited with the table's code, printed one line on stderr starting
`error: ` and containing the table's text, no traceback and nothing on stdout, created no veil
home, changed nothing in the data set, the saved obfuscator or its own folder, and (for the
booby-trapped tensors.pt) ran no code. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.badinput import home_state  # noqa: E402
from tests.test_hardening_privacy import CASES, DAMAGES, SIZES, TASK  # noqa: E402

from veil.privacy import fit_one  # noqa: E402


def _group(case) -> str:
    name, damage = case[0], case[1]
    return "config.json" if "config" in name or "_config" in damage.__qualname__ \
        else "tensors.pt"


def trial(argv: list[str], match: str, code: int, area: Path, folder: Path) -> tuple[bool, str]:
    """Run `veil privacy ARGV` in `folder`; (held, why not)."""
    before = home_state(folder)
    env = {**os.environ, "VEIL_HOME": str(folder / "home")}
    p = subprocess.run([sys.executable, "-m", "veil", "privacy", *argv], capture_output=True,
                       text=True, env=env, cwd=folder, timeout=300)
    lines = p.stderr.strip().splitlines()
    problems = []
    if p.returncode != code:
        problems.append(f"exit {p.returncode}, not {code}")
    if "Traceback" in p.stderr:
        problems.append("a traceback")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"{len(lines)} lines on stderr")
    elif match.lower() not in lines[0].lower():
        problems.append(f"said {lines[0][:120]!r}")
    if p.stdout:
        problems.append("output on stdout")
    if (folder / "home").exists():
        problems.append("created a veil home")
    if home_state(folder) != before:
        problems.append("changed its folder")
    if any(folder.rglob("code-ran")):
        problems.append("ran the code in tensors.pt")
    return not problems, "; ".join(problems)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=3, help="run every Nth case of each table")
    ap.add_argument("--budget", type=float, default=110.0,
                    help="start no trial after this many seconds")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    if args.every < 1 or args.workers < 1 or args.budget <= 0:
        print("error: --every and --workers must be >= 1 and --budget > 0", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="veil-rel-privacy-") as tmp:
        area = Path(tmp) / "area"
        TASK.generate(area / "data", seed=1, sizes=SIZES)
        fit_one(TASK, area / "data", 0.8, epochs=1, batch_size=8, random_state=0,
                out=area / "obf")
        (area / "file").write_text("not a folder\n")
        (area / "squatted" / "obfuscators").mkdir(parents=True)
        (area / "squatted" / "obfuscators" / "laplace-alpha-0.5").write_text("mine\n")
        area_before = home_state(area)

        jobs = []  # (row, label, argv, match, code, folder)
        for i, (argv, match, code) in enumerate(CASES[::args.every]):
            folder = Path(tmp) / f"case-{i}"
            folder.mkdir()
            subs = {"data": str(area / "data"), "obf": str(area / "obf"),
                    "file": str(area / "file"), "squatted": str(area / "squatted"),
                    "missing": str(folder / "missing"), "new": str(folder / "new")}
            jobs.append((f"bad values: veil privacy {argv[0]}", " ".join(argv),
                         [a.format(**subs) for a in argv], match, code, folder))
        for i, case in enumerate(DAMAGES[::args.every]):
            name, damage, match, code = case
            folder = Path(tmp) / f"damage-{i}"
            folder.mkdir()
            shutil.copytree(area / "obf", folder / "bad")
            damage(folder / "bad")
            jobs.append((f"damaged save ({_group(case)}), evaluate --obfuscator", name,
                         ["evaluate", "--data", str(area / "data"), "--obfuscator",
                          str(folder / "bad")], match, code, folder))
        # Round robin over the rows, so that a budget cut shortens every row alike.
        by_row: dict[str, list] = defaultdict(list)
        for job in jobs:
            by_row[job[0]].append(job)
        jobs = [j for group in zip_longest(*by_row.values()) for j in group if j is not None]
        ok_folder = Path(tmp) / "undamaged"
        ok_folder.mkdir()

        def no_false_alarm() -> tuple[bool, str]:
            """The undamaged save loads and evaluates: the checks do not refuse a good file."""
            p = subprocess.run([sys.executable, "-m", "veil", "privacy", "evaluate", "--data",
                                str(area / "data"), "--obfuscator", str(area / "obf"), "--json",
                                "--workdir", str(ok_folder / "wd")], capture_output=True,
                               text=True, cwd=ok_folder,
                               env={**os.environ, "VEIL_HOME": str(ok_folder / "home")})
            try:
                held = p.returncode == 0 and [r["alpha"] for r in json.loads(p.stdout)["rows"]] \
                    == [None, 0.8]
            except (json.JSONDecodeError, KeyError, TypeError):
                held = False
            return held, "" if held else f"exit {p.returncode}: {p.stderr[-200:]}"

        def run(job):
            row, label, argv, match, code, folder = job
            if time.monotonic() - t0 > args.budget:
                return row, label, None, "not run (budget)"
            if argv is None:
                return row, label, *no_false_alarm()
            held, why = trial(argv, match, code, area, folder)
            return row, label, held, why

        jobs.insert(0, ("an undamaged save evaluates (no false alarm)", "obf", None, "", 0,
                        ok_folder))
        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(run, jobs))
        area_held = home_state(area) == area_before

    rows: dict[str, dict] = defaultdict(lambda: {"tried": 0, "held": 0, "failures": []})
    for row, label, held, why in results:
        if held is None:
            continue
        r = rows[row]
        r["tried"] += 1
        r["held"] += bool(held)
        if not held:
            r["failures"].append(f"{label}: {why}")
    rows["shared data set and save unchanged after all trials"] = {
        "tried": 1, "held": int(area_held), "failures": [] if area_held else ["changed"]}
    skipped = sum(1 for *_, held, _ in results if held is None)

    width = max(len(k) for k in rows)
    print(f"{'check':<{width}} {'tried':>6} {'held':>6}")
    for name, r in rows.items():
        print(f"{name:<{width}} {r['tried']:>6} {r['held']:>6}")
        for f in r["failures"]:
            print(f"    did not hold: {f}")
    print(f"every {args.every} case(s) of each table, {args.workers} workers, "
          f"{time.monotonic() - t0:.0f} s" + (f", {skipped} not run (budget)" if skipped else ""))
    notes = ("real processes: exit code, one error line with the expected text, no traceback, "
             "nothing written")
    print(json.dumps({"area": "privacy", "rows": [
        {"check": name, "tried": r["tried"], "held": r["held"],
         "notes": "; ".join(r["failures"])[:300] or notes} for name, r in rows.items()]}))
    return 0 if all(r["tried"] == r["held"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
