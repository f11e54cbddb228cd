"""Reliability of the solutions' data formats and jobs (issue 15): the bad inputs and damaged
files of tests/test_hardening_solutions.py, each run as a real `veil` process and counted.

    .venv/bin/python benchmarks/reliability_solutions.py [--all] [--workers 2] [--workdir DIR]

A refused input holds when the process exits non-zero with one line on stderr, starting
`error: ` and saying what the table expects, with no traceback, nothing on stdout, its veil
home unchanged and no run folder or manifest written. A `check` of a damaged data set holds
when it exits 1 and names the file and line of every problem. Loading the weights files that
carry pickled code holds only if that code never ran. By default every third case of each row
of the table runs (about 2 minutes on 2 busy cores); --all runs every case.

Prints a table, then as its last line one JSON object: {"area": "solutions", "rows": [...]}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))  # the bad-input table lives with the tests

from tests.test_hardening_solutions import (  # noqa: E402
    CASES,
    FACE_CHECKS,
    LANE_CHECKS,
    build_files,
)

OUTSIDE = ("dotdot", "abs", "link")


def kind(argv: list[str]) -> str:
    """The row a case of the table is counted in."""
    text = " ".join(argv)
    if "_w[" in text:
        return "damaged or hostile weights files (--weights, --init)"
    variants = [a for a in argv if a.startswith(("{faces_", "{lanes_", "{pred_"))]
    if any(v.strip("{}").split("_")[1].startswith(OUTSIDE) for v in variants):
        return "paths leading outside the data set (FDDB names, raw_file)"
    if variants or argv[:3] == ["solutions", "lane-detection", "score"]:
        return "values beyond the format or the image (ellipses, rows, x, digits, nesting)"
    command = " ".join(argv[:2] if argv[0] == "train" else argv[1:3])
    return f"option values out of range: {command}"


def home_digest(home: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(home.rglob("*")):
        if p.name.endswith(("-wal", "-shm", "-journal", ".lock")):
            continue
        h.update(str(p.relative_to(home)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def veil(argv: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VEIL_HOME": str(home), "VEIL_DRIVER": "copy"}
    env.pop("VEIL_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "veil", *argv], capture_output=True,
                          text=True, env=env, timeout=300)


def refused(argv: list[str], match: str, home: Path, out: Path) -> tuple[bool, str]:
    before = home_digest(home)
    p = veil(argv, home)
    lines = p.stderr.strip().splitlines()
    why = ""
    if p.returncode == 0:
        why = "exit 0"
    elif "Traceback" in p.stderr:
        why = "traceback"
    elif len(lines) != 1 or not lines[0].startswith("error: "):
        why = f"{len(lines)} lines on stderr"
    elif match.lower() not in lines[0].lower():
        why = f"said {lines[0][:80]!r}"
    elif p.stdout:
        why = "stdout not empty"
    elif home_digest(home) != before:
        why = "the home changed"
    elif out.exists():
        why = f"{out} was written"
    return not why, why


def checked(solution: str, path: Path, match: str, folds: bool) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        p = veil(["solutions", solution, "check", str(path)], Path(tmp) / "home")
    lines = p.stderr.strip().splitlines()
    expect = [match.format(i=i) for i in range(1, 11)] if folds else [match]
    if p.returncode != 1 or "Traceback" in p.stderr:
        return False, f"exit {p.returncode}"
    if len(lines) != len(expect) or not all(m in ln for m, ln in zip(expect, lines,
                                                                      strict=True)):
        return False, f"said {lines[:1]!r}"
    return True, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true", help="every case of the table")
    ap.add_argument("--workers", type=int, default=2, help="processes at a time")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="veil-rel-solutions-", dir=args.workdir))
    files = build_files(work / "files")
    if args.all:
        cases = CASES
    else:  # every third case of each row of the table, the first always
        by_kind: dict[str, list] = {}
        for case in CASES:
            by_kind.setdefault(kind(case[0]), []).append(case)
        cases = [c for group in by_kind.values() for c in group[::3]]
    homes: queue.Queue[Path] = queue.Queue()
    for i in range(args.workers):  # one home per worker, made as a user's would be
        veil(["volume", "list"], work / f"home-{i}")
        homes.put(work / f"home-{i}")
    image = next((files["faces"] / "originalPics").rglob("*.jpg"))

    def run(job: tuple[int, tuple[list[str], str]]) -> tuple[str, bool, str]:
        i, (argv, match) = job
        out = work / f"out-{i}"
        home = homes.get()
        try:
            real = [a.format(**files, out=out, image=image) for a in argv]
            ok, why = refused(real, match, home, out)
        finally:
            homes.put(home)
        return kind(argv), ok, f"{' '.join(argv)[:60]}: {why}" if not ok else ""

    results: list[tuple[str, bool, str]] = []
    checks = [("face-privacy", v, m, True) for v, m in FACE_CHECKS] + \
        [("lane-detection", v, m, False) for v, m in LANE_CHECKS]
    with ThreadPoolExecutor(args.workers) as pool:
        results += pool.map(run, enumerate(cases))
        for ok, why in pool.map(lambda c: checked(c[0], files[c[1]], c[2], c[3]), checks):
            results.append(("check names the file and line of each problem", ok, why))
    ran = list(files["root"].glob("*-ran"))
    results.append(("pickled code in weights files never runs", not ran,
                    f"ran: {ran}" if ran else ""))
    rows: dict[str, dict] = {}
    for check, ok, why in results:
        r = rows.setdefault(check, {"check": check, "tried": 0, "held": 0, "notes": ""})
        r["tried"] += 1
        r["held"] += ok
        if why and len(r["notes"]) < 300:
            r["notes"] += ("; " if r["notes"] else "") + why
    for r in rows.values():
        if not r["notes"]:
            r["notes"] = "every trial held" if r["held"] == r["tried"] else ""
    width = max(len(r["check"]) for r in rows.values())
    print(f"{'check':<{width}}  tried  held")
    for r in rows.values():
        print(f"{r['check']:<{width}}  {r['tried']:>5}  {r['held']:>4}"
              + (f"  ({r['notes']})" if r["held"] < r["tried"] else ""))
    tried, held = sum(r["tried"] for r in rows.values()), sum(r["held"] for r in rows.values())
    print(f"{'total':<{width}}  {tried:>5}  {held:>4}   in {time.monotonic() - t0:.0f} s, "
          f"{len(cases)} of {len(CASES)} table cases as real processes")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"area": "solutions", "rows": list(rows.values())}))
    return 0 if held == tried else 1


if __name__ == "__main__":
    sys.exit(main())
