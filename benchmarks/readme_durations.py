"""How long each README command takes as written, on this machine: the figures the README states.

Runs every README block in order, as tests/test_readme.py does but without the quick presets,
in a fresh folder and a fresh VEIL_HOME, and times each command. Prints a table of the commands
that took more than a second and writes benchmarks/out/readme_durations.json. Run it on a quiet
machine (nothing else using the cores); on 2 cores it takes about an hour.

    .venv/bin/python benchmarks/readme_durations.py [--quick] [--keep]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import readme_blocks as rb  # noqa: E402


def _fmt(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Use the [quick: ...] presets.")
    ap.add_argument("--quick-for", action="append", default=[], metavar="TEXT",
                    help="Use the quick preset for the commands containing TEXT (not measured "
                         "as written; repeatable).")
    ap.add_argument("--keep", action="store_true", help="Keep the folder and home afterwards.")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="veil-readme-"))
    work, home = tmp / "work", tmp / "home"
    work.mkdir()
    rb.venv_link(work)
    env, py_env = rb.environment(home)
    term = rb.Terminal(work, env, log=tmp / "readme.log")
    rows, t0, failed = [], time.monotonic(), None
    print(f"cores: {os.cpu_count()}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; log: {tmp / 'readme.log'}",
          flush=True)
    try:
        for block in rb.blocks():
            if block.skip:
                continue
            if block.lang == "sh":
                quick = True if args.quick else tuple(args.quick_for)
                res = term.run(block, quick=quick, timeout=3 * 3600, timed=True)
                cmds = res.commands()
            else:
                res = rb.run_python(block, work, py_env, timeout=3600)
                cmds = [(f"python block at README line {block.line}", res.seconds)]
            for cmd, s in cmds:
                code = cmd.split("  #")[0].strip()
                preset = args.quick or any(q in code for q in args.quick_for)
                rows.append({"line": block.line, "command": code, "seconds": round(s, 1),
                             "quick_preset": bool(preset and rb.QUICK.search(cmd))})
                if s >= 1:
                    mark = " (quick preset)" if rows[-1]["quick_preset"] else ""
                    print(f"{_fmt(s):>9}  {code[:110]}{mark}", flush=True)
            if not res.ok:
                failed = f"README line {block.line}: {res.failed}"
                print(f"FAILED {failed}\n{res.text()}", flush=True)
                break
    finally:
        term.close()
        subprocess.run([sys.executable, "-m", "veil", "pool", "detach"], env=py_env,
                       capture_output=True)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - t0
    print(f"total {_fmt(total)}; load average after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "readme_durations.json").write_text(json.dumps(
        {"quick": args.quick, "cores": os.cpu_count(), "total_seconds": round(total, 1),
         "failed": failed, "commands": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
