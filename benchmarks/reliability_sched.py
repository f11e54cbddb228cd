"""Reliability of the scheduler (issue 15): the agent SIGKILLed while it launches jobs, processes
racing to submit and delete the same job names while the agent runs, two agents started at
once, and the bad inputs of tests/test_hardening_sched.py.

    .venv/bin/python benchmarks/reliability_sched.py [--rounds 8] [--workdir DIR]

Kills: the audit's repro. Eight one-GPU jobs that append $VEIL_JOB to a file; `veil scheduler
run` killed with -9 at a moment spread over its launches (0 to 1 s after the first), then
started again until every job has ended: each job must have run exactly once and completed,
and no launcher may have died with a traceback. Then kills at the agent's failpoints: launch
committed but not spawned (and a late runner of the launch given up, which must run nothing),
runner spawned but not recorded (the job still running, or already ended), and a two-process
job cut between its ranks (stopped and started again whole). Races: four processes submit and
delete three job names as fast as they can while the agent runs; no submission may run twice,
every refusal must be a one-line veil error, and once settled no GPU is over-allocated and no
record or process is left behind. Two agents: started at once on one home, exactly one runs.

Prints a table, then as its last line one JSON object: {"area": "sched", "rows": [...]}.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))  # the bad-input table lives with the tests

from tests.badinput import home_state  # noqa: E402

from reliability_rows import Row, check  # noqa: E402  (beside this script)
from veil import sched  # noqa: E402
from veil.cli import main  # noqa: E402

_SCRIPT = Path(sys.executable).parent / "veil"  # the venv's own `veil` command
VEIL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "veil"]
QUICK = "echo $VEIL_JOB >> {out}"


def until(cond: Callable[[], object], timeout: float, agent: sched.Agent | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent is not None:
            agent.reconcile()
        if cond():
            return True
        time.sleep(0.05)
    return False


# -- homes and agents -------------------------------------------------------------------------
class Home:
    def __init__(self, path: Path):
        self.path = path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
        self.env["VEIL_HOME"] = str(path)
        self.out = path.parent / f"{path.name}.runs"

    def cluster(self, gpus: int, jobs: int, command: str = QUICK, processes: int = 1) -> None:
        sched.add_node("n1", gpus, home=self.path)
        sched.create_project("p", gpus, home=self.path)
        for i in range(jobs):
            sched.submit(f"j{i}", "p", 1, ["sh", "-c", command.format(out=self.out)],
                         processes=processes, home=self.path)

    def agent(self, *extra: str, failpoint: str | None = None,
              stderr=subprocess.DEVNULL) -> subprocess.Popen:
        """`veil scheduler run`, as a user starts it."""
        env = dict(self.env)
        if failpoint:
            env.update(VEIL_FAILPOINT=failpoint,
                       VEIL_FAILPOINT_FILE=str(self.path.parent / f"{self.path.name}.at"))
        return subprocess.Popen([*VEIL, "scheduler", "run", "--interval", "0.05", "--grace",
                                 "1", *extra], env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)

    def runs(self) -> collections.Counter:
        return collections.Counter(self.out.read_text().split() if self.out.exists() else [])

    def jobs(self) -> list[sched.JobRow]:
        return sched.list_jobs(all_states=True, home=self.path)

    def all_ended(self) -> bool:
        return all(j.state in ("completed", "failed") and j.pid is None for j in self.jobs())

    def tracebacks(self) -> list[str]:
        folder = sched.log_path("x", self.path).parent
        return [p.name for p in folder.glob("*.log") if "Traceback" in p.read_text()]

    def rows(self) -> list[dict]:
        db = sqlite3.connect(self.path / "sched.db")
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY seq")]
        finally:
            db.close()

    def leftover_processes(self) -> list[int]:
        mine = []
        for p in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if str(self.path).encode() in (p / "cmdline").read_bytes():
                    mine.append(int(p.name))
        return mine

    def clean(self) -> None:
        for pid in self.leftover_processes():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def kill(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def stop(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill(p)


# -- kills --------------------------------------------------------------------------------------
def kill_round(home: Home, delay: float, tally: collections.Counter) -> None:
    home.cluster(8, 8)
    first = home.agent()
    try:
        logs = sched.log_path("j0", home.path).parent
        check(until(lambda: logs.is_dir() and any(logs.glob("*.log")), 60), "no launch began")
        time.sleep(delay)
    finally:
        kill(first)
    err = home.path.parent / f"{home.path.name}.agent2.err"
    with open(err, "w") as f:
        second = home.agent(stderr=f)
        try:
            ended = until(home.all_ended, 60)
        finally:
            stop(second)
    said = err.read_text()
    tally["adopted"] += said.count("adopted ")
    tally["given up"] += said.count("its launch never started")
    runs = home.runs()
    tally["jobs"] += 8
    tally["ran twice"] += sum(1 for n in runs.values() if n > 1)
    check(ended, f"not all ended: {[(j.name, j.state) for j in home.jobs()]}")
    check(runs == {f"j{i}": 1 for i in range(8)}, f"runs: {dict(runs)}")
    check(all(j.state == "completed" for j in home.jobs()), "a job did not complete")
    check(not home.tracebacks(), f"tracebacks in {home.tracebacks()}")


def failpoint_round(home: Home, case: str) -> None:
    """Kill the agent at a failpoint, then reconcile with a new agent until all is settled."""
    fp = "sched.launch.committed" if case == "committed" else "sched.launch.spawned"
    command = {"running": QUICK + "; sleep 1",
               "between ranks": "echo $VEIL_JOB.$RANK >> {out}; sleep 30"}.get(case, QUICK)
    home.cluster(2, 1 if case == "between ranks" else 2, command,
                 processes=2 if case == "between ranks" else 1)
    first = home.agent(failpoint=fp)
    marker = home.path.parent / f"{home.path.name}.at"
    try:
        check(until(lambda: marker.exists() or first.poll() is not None, 60), "no failpoint")
        check(first.poll() is None, "the agent ended before its failpoint")
        if case == "ended":
            folder = sched.log_path("j0", home.path).parent
            check(until(lambda: list(folder.glob("j0.*.0.exit")), 30), "j0 did not end")
        if case == "between ranks":
            check(until(lambda: home.runs()["j0.0"] == 1, 30), "rank 0 did not start")
    finally:
        kill(first)
    given_up = [f"{r['launch']}.0" for r in home.rows()] if case == "committed" else []
    second = sched.Agent(grace=1, home=home.path)
    if case == "between ranks":
        check(second.reconcile()["requeued"] == ["j0"], "not requeued")
        check(until(lambda: home.runs()["j0.1"] == 1, 30, second), "not started again")
        check(home.runs() == {"j0.0": 2, "j0.1": 1}, f"runs: {dict(home.runs())}")
        sched.delete_jobs(["j0"], home=home.path)
        check(until(lambda: not home.leftover_processes(), 30, second), "processes left")
        return
    second.reconcile()
    folder = sched.log_path("j0", home.path).parent
    for stem in given_up:  # a runner that comes up after its launch was given up
        late = subprocess.run([sys.executable, "-m", "veil.sched._runner",
                               str(folder / f"{stem}.claim"), str(folder / f"{stem}.exit"),
                               "--", "sh", "-c", f"echo late >> {home.out}"], env=home.env,
                              capture_output=True, text=True, timeout=60)
        check(late.returncode == 0 and "not starting it again" in late.stderr,
              f"late runner: {late.returncode} {late.stderr[-200:]!r}")
    check(until(home.all_ended, 30, second), "not all ended")
    check(home.runs() == {"j0": 1, "j1": 1}, f"runs: {dict(home.runs())}")


def kill_rows(work: Path, rounds: int) -> list[Row]:
    row = Row("agent SIGKILLed while launching 8 jobs, restarted: each ran exactly once")
    tally: collections.Counter = collections.Counter()
    delays = [round(i / max(1, rounds - 1), 2) for i in range(rounds)]
    for i, delay in enumerate(delays):
        home = Home(work / f"kill-{i}" / "home")
        home.path.parent.mkdir(parents=True)
        try:
            row.trial(kill_round, home, delay, tally)
        finally:
            home.clean()
    row.notes.append(f"{rounds} rounds, killed 0-1 s into the launches; {tally['jobs']} jobs, "
                     f"{tally['ran twice']} ran twice; the restarted agent adopted "
                     f"{tally['adopted']} launches and gave up {tally['given up']} unclaimed "
                     "ones")
    fp = Row("agent SIGKILLed at a launch failpoint: no job ran twice")
    cases = ["committed", "ended", "running", "between ranks"]
    for r in range(max(1, rounds // 4)):
        for case in cases:
            home = Home(work / f"fp-{r}-{case.replace(' ', '-')}" / "home")
            home.path.parent.mkdir(parents=True)
            try:
                fp.trial(failpoint_round, home, case)
            finally:
                home.clean()
    fp.notes.append("launch committed (+ a late runner of the launch given up: ran nothing), "
                    "runner spawned but not recorded (job ended / still running), two-process "
                    f"job cut between ranks; {max(1, rounds // 4)} x {len(cases)}")
    return [row, fp]


# -- races --------------------------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import json, random, sys
    from veil import sched
    from veil.errors import VeilError
    home, me, ops, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rng = random.Random(me)
    accepted, refused, other = [], 0, []
    for i in range(ops):
        name = f"n{rng.randrange(3)}"
        token = f"{me}-{i}"
        try:
            if rng.random() < 0.6:
                sched.submit(name, "p", 1, ["sh", "-c", f"echo {token} >> {out}; sleep 0.1"],
                             home=home)
                accepted.append(token)
            else:
                sched.delete_jobs([name], home=home)
        except VeilError as e:
            refused += 1
            if "\\n" in str(e):
                other.append(str(e))
        except Exception as e:  # anything else is a failure of the race
            other.append(f"{type(e).__name__}: {e}")
    print(json.dumps({"accepted": accepted, "refused": refused, "other": other}))
""")


def race_round(home: Home, workers: int, ops: int, tally: collections.Counter) -> None:
    sched.add_node("n1", 2, home=home.path)
    sched.create_project("p", 2, home=home.path)
    agent = home.agent()
    try:
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home.path), f"w{w}",
                                   str(ops), str(home.out)], stdout=subprocess.PIPE, text=True,
                                  env=home.env) for w in range(workers)]
        results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
        check(all(p.returncode == 0 for p in procs), "a worker failed")

        def settled() -> bool:
            rows = home.rows()
            return all(r["pids"] is None and r["launch"] is None for r in rows) and all(
                r["state"] not in ("running", "pending") for r in rows)
        check(until(settled, 60), "not settled")
    finally:
        stop(agent)
    accepted = [t for r in results for t in r["accepted"]]
    tally["submits"] += len(accepted)
    tally["refused"] += sum(r["refused"] for r in results)
    runs = home.runs()
    tally["ran"] += len(runs)
    twice = [t for t, n in runs.items() if n > 1]
    tally["ran twice"] += len(twice)
    check(not twice, f"ran twice: {twice}")
    check(set(runs) <= set(accepted), "a run that no submission asked for")
    others = [o for r in results for o in r["other"]]
    check(not others, f"not a one-line veil error: {others[:1]}")
    rows = home.rows()
    check(not [r for r in rows if r["name"].startswith("~")], "a deleted record left behind")
    names = [r["name"] for r in rows]
    check(len(names) == len(set(names)), "a name twice")
    for r in rows:
        if r["state"] == "completed":
            check(runs.get(r["command"].split("echo ")[1].split()[0]) == 1,
                  f"{r['name']} completed without running once")
    check(all(u <= 1 + 1e-9 for n in sched.list_nodes(home=home.path) for u in n["per_gpu"]),
          "a GPU over-allocated")
    check(until(lambda: not home.leftover_processes(), 10), "processes left behind")


def two_agents(home: Home) -> None:
    sched.add_node("n1", 1, home=home.path)
    sched.create_project("p", 1, home=home.path)
    errs = [home.path.parent / f"agent{i}.err" for i in range(2)]
    files = [open(e, "w") for e in errs]  # noqa: SIM115
    agents = [home.agent(stderr=f) for f in files]
    try:
        time.sleep(3)
        alive = [a.poll() is None for a in agents]
        check(sum(alive) == 1, f"{sum(alive)} agents run")
        loser = agents[alive.index(False)]
        said = errs[alive.index(False)].read_text().strip().splitlines()
        check(loser.returncode == 1 and len(said) == 1 and "already runs" in said[0],
              f"the second agent said {said}")
    finally:
        for a in agents:
            stop(a)
        for f in files:
            f.close()


def race_rows(work: Path, rounds: int) -> list[Row]:
    row = Row("4 processes submit/delete 3 names while the agent runs")
    tally: collections.Counter = collections.Counter()
    n = max(1, rounds // 2)
    for i in range(n):
        home = Home(work / f"race-{i}" / "home")
        home.path.parent.mkdir(parents=True)
        try:
            row.trial(race_round, home, 4, 25, tally)
        finally:
            home.clean()
    row.notes.append(f"{n} rounds of 4 x 25 operations: {tally['submits']} submissions "
                     f"accepted, {tally['refused']} refused in one line, {tally['ran']} ran, "
                     f"{tally['ran twice']} twice; no GPU over-allocated, nothing left behind")
    two = Row("two agents started at once on one home: exactly one runs")
    for i in range(n):
        home = Home(work / f"two-{i}" / "home")
        home.path.parent.mkdir(parents=True)
        try:
            two.trial(two_agents, home)
        finally:
            home.clean()
    two.notes.append(f"{n} rounds; the other exits 1 with one line")
    return [row, two]


# -- bad inputs ---------------------------------------------------------------------------------
def refused_cleanly(argv: list[str], match: str, code: int, home: Path, also) -> None:
    before, extra = home_state(home), also()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    lines = err.getvalue().strip().splitlines()
    check(rc == code, f"exit {rc}, not {code}: veil {' '.join(argv)[:80]}")
    check(len(lines) == 1 and lines[0].startswith("error: "), f"not one line: {lines[:3]}")
    check(match.lower() in lines[0].lower(), f"{lines[0]!r} does not say {match!r}")
    check(out.getvalue() == "", "printed on stdout")
    check(home_state(home) == before, "the home changed")
    check(also() == extra, "the database changed")


def bad_input_rows(work: Path) -> list[Row]:
    from tests import test_hardening_sched as table

    row = Row("bad inputs refused in one line, nothing changed")
    home = work / "bad-inputs" / "home"
    sched.add_node("n1", 8, home=home)
    sched.add_node("n2", 8, home=home)
    sched.create_project("team-a", 4, home=home)
    sched.create_project("team-b", 2, home=home)
    sched.submit("a-1", "team-a", 1, ["sleep", "1000"], home=home)
    sched.log_path("a-1", home).parent.mkdir(parents=True, exist_ok=True)
    sched.log_path("a-1", home).write_text("one\ntwo\nthree\n")
    old = os.environ.get("VEIL_HOME")
    os.environ["VEIL_HOME"] = str(home)
    try:
        for argv, match, code in table.CASES:
            row.trial(refused_cleanly, argv, match, code, home,
                      lambda: table._database(home))
    finally:
        if old is None:
            os.environ.pop("VEIL_HOME")
        else:
            os.environ["VEIL_HOME"] = old
    row.notes.append(f"{len(table.CASES)} cases over project, node, submit, list, describe, "
                     "why, logs, delete and scheduler run")
    return [row]


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8, help="kill rounds (failpoint and race "
                    "rounds scale with it)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    if not 1 <= args.rounds <= 1000:
        print("error: --rounds must be from 1 to 1000", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="veil-reliability-sched-", dir=args.workdir))
    t0 = time.monotonic()
    rows: list[Row] = []
    timings: list[str] = []

    def timed(what: str, fn, *a) -> list[Row]:
        t = time.monotonic()
        out = fn(*a)
        timings.append(f"{what} {time.monotonic() - t:.0f} s")
        return out

    try:
        rows += timed("kills", kill_rows, work, args.rounds)
        rows += timed("races", race_rows, work, args.rounds)
        rows += timed("bad inputs", bad_input_rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(r.check) for r in rows)
    print(f"{'check':<{width}}  tried  held  notes")
    for r in rows:
        d = r.as_dict()
        print(f"{r.check:<{width}}  {r.tried:5d}  {r.held:4d}  {d['notes']}")
    print(f"({time.monotonic() - t0:.0f} s: {', '.join(timings)})")
    print(json.dumps({"area": "sched", "rows": [r.as_dict() for r in rows]}))
    return 0 if all(r.held == r.tried for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main_())
