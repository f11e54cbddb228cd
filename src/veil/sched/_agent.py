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

Jobs outlive the agent (their own sessions), and an agent restart never starts a job twice.
Every launch gets an id, committed to the database before any process is spawned; each runner
claims its launch (a file, `_runner.claim`) before the job can run, and writes the job's exit
status when it ends. A restarted agent settles the launches its predecessor left unrecorded:
it adopts the runners that claimed theirs, and claims the others as abandoned, so a runner
that comes up late runs nothing; only a launch nobody claimed is started again, under a new
id. A job whose processes ended is completed or failed from the status its runner wrote, a
final record; one whose processes vanished without a status (killed, a reboot) is requeued.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from veil._config import home_dir
from veil.errors import InUse, InvalidArgument, VeilError
from veil.process import Proc, group_members, signal_group, spawn_detached
from veil.sched._api import TOMBSTONE, jobs_dir, log_path, run_cycle, transaction
from veil.sched._launch import ABANDONED, claim, read_claim
from veil.sched._policy import placement_text

SITE = Path(__file__).parent / "_site"
MIN_INTERVAL, MAX_INTERVAL, MAX_GRACE = 0.05, 3600.0, 3600.0
ABANDONED_KEPT_S = 3600.0  # an abandoned claim outlives any runner that could still come up
# VEIL_FAILPOINT=<name> stops the agent there (after writing its pid to $VEIL_FAILPOINT_FILE),
# for the kill tests, as in veil.data. Read once, at import.
_FAILPOINT = os.environ.get("VEIL_FAILPOINT")

__all__ = ["Agent", "jobs_dir", "log_path"]


def _claim_path(stem: str, rank: int, home: Path | None) -> Path:
    return jobs_dir(home) / f"{stem}.{rank}.claim"


def _exit_path(stem: str, rank: int, home: Path | None) -> Path:
    return jobs_dir(home) / f"{stem}.{rank}.exit"


def _stem(r) -> str:
    """What a launch's files are named by: its launch id (the job's name and a random token, so
    neither a later launch nor a reused name reads them); the job's name for processes started
    before launch ids."""
    return r["launch"] or r["name"]


def _exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _outlived(p: Proc) -> bool:
    """Whether processes of the runner's group outlive it: the job, if the runner alone was
    killed (a member whose pid is the group's own is a later process that took the number)."""
    return any(m != p.group for m in group_members(p.group))


def _running(p: Proc) -> bool:
    return p.alive() or _outlived(p)


def _failpoint(name: str) -> None:
    if _FAILPOINT is not None and name == _FAILPOINT:
        Path(os.environ["VEIL_FAILPOINT_FILE"]).write_text(str(os.getpid()))
        while True:
            time.sleep(3600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_settings(interval: float, grace: float) -> None:
    """The agent's --interval and --grace, in seconds."""
    for v, what, low, high in ((interval, "--interval", MIN_INTERVAL, MAX_INTERVAL),
                               (grace, "--grace", 0.0, MAX_GRACE)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise InvalidArgument(f"{what} must be a number of seconds from {low:g} to "
                                  f"{high:g}, not {v!r}")


class Agent:
    def __init__(self, grace: float = 10.0, home: Path | None = None):
        self.grace, self.home = grace, home
        self.stopping: dict[str, float] = {}  # job -> when SIGTERM was sent

    # ------------------------------------------------------------------ one pass
    def reconcile(self, log: Callable[[str], None] = lambda m: None, *,
                  start: bool = True) -> dict[str, list[str]]:
        """One pass: record the processes that ended, stop the ones to stop and, with `start`,
        start the jobs allocated GPUs. Returns the jobs each action touched."""
        done: dict[str, list[str]] = {"started": [], "stopped": [], "ended": [],
                                      "requeued": [], "adopted": []}
        now = time.time()
        finished: list[tuple[str, int]] = []  # launches whose files go once this commits
        with transaction(self.home) as db:
            limits = {r["name"]: r["interactive_time_limit"] for r in
                      db.execute("SELECT name, interactive_time_limit FROM projects")}
            for r in db.execute("SELECT * FROM jobs WHERE state='running' AND interactive=1 "
                                "AND started IS NOT NULL").fetchall():
                lim = limits.get(r["project"])
                if lim and now - r["started"] > lim:
                    db.execute("UPDATE jobs SET state='completed', held=placement, "
                               "placement=NULL, ended=?, stop_requested=?, reason=? WHERE "
                               "name=?", (now, now, f"stopped at the project's interactive "
                                          f"time limit of {lim:g} s", r["name"]))
            # launches left unrecorded: an agent stopped while launching, or a failed spawn
            for r in db.execute("SELECT * FROM jobs WHERE launch IS NOT NULL AND pids IS "
                                "NULL").fetchall():
                self._settle(db, r, now, done, log)
            # processes that ended
            for r in db.execute("SELECT * FROM jobs WHERE pids IS NOT NULL").fetchall():
                procs = [Proc(*p) for p in json.loads(r["pids"])]
                if any(p.alive() for p in procs):
                    continue
                stem, n = _stem(r), r["processes"]
                codes = [_exit_code(_exit_path(stem, rank, self.home)) for rank in range(n)]
                ended = r["state"] == "running" and all(c is not None for c in codes)
                if not ended and any(_outlived(p) for p in procs):
                    continue  # wait for them (being stopped: until they are killed)
                clear = "pids=NULL, launch=NULL, held=NULL"
                if r["state"] == "running":
                    if ended:  # final: never started again
                        code = next((c for c in codes if c != 0), 0)
                        state = "completed" if code == 0 else "failed"
                        db.execute(f"UPDATE jobs SET {clear}, state=?, placement=NULL, "
                                   "exit_code=?, ended=?, reason=? WHERE name=?",
                                   (state, code, now, f"exited with status {code}", r["name"]))
                        db.execute("INSERT INTO events VALUES (?, 'end', ?, ?)",
                                   (now, r["name"], str(code)))
                        done["ended"].append(r["name"])
                    else:  # vanished without a status (killed with the agent down, reboot)
                        db.execute(f"UPDATE jobs SET {clear}, state='pending', placement=NULL, "
                                   "reason='its processes vanished; requeued' WHERE name=?",
                                   (r["name"],))
                        done["requeued"].append(r["name"])
                else:
                    db.execute(f"UPDATE jobs SET {clear} WHERE name=?", (r["name"],))
                finished.append((stem, n))
                self.stopping.pop(r["name"], None)
            # deleted jobs whose names were reused, now that their processes are gone
            db.execute(f"DELETE FROM jobs WHERE substr(name, 1, 1) = '{TOMBSTONE}' AND pids IS "
                       "NULL AND launch IS NULL")
            run_cycle(db, now)
            to_stop = db.execute("SELECT * FROM jobs WHERE state!='running' AND pids IS NOT "
                                 "NULL").fetchall()
            # GPUs still held by processes being stopped (or launched): nothing else starts on
            # them yet
            busy = {(n, g) for r in db.execute(
                        "SELECT held FROM jobs WHERE state!='running' AND held IS NOT NULL AND "
                        "(pids IS NOT NULL OR launch IS NOT NULL)")
                    for n, gpus in json.loads(r["held"]) for g in gpus}
            to_start = [r for r in db.execute("SELECT * FROM jobs WHERE state='running' AND "
                                              "pids IS NULL AND launch IS NULL ORDER BY seq")
                        .fetchall()
                        if start and not any((n, g) in busy
                                             for n, gpus in json.loads(r["placement"])
                                             for g in gpus)]
            launches = {}
            for r in to_start:  # committed before any process exists
                launches[r["name"]] = f"{r['name']}.{secrets.token_hex(4)}"
                db.execute("UPDATE jobs SET launch=? WHERE name=?",
                           (launches[r["name"]], r["name"]))
        for stem, n in finished:
            self._forget(stem, n)
        for r in to_stop:
            self._stop(r, done, log)
        if to_start:
            _failpoint("sched.launch.committed")
        for r in to_start:
            launch = launches[r["name"]]
            try:
                pids = self._start(r, launch, log)
            except (VeilError, OSError, subprocess.SubprocessError) as e:
                log(f"could not launch {r['name']}: {e} (the next pass settles it)")
                continue
            with transaction(self.home) as db:  # unless an agent settled it meanwhile
                if db.execute("UPDATE jobs SET pids=? WHERE launch=? AND pids IS NULL",
                              (json.dumps(pids), launch)).rowcount:
                    done["started"].append(r["name"])
        return done

    def _settle(self, db, r, now: float, done, log) -> None:
        """A launch committed but its processes not recorded: adopt the ranks whose runner
        claimed it, and claim the others as abandoned, so that no runner of theirs will run."""
        name, stem = r["name"], r["launch"]
        jobs_dir(self.home).mkdir(parents=True, exist_ok=True)
        procs, missing = [], []
        for rank in range(r["processes"]):
            path = _claim_path(stem, rank, self.home)
            who = read_claim(path)
            if who is None and not claim(path, f"{ABANDONED}\n"):
                who = read_claim(path)  # its runner claimed it first
            if isinstance(who, Proc):
                procs.append(who)
            else:
                missing.append(rank)
        if not procs:  # nothing ran: free to launch again
            db.execute("UPDATE jobs SET launch=NULL, held=NULL WHERE name=?", (name,))
            log(f"{name}: its launch never started")
            return
        db.execute("UPDATE jobs SET pids=? WHERE name=?", (json.dumps(procs), name))
        if not missing:
            done["adopted"].append(name)
            log(f"adopted {name}, launched by an agent stopped before it recorded it")
        elif r["state"] == "running":  # ranks that started wait for the others: stop them
            db.execute("UPDATE jobs SET state='pending', held=placement, placement=NULL, "
                       "stop_requested=?, reason=? WHERE name=?",
                       (now, f"its launch was cut short (rank{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(str, missing))} never started); requeued", name))
            done["requeued"].append(name)

    def _forget(self, stem: str, n: int) -> None:
        """The files of a launch whose outcome is committed. An abandoned claim stays: it is
        what keeps a late runner from running (`sweep` removes it later)."""
        for rank in range(n):
            _exit_path(stem, rank, self.home).unlink(missing_ok=True)
            jobs_dir(self.home).joinpath(f"{stem}.{rank}.pid").unlink(missing_ok=True)  # old
            path = _claim_path(stem, rank, self.home)
            if isinstance(read_claim(path), Proc):
                path.unlink(missing_ok=True)

    def sweep(self, older_than: float = ABANDONED_KEPT_S) -> int:
        """Remove abandoned claims old enough that no runner of theirs can still come up: none
        is named on any process's command line. Returns how many went."""
        folder = jobs_dir(self.home)
        old = [p for p in folder.glob("*.claim") if read_claim(p) == ABANDONED
               and time.time() - p.stat().st_mtime > older_than] if folder.is_dir() else []
        if not old:
            return 0
        cmdlines = b"\0".join(_cmdlines())
        gone = 0
        for p in old:
            if str(p).encode() not in cmdlines:
                p.unlink(missing_ok=True)
                gone += 1
        return gone

    def _start(self, r, launch: str, log) -> list[Proc]:
        name = r["name"]
        placement = json.loads(r["placement"])
        folder = jobs_dir(self.home)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)  # job output may be private
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
            out.write(f"--- veil: starting {name} on {placement_text(placement)}\n".encode())
        for rank, (node, gpus) in enumerate(placement):
            env = dict(base, CUDA_VISIBLE_DEVICES=",".join(map(str, gpus)), VEIL_NODE=node)
            if world > 1:
                env.update(RANK=str(rank), LOCAL_RANK="0")
            # the runner keeps the launcher's process group: the whole job is killed by it
            pids.append(spawn_detached(
                [sys.executable, "-m", "veil.sched._runner", "--detach",
                 str(_claim_path(launch, rank, self.home)),
                 str(_exit_path(launch, rank, self.home)), "--", *command],
                log=logfile, env=env, what=f"job {name!r} (rank {rank})"))
            _failpoint("sched.launch.spawned")  # each rank, before the job is recorded
        log(f"started {name} on {placement_text(placement)}")
        return pids

    def _stop(self, r, done, log) -> None:
        name = r["name"]
        # the runner's group, and its members even if the runner itself is gone
        procs = [Proc(*p) for p in json.loads(r["pids"])]
        groups = [p.group for p in procs if _running(p)]
        first = self.stopping.setdefault(name, time.time())
        sig = signal.SIGTERM if time.time() - first < self.grace else signal.SIGKILL
        for g in groups:
            signal_group(g, sig)
        if name not in done["stopped"]:
            done["stopped"].append(name)
            log(f"stopping {name}: {r['reason']}")

    # ------------------------------------------------------------------ the loop
    def run(self, *, interval: float = 0.5, once: bool = False,
            log: Callable[[str], None] = print) -> None:
        """Reconcile every `interval` seconds until SIGTERM or SIGINT. Then, starting nothing
        more, finish stopping the jobs being stopped (deleted or preempted: SIGKILL after the
        grace period) and leave; a second signal leaves at once. Running jobs outlive the
        agent. One agent per home: a second is refused while the first runs."""
        check_settings(interval, self.grace)
        with self._only_agent():
            signals = []

            def on_signal(signum, _frame):
                signals.append(signum)

            if not once:
                signal.signal(signal.SIGTERM, on_signal)
                signal.signal(signal.SIGINT, on_signal)
                log(f"veil scheduler: agent running (pid {os.getpid()}, every {interval:g} s). "
                    "Jobs outlive it: stop them with veil job delete, then the agent with "
                    "Ctrl-C or kill")
            self.sweep()
            while True:
                self.reconcile(log, start=not signals)
                if once or signals:
                    break
                deadline = time.monotonic() + interval
                while not signals and time.monotonic() < deadline:
                    time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            if not once:
                self._drain(signals, log)

    def _drain(self, signals: list, log: Callable[[str], None]) -> None:
        """The agent's last passes: the jobs being stopped are stopped (SIGKILL after the grace
        period), nothing is started, a second signal cuts it short."""
        deadline = time.monotonic() + self.grace + 5.0  # SIGKILLed processes take a moment
        told = False
        while len(signals) < 2 and time.monotonic() < deadline:
            left = self._stopping()
            if not left:
                break
            if not told:
                log(f"veil scheduler: stopping {', '.join(left)} before leaving (SIGKILL after "
                    f"{self.grace:g} s; signal again to leave now)")
                told = True
            time.sleep(0.1)
            self.reconcile(log, start=False)
        with transaction(self.home) as db:
            running = [r["name"] for r in db.execute(
                "SELECT name FROM jobs WHERE pids IS NOT NULL ORDER BY seq")]
        if running:
            log(f"veil scheduler: agent stopped; {len(running)} job(s) still run and outlive it "
                f"({', '.join(running)}): veil job delete stops them while an agent runs")
        else:
            log("veil scheduler: agent stopped; no job runs")

    def _stopping(self) -> list[str]:
        """Jobs whose processes are being stopped (deleted, preempted, past a time limit)."""
        with transaction(self.home) as db:
            return [r["name"] for r in db.execute(
                "SELECT name FROM jobs WHERE state!='running' AND pids IS NOT NULL ORDER BY seq")]

    @contextlib.contextmanager
    def _only_agent(self):
        path = home_dir(self.home) / "sched" / "agent.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise InUse(f"an agent already runs for this veil home (pid {other}); one "
                            "agent per home") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)


def _cmdlines() -> list[bytes]:
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            out.append((p / "cmdline").read_bytes())
    return out
