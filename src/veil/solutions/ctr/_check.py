"""`veil solutions ctr check`: every day file of a folder read through, each malformed line
reported with its file and line number."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import veil.solutions as vs
from veil.errors import InvalidArgument, NotFound
from veil.solutions.ctr import _criteo

DAY_FILE = re.compile(r"day_[0-9]+(_test)?(\.gz)?")
SHOWN = 20  # problems listed per file; the count is always whole


def _problems(p: Path, most: int) -> list[str]:
    """The first `most` malformed lines of `p`, as FILE:LINE: what."""
    out: list[str] = []
    opener = gzip.open if _criteo._is_gzip(p) else open
    with opener(p, "rb") as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip(b"\n").removesuffix(b"\r").split(b"\t")
            problem = _criteo._problem(fields)
            if problem is not None:
                out.append(f"{p.name}:{number}: {problem}")
                if len(out) >= most:
                    break
    return out


def check_folder(path: str | Path) -> vs.CheckReport:
    """Rows, clicks and malformed lines of each day file in `path` (or of the one file)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path}: no such folder")
    files = [path] if path.is_file() else sorted(
        f for f in path.iterdir() if f.is_file() and DAY_FILE.fullmatch(f.name))
    if not files:
        raise InvalidArgument(f"{path} holds no Criteo day file (day_N, day_N_test, "
                              "optionally .gz)")
    summary: dict = {"files": {}}
    errors: list[str] = []
    problems = 0
    for f in files:
        rows = clicks = bad = 0
        try:
            for block in _criteo.read_blocks(f, on_bad_lines="skip", cats=False):
                rows += len(block)
                clicks += int(block.label.sum())
                bad += block.skipped
        except InvalidArgument as e:  # an empty file
            errors.append(str(e))
            problems += 1
            continue
        problems += bad
        if bad:
            listed = _problems(f, SHOWN)
            errors += listed
            if bad > len(listed):
                errors.append(f"{f.name}: ... {bad - len(listed):,} more malformed line(s)")
        summary["files"][f.name] = {"rows": rows, "clicks": clicks, "malformed": bad}
    rows = sum(v["rows"] for v in summary["files"].values())
    clicks = sum(v["clicks"] for v in summary["files"].values())
    summary.update(rows=rows, click_rate=clicks / rows if rows else None)
    rate = f", click rate {clicks / rows:.2%}" if rows else ""
    line = (f"{len(files)} day file(s), {rows:,} good rows{rate}; {problems:,} problem(s).")
    return vs.CheckReport(summary, errors, line)
