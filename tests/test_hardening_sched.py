"""The scheduler under a careless user and a killed agent (issue 15, items 5, 9 and 10).

- Bad input to every scheduler command (project, node, submit, list, describe, why, logs,
  delete, scheduler run) is refused in one line, with nothing changed.
- An agent killed while it launches jobs, then restarted, runs every job exactly once: at two
  failpoints (launch committed, runner spawned but not recorded) and at kill times spread over
  the launch phase, as the audit did (its repro ran a job twice in 5 of 9 trials).
- A deleted job's name can be used again, even while its old processes are still stopping.
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.badinput import refused
from tests.conftest import kill_processes_under
from veil import sched
from veil.cli import main
from veil.sched import Agent


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    kill_processes_under(tmp_path)


# ------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def _cluster_template(tmp_path_factory):
    """Two nodes of 8 GPUs, team-a (4) and team-b (2), and a-1 allocated in team-a: made once,
    copied for each case."""
    home = tmp_path_factory.mktemp("sched-template") / "home"
    sched.add_node("n1", 8, home=home)
    sched.add_node("n2", 8, home=home)
    sched.create_project("team-a", 4, home=home)
    sched.create_project("team-b", 2, home=home)
    sched.submit("a-1", "team-a", 1, ["sleep", "1000"], home=home)
    sched.log_path("a-1", home).parent.mkdir(parents=True, exist_ok=True)
    sched.log_path("a-1", home).write_text("one\ntwo\nthree\n")
    return home


@pytest.fixture
def cluster(home, _cluster_template):
    shutil.copytree(_cluster_template, home)
    return home


def _submit(*options, command=("true",)):
    return ["job", "submit", "j", "-p", "team-a", *options, "--", *command]


CASES = [
    # submit: GPUs per process (item 9: -g 1e-300), a fraction from 0.01 to 1 or whole GPUs
    (_submit("-g", "1e-300"), "from 0.01 to 1", 2),
    (_submit("-g", "0.001"), "from 0.01 to 1", 2),
    (_submit("-g", "0"), "from 0.01 to 1", 2),
    (_submit("-g", "-1"), "from 0.01 to 1", 2),
    (_submit("-g", "-0.5"), "from 0.01 to 1", 2),
    (_submit("-g", "nan"), "finite", 2),
    (_submit("-g", "inf"), "finite", 2),
    (_submit("-g", "-inf"), "finite", 2),
    (_submit("-g", "1025"), "up to 1024", 2),
    (_submit("-g", "1e300"), "up to 1024", 2),
    (_submit("-g", "1.5"), "(0, 1]", 2),
    (_submit("-g", "9"), "can never be placed", 2),
    # submit: the command (item 9: submit -- '')
    (_submit(command=("",)), "program is empty", 2),
    (_submit(command=("   ",)), "program is empty", 2),
    (_submit(command=("", "train.py")), "program is empty", 2),
    (_submit(command=()), "command after --", 2),
    (_submit(command=("echo", "x" * 200_000)), "bytes long", 2),
    # submit: processes, port, name, project
    (_submit("--processes", "0"), "from 1 to 1024", 2),
    (_submit("--processes", "-3"), "from 1 to 1024", 2),
    (_submit("--processes", "100000"), "from 1 to 1024", 2),
    (_submit("-g", "0.5", "--processes", "2"), "whole GPUs per process", 2),
    (_submit("--interactive", "--port", "0"), "1..65535", 2),
    (_submit("--interactive", "--port", "70000"), "1..65535", 2),
    (_submit("--port", "8888"), "--interactive", 2),
    (_submit("-g", "5", "--interactive"), "must fit team-a's quota", 2),
    (["job", "submit", "Bad_Name", "-p", "team-a", "--", "true"], "invalid job name", 2),
    (["job", "submit", "x" * 64, "-p", "team-a", "--", "true"], "invalid job name", 2),
    (["job", "submit", "j.", "-p", "team-a", "--", "true"], "invalid job name", 2),
    (["job", "submit", "a-1", "-p", "team-a", "--", "true"], "a job named 'a-1' exists", 1),
    (["job", "submit", "j", "-p", "nope", "--", "true"], "no project 'nope'", 1),
    # list, describe, why, logs, delete (item 9: list -p UNKNOWN, logs --tail -1)
    (["job", "list", "-p", "UNKNOWN"], "no project 'UNKNOWN'", 1),
    (["job", "list", "--all", "-p", "nope"], "no project 'nope'", 1),
    (["job", "describe", "ghost"], "no job 'ghost'", 1),
    (["job", "why", "ghost"], "no job 'ghost'", 1),
    (["job", "logs", "ghost"], "no job 'ghost'", 1),
    (["job", "logs", "a-1", "--tail", "-1"], "--tail must be a whole number of lines >= 0", 2),
    (["job", "logs", "ghost", "--tail", "-1"], "--tail", 2),
    (["job", "delete", "ghost"], "no job 'ghost'", 1),
    (["job", "delete", "a-1", "ghost"], "no job 'ghost'", 1),
    (["job", "delete", "-p", "nope", "a-1"], "no project 'nope'", 1),
    (["job", "delete", "-p", "team-b", "a-1"], "no job 'a-1' in project 'team-b'", 1),
    (["job", "delete"], "give the names of the jobs to delete, or --all", 2),
    (["job", "delete", "a-1", "--all"], "names or --all, not both", 2),
    (["job", "delete", "--all", "-p", "nope"], "no project 'nope'", 1),
    # the hidden top-level aliases of the job commands refuse the same way
    (["submit", "j", "-p", "nope", "--", "true"], "no project 'nope'", 1),
    (["list", "-p", "UNKNOWN"], "no project 'UNKNOWN'", 1),
    (["why", "ghost"], "no job 'ghost'", 1),
    (["delete", "ghost"], "no job 'ghost'", 1),
    # project create / delete
    (["project", "create", "t", "--gpus", "nan"], "finite", 2),
    (["project", "create", "t", "--gpus", "inf"], "finite", 2),
    (["project", "create", "t", "--gpus", "-1"], "0 or from 0.01", 2),
    (["project", "create", "t", "--gpus", "1e-300"], "0 or from 0.01", 2),
    (["project", "create", "t", "--gpus", "1e300"], "to 1048576", 2),
    (["project", "create", "t", "--gpus", "1", "--limit", "1e300"], "to 1048576", 2),
    (["project", "create", "t", "--gpus", "2", "--limit", "1"], "below the quota", 2),
    (["project", "create", "t", "--gpus", "1", "--over-quota-weight", "-1"], "from 0 to", 2),
    (["project", "create", "t", "--gpus", "1", "--over-quota-weight", "inf"], "finite", 2),
    (["project", "create", "t", "--gpus", "1", "--over-quota-weight", "1e300"], "from 0 to", 2),
    (["project", "create", "t", "--gpus", "1", "--interactive-time-limit", "0"], "from 1", 2),
    (["project", "create", "t", "--gpus", "1", "--interactive-time-limit", "-5"], "from 1", 2),
    (["project", "create", "t", "--gpus", "1", "--interactive-time-limit", "nan"], "finite", 2),
    (["project", "create", "t", "--gpus", "1", "--interactive-time-limit", "1e12"], "366 days",
     2),
    (["project", "create", "t", "--gpus", "1", "--node", "nowhere"], "no node 'nowhere'", 1),
    (["project", "create", "Team_A", "--gpus", "1"], "invalid project name", 2),
    (["project", "create", "team-a", "--gpus", "1"], "already exists", 1),
    (["project", "delete", "ghost"], "no project 'ghost'", 1),
    (["project", "delete", "team-a"], "active job", 1),
    # node add / delete
    (["node", "add", "n3", "--gpus", "-1"], "from 0 to 1024", 2),
    (["node", "add", "n3", "--gpus", "1025"], "from 0 to 1024", 2),
    (["node", "add", "n3", "--gpus", "1000000000000000000000000"], "from 0 to 1024", 2),
    (["node", "add", "N_3", "--gpus", "1"], "invalid node name", 2),
    (["node", "add", "n1", "--gpus", "1"], "already exists", 1),
    (["node", "delete", "ghost"], "no node 'ghost'", 1),
    (["node", "delete", "n1"], "runs on node", 1),
    # the agent's settings
    (["scheduler", "run", "--once", "--interval", "0"], "--interval", 2),
    (["scheduler", "run", "--once", "--interval", "-1"], "--interval", 2),
    (["scheduler", "run", "--once", "--interval", "nan"], "--interval", 2),
    (["scheduler", "run", "--once", "--interval", "inf"], "--interval", 2),
    (["scheduler", "run", "--once", "--interval", "1e9"], "from 0.05 to 3600", 2),
    (["scheduler", "run", "--once", "--grace", "-1"], "--grace", 2),
    (["scheduler", "run", "--once", "--grace", "nan"], "--grace", 2),
    (["scheduler", "run", "--once", "--grace", "inf"], "from 0 to 3600", 2),
]


def _database(home: Path):
    """The scheduler's tables, row by row: what a refused command must leave as it was."""
    db = sqlite3.connect(home / "sched.db")
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                for t in ("projects", "nodes", "jobs", "events", "allocation")}
    finally:
        db.close()


@pytest.mark.parametrize(("argv", "match", "code"), CASES,
                         ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_scheduler_input_is_refused_in_one_line(capsys, cluster, argv, match, code):
    refused(capsys, argv, match, home=cluster, code=code, also=lambda: _database(cluster))


def test_a_second_agent_on_the_same_home_is_refused(capsys, cluster):
    lock = cluster / "sched" / "agent.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        refused(capsys, ["scheduler", "run", "--once"], "an agent already runs for this veil "
                "home (pid 4242)", home=cluster, code=1, also=lambda: _database(cluster))
    finally:
        os.close(fd)
    assert main(["scheduler", "run", "--once"]) == 0  # the lock goes with its holder


def test_logs_tail_shows_the_last_lines_and_zero_shows_none(capsys, cluster):
    for tail, want in (("0", ""), ("1", "three\n"), ("2", "two\nthree\n"),
                       ("50", "one\ntwo\nthree\n")):
        assert main(["job", "logs", "a-1", "--tail", tail]) == 0
        assert capsys.readouterr().out == want, tail
    long = [f"line {i}" for i in range(100_000)]
    sched.log_path("a-1").write_text("\n".join(long) + "\n")
    assert sched.job_log("a-1", 3) == long[-3:]
    assert sched.job_log("a-1") == long


def test_list_and_delete_take_the_project_into_account(capsys, cluster):
    sched.submit("b-1", "team-b", 1, ["true"])
    assert main(["job", "list", "-p", "team-b", "--json"]) == 0
    assert [j["name"] for j in json.loads(capsys.readouterr().out)] == ["b-1"]
    assert main(["job", "delete", "-p", "team-b", "b-1"]) == 0
    assert sched.get_job("b-1").state == "deleted"


# ------------------------------------------------------------------ the agent, killed
QUICK = "echo $VEIL_JOB >> {out}"  # ends at once: the case the audit saw run twice


def _cluster_of(gpus: int, jobs: int, command: str, out: Path, processes: int = 1) -> None:
    sched.add_node("n1", gpus)
    sched.create_project("p", gpus)
    for i in range(jobs):
        sched.submit(f"j{i}", "p", 1, ["sh", "-c", command.format(out=out)],
                     processes=processes)


def _agent_process(home: Path, failpoint: str | None = None) -> subprocess.Popen:
    """`veil scheduler run` in a process of its own (as the user starts it), to be killed."""
    env = dict(os.environ, VEIL_HOME=str(home))
    if failpoint:
        env.update(VEIL_FAILPOINT=failpoint, VEIL_FAILPOINT_FILE=str(home.parent / failpoint))
    code = "from veil.sched import Agent; Agent(grace=1).run(interval=0.05, log=print)"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def _kill(agent: subprocess.Popen) -> None:
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait()


def _until(cond, timeout: float = 30.0, agent: Agent | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent is not None:
            agent.reconcile()
        if cond():
            return True
        time.sleep(0.05)
    return False


def _all_ended() -> bool:
    return all(j.state in ("completed", "failed") and j.pid is None
               for j in sched.list_jobs(all_states=True))


def _runs(out: Path) -> collections.Counter:
    return collections.Counter(out.read_text().split() if out.exists() else [])


def _stopped_at(home: Path, failpoint: str, agent: subprocess.Popen) -> None:
    marker = home.parent / failpoint
    assert _until(lambda: marker.exists() or agent.poll() is not None, 60)
    assert agent.poll() is None, "the agent ended before its failpoint"


@pytest.mark.parametrize("job_ends_first", [True, False], ids=["job-ended", "job-running"])
def test_an_agent_killed_after_spawning_a_job_never_runs_it_twice(home, tmp_path,
                                                                  job_ends_first):
    """Killed after a runner started the job but before the job was recorded: the restarted
    agent adopts it (still running) or completes it from its exit status (already ended)."""
    out = tmp_path / "runs.txt"
    _cluster_of(2, 2, QUICK if job_ends_first else QUICK + "; sleep 2", out)
    agent = _agent_process(home, "sched.launch.spawned")
    try:
        _stopped_at(home, "sched.launch.spawned", agent)
        assert _until(lambda: _runs(out)["j0"] == 1)
        if job_ends_first:
            assert _until(lambda: list(sched.log_path("j0").parent.glob("j0.*.0.exit")))
    finally:
        _kill(agent)
    second = Agent(grace=1)
    done = second.reconcile()
    assert done["adopted"] == ["j0"] and "j0" not in done["started"]
    assert _until(_all_ended, agent=second)
    assert _runs(out) == {"j0": 1, "j1": 1}
    assert sched.get_job("j0").exit_code == 0


def test_a_launch_cut_before_its_runner_claimed_it_runs_once_even_if_the_runner_comes_late(
        home, tmp_path):
    """Killed after committing the launches, before spawning: the restarted agent gives those
    launches up and starts the jobs anew; a runner of a given-up launch that comes up after
    that (a launcher still starting when its agent died) runs nothing."""
    out = tmp_path / "runs.txt"
    _cluster_of(2, 2, QUICK, out)
    agent = _agent_process(home, "sched.launch.committed")
    try:
        _stopped_at(home, "sched.launch.committed", agent)
    finally:
        _kill(agent)
    old = [sched.log_path("j0").parent / f"{j['launch']}.0" for j in _rows(home)]
    second = Agent(grace=1)
    assert sorted(second.reconcile()["started"]) == ["j0", "j1"]
    for stem in old:  # the late runners
        late = subprocess.run([sys.executable, "-m", "veil.sched._runner", f"{stem}.claim",
                               f"{stem}.exit", "--", "sh", "-c", f"echo late >> {out}"],
                              capture_output=True, text=True, timeout=60)
        assert late.returncode == 0 and "not starting it again" in late.stderr
        assert not Path(f"{stem}.exit").exists()
    assert _until(_all_ended, agent=second)
    assert _runs(out) == {"j0": 1, "j1": 1}
    # the abandoned claims stay until no runner of theirs can come up, then go
    assert all(Path(f"{stem}.claim").exists() for stem in old)
    assert second.sweep(older_than=0) == len(old)
    assert list(sched.log_path("j0").parent.glob("*.claim")) == []


def _rows(home: Path) -> list[dict]:
    db = sqlite3.connect(home / "sched.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY seq")]
    finally:
        db.close()


def test_a_multi_process_launch_cut_between_ranks_is_stopped_and_requeued(home, tmp_path):
    out = tmp_path / "runs.txt"
    _cluster_of(2, 1, "echo $VEIL_JOB.$RANK >> {out}; sleep 30", out, processes=2)
    agent = _agent_process(home, "sched.launch.spawned")
    try:
        _stopped_at(home, "sched.launch.spawned", agent)  # rank 0 spawned, rank 1 not
        assert _until(lambda: _runs(out)["j0.0"] == 1)
    finally:
        _kill(agent)
    second = Agent(grace=1)
    assert second.reconcile()["requeued"] == ["j0"]
    assert "rank 1 never started" in sched.get_job("j0").reason
    assert _until(lambda: _runs(out)["j0.1"] == 1, agent=second)  # started again, whole
    assert _runs(out) == {"j0.0": 2, "j0.1": 1}
    assert sched.get_job("j0").state == "running"
    assert main(["job", "delete", "j0"]) == 0
    assert _until(lambda: sched.get_job("j0").pid is None, agent=second)


def kill_round(home: Path, out: Path, delay: float, jobs: int = 8) -> collections.Counter:
    """The audit's repro: `jobs` one-GPU jobs that append $VEIL_JOB to a file, the agent
    killed `delay` seconds into its launches, then restarted until every job has ended.
    Returns how many times each job ran."""
    _cluster_of(jobs, jobs, QUICK, out)
    agent = _agent_process(home)
    try:
        logs = sched.log_path("j0").parent
        assert _until(lambda: logs.is_dir() and any(logs.glob("*.log")), 60)
        time.sleep(delay)
    finally:
        _kill(agent)
    second = Agent(grace=1)
    assert _until(_all_ended, 60, agent=second)
    for log in logs.glob("*.log"):  # no launcher died of its agent's broken pipe
        assert "Traceback" not in log.read_text(), log.read_text()
    return _runs(out)


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.25])
def test_an_agent_killed_while_launching_runs_every_job_exactly_once(home, tmp_path, delay):
    runs = kill_round(home, tmp_path / "runs.txt", delay)
    assert runs == {f"j{i}": 1 for i in range(8)}


@pytest.mark.slow
@pytest.mark.parametrize("delay", [round(i * 0.05, 2) for i in range(20)])
def test_many_agent_kills_run_every_job_exactly_once(home, tmp_path, delay):
    runs = kill_round(home, tmp_path / "runs.txt", delay)
    assert runs == {f"j{i}": 1 for i in range(8)}


# ------------------------------------------------------------------ names, reused
def test_a_deleted_jobs_name_can_be_used_again(capsys, home, tmp_path):
    out = tmp_path / "runs.txt"
    sched.add_node("n1", 1)
    sched.create_project("p", 1)
    command = ["sh", "-c", f"echo first >> {out}; echo out-first; sleep 1000"]
    assert main(["job", "submit", "j1", "-p", "p", "--", *command]) == 0
    agent = Agent(grace=2)
    assert _until(lambda: _runs(out)["first"] == 1, agent=agent)
    # deleted while it runs, and submitted again at once: the old processes still stop
    assert main(["job", "delete", "j1"]) == 0
    code = main(["job", "submit", "j1", "-p", "p", "--", "sh", "-c",
                 f"echo second >> {out}; echo out-second"])
    assert code == 0, capsys.readouterr().err
    assert [j.name for j in sched.list_jobs(all_states=True)] == ["j1"]
    assert _until(lambda: sched.get_job("j1").state == "completed", agent=agent)
    assert _runs(out) == {"first": 1, "second": 1}
    assert "out-second" in sched.job_log("j1") and "out-first" not in sched.job_log("j1")
    assert all(not r["name"].startswith("~") for r in _rows(home))  # the old record went
    # a finished job's name is free once it is deleted; a live one's never is
    assert main(["job", "delete", "j1"]) == 0
    assert main(["job", "submit", "j1", "-p", "p", "--", "true"]) == 0
    capsys.readouterr()
    refused(capsys, ["job", "submit", "j1", "-p", "p", "--", "true"], "exists", home=home,
            code=1)


def test_a_job_deleted_twice_keeps_its_gpus_until_its_processes_are_gone(home, tmp_path):
    sched.add_node("n1", 1)
    sched.create_project("p", 1)
    up = tmp_path / "up"
    stubborn = f"trap '' TERM; touch {up}; while true; do sleep 0.1; done"
    sched.submit("old", "p", 1, ["sh", "-c", stubborn])
    agent = Agent(grace=30)
    assert _until(up.exists, agent=agent)
    sched.delete_jobs(["old"])
    sched.delete_jobs(["old"])  # again: its GPU is still held by its processes
    sched.submit("new", "p", 1, ["true"])
    assert agent.reconcile()["started"] == []
    assert sched.get_job("old").pid is not None
    agent.grace = 0  # now SIGKILL: the GPU is free once the old process is gone
    assert _until(lambda: sched.get_job("new").state == "completed", agent=agent)


def test_a_database_made_before_launch_ids_is_upgraded(capsys, home):
    home.mkdir()
    old_schema = sched._api.SCHEMA.replace(", launch TEXT", "")
    assert old_schema != sched._api.SCHEMA
    db = sqlite3.connect(home / "sched.db")
    db.executescript(old_schema)
    db.close()
    assert main(["node", "add", "n1", "--gpus", "1"]) == 0
    assert main(["project", "create", "p", "--gpus", "1"]) == 0
    assert main(["job", "submit", "j", "-p", "p", "--", "true"]) == 0
    assert _until(lambda: sched.get_job("j").state == "completed", agent=Agent())


def test_a_job_whose_runner_alone_was_killed_is_not_started_beside_itself(home, tmp_path):
    out = tmp_path / "runs.txt"
    _cluster_of(1, 1, "echo $VEIL_JOB >> {out}; exec sleep 1000", out)
    agent = Agent(grace=1)
    assert _until(lambda: _runs(out)["j0"] == 1, agent=agent)
    runner = sched.get_job("j0").pid
    os.kill(runner, signal.SIGKILL)  # the job itself goes on, in the runner's group
    group = json.loads(_rows(home)[0]["pids"])[0][2]
    time.sleep(0.3)
    for _ in range(3):
        assert agent.reconcile()["requeued"] == []
    assert sched.get_job("j0").state == "running" and _runs(out)["j0"] == 1
    os.killpg(group, signal.SIGKILL)  # now it is gone too, without a status: requeued once
    assert _until(lambda: _runs(out)["j0"] == 2, agent=agent)
