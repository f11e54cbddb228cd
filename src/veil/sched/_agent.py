"""The agent behind `veil scheduler run`: makes the processes match the allocation.

Each pass, in one transaction, it runs a scheduling cycle and reads what changed; then, outside
the transaction, it acts:

- a job allocated but without processes is started, one process per placement, each through
  `veil.sched._runner` in a session of its own, with CUDA_VISIBLE_DEVICES set to its GPUs on its
  node, VEIL_GPU_FRACTION for fractions (applied as torch's per-process memory fraction by a
  sitecustomize hook), and RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT for multi-process jobs;
- a job preempted or deleted gets SIGTERM, then SIGKILL after the grace period; a preempted
  training job is back to pending and starts again when the policy gives it GPUs;
- a job whose processes ended becomes completed (exit 0) or failed, and frees its GPUs;
- an interactive job past its project's time limit is stopped (completed, "time limit").

Jobs outlive the agent (their own sessions). A restarted agent adopts the processes still
running, reads the exit status of those that ended (the runner writes it), and requeues a
job whose processes vanished without one, so no job is lost.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from veil._config import veil_home
from veil.process import Proc, adopt, group_members, signal_group, spawn_detached
from veil.sched._api import run_cycle, transaction

SITE = Path(__file__).parent / "_site"


def jobs_dir(home: Path | None = None) -> Path:
    return Path(home or veil_home()) / "sched" / "jobs"


def log_path(name: str, home: Path | None = None) -> Path:
    return jobs_dir(home) / f"{name}.log"


def _exit_path(name: str, rank: int, home: Path | None) -> Path:
    return jobs_dir(home) / f"{name}.{rank}.exit"


def _pid_file(name: str, rank: int, home: Path | None) -> Path:
    return jobs_dir(home) / f"{name}.{rank}.pid"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, grace: float = 10.0, home: Path | None = None):
        self.grace, self.home = grace, home
        self.stopping: dict[str, float] = {}  # job -> when SIGTERM was sent

    # ------------------------------------------------------------------ one pass
    def reconcile(self, log: Callable[[str], None] = lambda m: None) -> dict[str, list[str]]:
        done: dict[str, list[str]] = {"started": [], "stopped": [], "ended": [],
                                      "requeued": []}
        now = time.time()
        with transaction(self.home) as db:
            limits = {r["name"]: r["interactive_time_limit"] for r in
                      db.execute("SELECT name, interactive_time_limit FROM projects")}
            for r in db.execute("SELECT * FROM jobs WHERE state='running' AND interactive=1 "
                                "AND started IS NOT NULL").fetchall():
                lim = limits.get(r["project"])
                if lim and now - r["started"] > lim:
                    db.execute("UPDATE jobs SET state='completed', placement=NULL, ended=?, "
                               "stop_requested=?, reason=? WHERE name=?",
                               (now, now, f"stopped at the project's interactive time limit "
                                f"of {lim:g} s", r["name"]))
            # processes that ended
            for r in db.execute("SELECT * FROM jobs WHERE pids IS NOT NULL").fetchall():
                pids = [Proc(*p) for p in json.loads(r["pids"])]
                if any(p.alive() for p in pids):
                    continue
                codes = []
                for rank in range(len(pids)):
                    f = _exit_path(r["name"], rank, self.home)
                    codes.append(int(f.read_text()) if f.is_file() else None)
                for rank in range(len(pids)):
                    _pid_file(r["name"], rank, self.home).unlink(missing_ok=True)
                db.execute("UPDATE jobs SET held=NULL WHERE name=?", (r["name"],))
                if r["state"] == "running":
                    if all(c is not None for c in codes):
                        code = next((c for c in codes if c != 0), 0)
                        state = "completed" if code == 0 else "failed"
                        db.execute("UPDATE jobs SET state=?, placement=NULL, pids=NULL, "
                                   "exit_code=?, ended=?, reason=? WHERE name=?",
                                   (state, code, now, f"exited with status {code}", r["name"]))
                        db.execute("INSERT INTO events VALUES (?, 'end', ?, ?)",
                                   (now, r["name"], str(code)))
                        done["ended"].append(r["name"])
                    else:  # vanished without a status (killed with the agent down, reboot)
                        db.execute("UPDATE jobs SET state='pending', placement=NULL, pids=NULL, "
                                   "reason='its processes vanished; requeued' WHERE name=?",
                                   (r["name"],))
                        done["requeued"].append(r["name"])
                else:
                    db.execute("UPDATE jobs SET pids=NULL WHERE name=?", (r["name"],))
                self.stopping.pop(r["name"], None)
            run_cycle(db, now)
            to_stop = db.execute("SELECT * FROM jobs WHERE state!='running' AND pids IS NOT "
                                 "NULL").fetchall()
            # GPUs still held by processes being stopped: nothing else starts on them yet
            busy = {(n, g) for r in to_stop if r["held"]
                    for n, gpus in json.loads(r["held"]) for g in gpus}
            to_start = [r for r in db.execute("SELECT * FROM jobs WHERE state='running' AND "
                                              "pids IS NULL ORDER BY seq").fetchall()
                        if not any((n, g) in busy for n, gpus in json.loads(r["placement"])
                                   for g in gpus)]
        for r in to_stop:
            self._stop(r, done, log)
        for r in to_start:
            pids = self._start(r, log)
            with transaction(self.home) as db:
                row = db.execute("SELECT state, pids, placement FROM jobs WHERE name=?",
                                 (r["name"],)).fetchone()
                if row and row["state"] == "running" and row["pids"] is None \
                        and row["placement"] == r["placement"]:
                    db.execute("UPDATE jobs SET pids=? WHERE name=?",
                               (json.dumps(pids), r["name"]))
                    done["started"].append(r["name"])
                    continue
            for p in pids:  # changed meanwhile: undo
                signal_group(p.group, signal.SIGKILL)
        return done

    def _start(self, r, log) -> list[Proc]:
        name = r["name"]
        placement = json.loads(r["placement"])
        jobs_dir(self.home).mkdir(parents=True, exist_ok=True)
        command = json.loads(r["command"])
        base = dict(os.environ, VEIL_JOB=name, VEIL_PROJECT=r["project"],
                    VEIL_GPUS=f"{r['gpus']:g}", PYTHONUNBUFFERED="1")
        if r["gpus"] < 1:
            base["VEIL_GPU_FRACTION"] = f"{r['gpus']:g}"
            base["PYTHONPATH"] = os.pathsep.join(
                [str(SITE), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                              if p]])
        if r["port"]:
            base["VEIL_PORT"] = str(r["port"])
        world = len(placement)
        if world > 1:
            base.update(WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=str(_free_port()))
        pids = []
        logfile = log_path(name, self.home)
        with open(logfile, "ab") as out:
            out.write(f"--- veil: starting {name} on {placement}\n".encode())
        for rank, (node, gpus) in enumerate(placement):
            pf = _pid_file(name, rank, self.home)
            adopted = adopt(pf)  # started by an agent that died before recording it
            if adopted is not None:
                pids.append(adopted)
                continue
            _exit_path(name, rank, self.home).unlink(missing_ok=True)
            env = dict(base, CUDA_VISIBLE_DEVICES=",".join(map(str, gpus)), VEIL_NODE=node)
            if world > 1:
                env.update(RANK=str(rank), LOCAL_RANK="0")
            # the runner keeps the launcher's process group: the whole job is killed by it
            pids.append(spawn_detached(
                [sys.executable, "-m", "veil.sched._runner", "--detach", "--pid-file", str(pf),
                 str(_exit_path(name, rank, self.home)), "--", *command],
                log=logfile, env=env, what=f"job {name!r} (rank {rank})"))
        log(f"started {name} on {placement}")
        return pids

    def _stop(self, r, done, log) -> None:
        name = r["name"]
        # the runner's group, and its members even if the runner itself is gone
        procs = [Proc(*p) for p in json.loads(r["pids"])]
        groups = [p.group for p in procs if p.alive() or group_members(p.group)]
        first = self.stopping.setdefault(name, time.time())
        sig = signal.SIGTERM if time.time() - first < self.grace else signal.SIGKILL
        for g in groups:
            signal_group(g, sig)
        if name not in done["stopped"]:
            done["stopped"].append(name)
            log(f"stopping {name} ({r['state']}: {r['reason']})")

    # ------------------------------------------------------------------ the loop
    def run(self, *, interval: float = 0.5, once: bool = False,
            log: Callable[[str], None] = print) -> None:
        stop = {"now": False}

        def on_signal(signum, _frame):
            stop["now"] = True

        if not once:
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            log(f"veil scheduler: agent running (every {interval:g} s); jobs outlive it")
        while True:
            self.reconcile(log)
            if once or stop["now"]:
                break
            time.sleep(interval)
