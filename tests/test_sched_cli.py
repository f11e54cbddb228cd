"""The scheduler's command line as a user meets it (issue 16): the `veil job` group and its
hidden top-level aliases, finished and failed jobs that stay in `veil job list` for an hour,
`--json` on every command that prints a result, human output free of Python reprs, and an
agent that stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import kill_processes_under, wait_for
from veil import sched
from veil.cli import main
from veil.sched import Agent


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    kill_processes_under(tmp_path)


@pytest.fixture
def job_script(tmp_path) -> Path:
    """A job that writes `up` beside itself, then sleeps (its path names the test's folder, so
    a failed test's processes are found and killed)."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import pathlib, sys, time
        pathlib.Path(__file__ + "." + sys.argv[1] + ".up").touch()
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    """))
    return script


def veil(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def ok(capsys, *args) -> str:
    code, out, err = veil(capsys, *args)
    assert code == 0, (args, err)
    return out


def stop_all(capsys) -> None:
    """Delete every job and let an agent stop their processes."""
    ok(capsys, "job", "delete", "--all")
    assert wait_for(lambda: all(j.pid is None for j in sched.list_jobs(all_states=True)),
                 Agent(grace=1))


def age(home: Path, job: str, seconds: float) -> None:
    """Move a job's submission, start and end `seconds` into the past."""
    db = sqlite3.connect(home / "sched.db")
    with db:
        db.execute("UPDATE jobs SET submitted=submitted-?, started=started-?, ended=ended-? "
                   "WHERE name=?", (seconds, seconds, seconds, job))
    db.close()


# ------------------------------------------------------------------ the job group
def test_the_job_group_is_documented_and_the_old_names_are_hidden_aliases(home, capsys):
    top = ok(capsys, "--help")
    assert re.search(r"\bjob\s+Jobs: submit, list", top)
    for alias in ("submit", "list", "describe", "why", "logs", "delete"):
        assert not re.search(rf"│ {alias}\s", top), alias  # hidden from the top-level help
        assert f"veil job {alias}" in ok(capsys, "job", alias, "--help")
    ok(capsys, "node", "add", "n1", "--gpus", "2")
    ok(capsys, "project", "create", "p", "--gpus", "2")
    ok(capsys, "job", "submit", "j1", "-p", "p", "-g", "1", "--", "sleep", "1000")
    ok(capsys, "submit", "j2", "-p", "p", "-g", "1", "--", "sleep", "1000")  # the alias
    for spelling in (["job", "list"], ["list"]):
        out = ok(capsys, *spelling)
        assert "j1" in out and "j2" in out
    for command in ("describe", "why"):
        assert ok(capsys, "job", command, "j2") == ok(capsys, command, "j2")
    assert ok(capsys, "job", "logs", "j1") == ok(capsys, "logs", "j1")
    assert "deleted" in ok(capsys, "job", "delete", "j1")
    assert "deleted" in ok(capsys, "delete", "j2")
    assert sched.get_job("j1").state == sched.get_job("j2").state == "deleted"


def test_error_hints_name_the_job_commands(home, capsys):
    ok(capsys, "node", "add", "n1", "--gpus", "1")
    ok(capsys, "project", "create", "p", "--gpus", "1")
    code, _, err = veil(capsys, "job", "describe", "ghost")
    assert code == 1 and "(veil job list --all)" in err
    ok(capsys, "job", "submit", "j", "-p", "p", "--", "true")
    code, _, err = veil(capsys, "job", "submit", "j", "-p", "p", "--", "true")
    assert code == 1 and "veil job delete j first" in err
    code, _, err = veil(capsys, "job", "submit", "k", "-p", "p")
    assert code == 2 and "e.g. veil job submit" in err


# ------------------------------------------------------------------ ended jobs stay listed
def test_a_failed_job_stays_listed_for_an_hour_with_its_exit_code(home, tmp_path, capsys):
    ok(capsys, "node", "add", "n1", "--gpus", "2")
    ok(capsys, "project", "create", "p", "--gpus", "2")
    ok(capsys, "job", "submit", "bad", "-p", "p", "--", "sh", "-c", f"exit 3 # {tmp_path}")
    ok(capsys, "job", "submit", "good", "-p", "p", "--", "sh", "-c", f"exit 0 # {tmp_path}")
    assert wait_for(lambda: {j.state for j in sched.list_jobs(all_states=True)} ==
                 {"failed", "completed"}, Agent(grace=1))
    out = ok(capsys, "job", "list")
    assert re.search(r"bad\s+Failed \(exit 3\)", out) and re.search(r"good\s+Completed", out)
    assert "Not shown" not in out
    rows = {r["name"]: r for r in json.loads(ok(capsys, "job", "list", "--json"))}
    assert rows["bad"]["state"] == "failed" and rows["bad"]["exit_code"] == 3
    assert rows["good"]["state"] == "completed"
    assert "bad failed with exit code 3." in ok(capsys, "job", "why", "bad")
    assert "Status: Failed (exit 3)" in ok(capsys, "job", "describe", "bad")

    # an hour on, they are left out, and a line says so; --all still shows them
    age(home, "bad", 3601)
    age(home, "good", 3601)
    ok(capsys, "job", "submit", "gone", "-p", "p", "--", "true")
    ok(capsys, "job", "delete", "gone")
    out = ok(capsys, "job", "list")
    assert "No jobs." in out and "bad" not in out
    assert "Not shown: 2 that ended over an hour ago and 1 deleted (veil job list --all" in out
    assert json.loads(ok(capsys, "job", "list", "--json")) == []
    out = ok(capsys, "job", "list", "--all")
    assert "Failed (exit 3)" in out and "Deleted" in out and "Not shown" not in out
    assert len(json.loads(ok(capsys, "job", "list", "--all", "--json"))) == 3
    assert sched.recent_jobs().older == 2


# ------------------------------------------------------------------ --json everywhere
def test_every_command_that_prints_a_result_prints_one_json_document(home, tmp_path, capsys):
    def doc(*args):
        at = args.index("--") if "--" in args else len(args)  # after it: the job's command
        return json.loads(ok(capsys, *args[:at], "--json", *args[at:]))

    assert doc("node", "add", "n1", "--gpus", "4") == {
        "name": "n1", "gpus": 4, "allocated": 0, "labels": {}, "per_gpu": [0, 0, 0, 0]}
    assert doc("node", "add", "n2", "--gpus", "1")["name"] == "n2"
    assert doc("node", "delete", "n2") == {"deleted": "n2"}
    p = doc("project", "create", "p", "--gpus", "2")
    assert p["name"] == "p" and p["quota"] == 2 and p["allocated"] == 0
    assert doc("project", "create", "q", "--gpus", "1")["name"] == "q"
    assert doc("project", "delete", "q") == {"deleted": "q"}
    j = doc("job", "submit", "nb", "-p", "p", "-g", "0.5", "--interactive", "--port", "8888",
            "--", "sleep", "1000")
    assert j["name"] == "nb" and j["state"] == "running" and j["type"] == "Interactive"
    assert j["service_url"] == "http://127.0.0.1:8888/"
    assert doc("job", "why", "nb") == {"name": "nb", "why": "nb is running on n1 GPU 0."}
    assert doc("job", "describe", "nb")["why"] == "nb is running on n1 GPU 0."
    assert [r["name"] for r in doc("job", "list")] == ["nb"]
    assert [r["name"] for r in doc("project", "list")] == ["p"]
    assert [r["name"] for r in doc("node", "list")] == ["n1"]
    png = tmp_path / "alloc.png"
    history = doc("report", "--plot", png)
    assert {"p", "q"} == {h["project"] for h in history} and png.exists()  # and the plot
    assert doc("job", "delete", "nb") == {"deleted": ["nb"]}
    assert doc("job", "delete", "--all") == {"deleted": []}


# ------------------------------------------------------------------ no Python reprs
REPR = re.compile(r"\[\[|\[\(|\{'|\['|\d\.\d{4,}")


def test_human_output_has_no_python_reprs_or_long_floats(home, tmp_path, job_script, capsys):
    """A scenario whose fair shares are thirds (7 GPUs shared 1:2), with fractions, a
    preemption, a failed job and the agent's messages; every line a command prints is read."""
    shown: list[str] = []

    def human(*args) -> str:
        code, out, err = veil(capsys, *args)
        assert code == 0, (args, err)
        shown.append(out + err)
        return out + err

    def job(name, project, gpus, *extra):
        human("job", "submit", name, "-p", project, "-g", gpus, *extra, "--", sys.executable,
              job_script, name)

    human("node", "add", "n1", "--gpus", "7")
    human("project", "create", "p", "--gpus", "1")
    human("project", "create", "q", "--gpus", "1", "--over-quota-weight", "2")
    assert "quotas now sum to 7.33 GPUs" in human("project", "create", "r", "--gpus", "5.3333")
    for name, gpus in (("p-a", "4"), ("p-b", "1"), ("p-c", "1"), ("p-f", "0.3"), ("p-g", "0.2")):
        job(name, "p", gpus)
    human("scheduler", "run", "--once")  # starts them: the agent's messages
    assert wait_for(lambda: all(Path(f"{job_script}.{n}.up").exists()
                             for n in ("p-a", "p-b", "p-c", "p-f", "p-g")), Agent(grace=1))
    job("q-a", "q", "4")  # q wants 5: its fair share is 1 + 5 * 2/3, and p gives GPUs back
    job("q-b", "q", "1")
    human("job", "submit", "q-x", "-p", "q", "-g", "0.1", "--", "sh", "-c",
          f"exit 3 # {tmp_path}")
    agent = Agent(grace=1)
    assert wait_for(lambda: sched.get_job("q-x").state == "failed", agent)
    human("scheduler", "run", "--once", "--grace", "1")
    for r in sched.list_jobs(all_states=True):
        human("job", "describe", r.name)
        human("job", "why", r.name)
        human("job", "logs", r.name)
    human("job", "list")
    human("job", "list", "--all")
    human("project", "list")
    human("node", "list")
    human("report")
    text = "\n".join(shown)
    assert "2.67" in text and "4.33" in text  # the thirds were shown, rounded
    assert "Placement: n1 GPU" in text and "Failed (exit 3)" in text
    assert "preempted" in text
    bad = [line for line in text.splitlines() if REPR.search(line)]
    assert bad == []
    human("job", "delete", "--all")
    assert wait_for(lambda: all(j.pid is None for j in sched.list_jobs(all_states=True)), agent)
    assert not REPR.search(shown[-1])


# ------------------------------------------------------------------ stopping cleanly
def test_a_stopped_agent_first_stops_the_jobs_being_deleted(home, tmp_path, capsys):
    """`veil job delete --all` then SIGTERM to `veil scheduler run`: the agent SIGKILLs a job
    that ignores SIGTERM once its grace is over, then leaves, even with a long --interval."""
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text("import pathlib, signal, time\n"
                        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "pathlib.Path(__file__ + '.up').touch()\ntime.sleep(1000)\n")
    ok(capsys, "node", "add", "n1", "--gpus", "2")
    ok(capsys, "project", "create", "p", "--gpus", "2")
    ok(capsys, "job", "submit", "stubborn", "-p", "p", "--", sys.executable, stubborn)
    agent = subprocess.Popen([sys.executable, "-m", "veil", "scheduler", "run", "--interval",
                              "600", "--grace", "1"], env=dict(os.environ, VEIL_HOME=str(home)),
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{stubborn}.up").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = sched.get_job("stubborn").pid
        assert pid is not None
        ok(capsys, "job", "delete", "--all")
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
    assert agent.returncode == 0, err
    assert "stopping stubborn before leaving" in err
    assert "agent stopped; no job runs" in err
    assert sched.get_job("stubborn").pid is None
    assert not any(str(stubborn).encode() in p.read_bytes()
                   for p in Path("/proc").glob("[0-9]*/cmdline") if p.exists())


def test_jobs_that_were_not_deleted_outlive_the_agent_and_it_says_so(home, job_script,
                                                                     capsys):
    ok(capsys, "node", "add", "n1", "--gpus", "1")
    ok(capsys, "project", "create", "p", "--gpus", "1")
    ok(capsys, "job", "submit", "keeps", "-p", "p", "--", sys.executable, job_script, "keeps")
    agent = subprocess.Popen([sys.executable, "-m", "veil", "scheduler", "run"],
                             env=dict(os.environ, VEIL_HOME=str(home)), stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{job_script}.keeps.up").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        agent.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
    assert agent.returncode == 0, err
    assert "agent stopped; 1 job(s) still run and outlive it (keeps)" in err
    assert sched.get_job("keeps").state == "running"
    stop_all(capsys)


def test_delete_all_takes_the_project_into_account_and_refuses_names_with_it(home, capsys):
    ok(capsys, "node", "add", "n1", "--gpus", "2")
    for p in ("p", "q"):
        ok(capsys, "project", "create", p, "--gpus", "1")
        ok(capsys, "job", "submit", f"{p}-1", "-p", p, "--", "sleep", "1000")
    assert json.loads(ok(capsys, "job", "delete", "--all", "-p", "q", "--json")) == {
        "deleted": ["q-1"]}
    assert sched.get_job("p-1").state == "running"
    code, _, err = veil(capsys, "job", "delete", "p-1", "--all")
    assert code == 2 and "not both" in err
    code, _, err = veil(capsys, "job", "delete")
    assert code == 2 and "--all" in err
    assert "No active jobs to delete." in ok(capsys, "job", "delete", "--all", "-p", "q")
