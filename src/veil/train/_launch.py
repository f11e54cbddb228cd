"""The torchrun launcher: start N replicas of a worker on this machine, show their progress,
and when one fails, say which rank failed and why in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.errors import InvalidArgument, VeilError
from veil.progress import Log, quiet
from veil.train import _config

FAILED = "veil.train: rank {rank} failed: {error}"
_FAILED = re.compile(r"veil\.train: rank (\d+) failed: (.+)$")
_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_RAISED = re.compile(r"(?:\[rank\d+\]:\s*)?((?:[\w.]+\.)?\w*(?:Error|Exception): .+)$")


@dataclass
class LaunchResult:
    out: Path
    seconds: float
    processes: int


def failure_summary(lines: list[str]) -> tuple[int | None, str]:
    """(the rank that failed first, its error) from a failed launch's output: the replica's
    own report, torchrun's root cause, or the last exception or signal seen."""
    reported = [(int(m.group(1)), m.group(2)) for ln in lines if (m := _FAILED.search(ln))]
    root = None
    for i, ln in enumerate(lines):
        if "Root Cause" in ln:
            for later in lines[i:i + 8]:
                if m := _ROOT_RANK.match(later):
                    root = int(m.group(1))
                    break
    if reported:
        # the root cause's own report, else the first report (later ones are its echoes)
        for rank, why in reported:
            if rank == root:
                return rank, why
        return reported[0]
    raised = [m.group(1) for ln in lines if (m := _RAISED.match(ln.strip()))
              and "ChildFailedError" not in ln]
    signals = [ln.strip() for ln in lines if "Signal" in ln and "died" in ln]
    why = raised[0] if raised else signals[-1] if signals else ""
    return root, why


def launch(worker: str, config: Any, processes: int = 1, *, out: Path, threads: int = 1,
           log: Log | None = None, show: tuple[str, ...] = ("epoch ", "test: "),
           required: tuple[str, ...] = ()) -> LaunchResult:
    """Run `python -m veil.train WORKER CONFIG` in `processes` replicas (torchrun, one machine).
    `worker` is 'module:function' taking the config; `config` is a dataclass, saved as
    OUT/config.json. Lines starting with `show` go to `log`. The launch fails with one line
    naming the failed rank if any replica fails or a `required` file is missing from OUT;
    the whole output is kept in OUT/launcher.log."""
    if not isinstance(processes, int) or processes < 1:
        raise InvalidArgument(f"--processes must be a whole number >= 1, not {processes!r}")
    log = quiet(log)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = _config.save(config, out / "config.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={processes}", "-m", "veil.train", worker, str(cfg_file)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail, line][-2000:]
            if line.startswith(show):
                log(line)
        code = proc.wait()
    secs = time.perf_counter() - t0
    (out / "launcher.log").write_text("\n".join(tail) + "\n")
    missing = [f for f in required if not (out / f).is_file()]
    if code != 0 or missing:
        rank, why = failure_summary(tail)
        who = f"rank {rank} of {processes}" if rank is not None else f"{processes} process(es)"
        raise TrainingFailed(f"training failed ({who}, exit {code})"
                             f"{': ' + why.strip() if why else ''}", rank=rank,
                             log=out / "launcher.log")
    return LaunchResult(out, secs, processes)


class TrainingFailed(VeilError):
    """A replica failed; `rank` is the one that failed first (None: unknown)."""

    def __init__(self, message: str, *, rank: int | None, log: Path) -> None:
        super().__init__(message)
        self.rank, self.log = rank, log


def worker_main(argv: list[str]) -> int:
    """`python -m veil.train WORKER CONFIG.json` or `... WORKER --from-env CLASS`: run one
    replica; a failure is printed as one line naming the rank before the exit."""
    if len(argv) == 2:
        make = lambda: _config.load(Path(argv[1]))  # noqa: E731
    elif len(argv) == 3 and argv[1] == "--from-env":
        make = lambda: _config.from_env(_config.resolve(argv[2]))  # noqa: E731
    else:
        print("usage: python -m veil.train MODULE:FUNCTION (CONFIG.json | --from-env "
              "MODULE:CLASS)", file=sys.stderr)
        return 2
    rank = os.environ.get("RANK", "0")
    try:
        fn = _config.resolve(argv[0])
        return int(fn(make()) or 0)
    except Exception as e:
        name = type(e).__name__
        print(FAILED.format(rank=rank, error=f"{name}: {e}" if name not in (
            "InvalidArgument", "NotFound", "VeilError") else str(e)), flush=True)
        raise
