"""Fair GPU sharing through the commands (TR-4858's exact command sequences), bad input, and the
agent running, preempting and restarting real processes."""

from __future__ import annotations

import json
import os
import signal
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


def veil(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def table() -> dict[str, tuple[float, int]]:
    return {r.name: (r.allocated, r.pending) for r in sched.list_projects()}


def two_dgx1(capsys) -> None:
    for n in ("dgx1-1", "dgx1-2"):
        assert veil(capsys, "node", "add", n, "--gpus", "8")[0] == 0
    for p, q in (("team-a", 4), ("team-b", 2), ("team-c", 2), ("team-d", 8)):
        assert veil(capsys, "project", "create", p, "--gpus", str(q))[0] == 0


SECTION_4_8 = """
a-1-1-jupyter -g 1 --interactive --port 8888 -p team-a
a-1-g -g 1 -p team-a
a-2-gg -g 2 -p team-a
b-1-g06 -g 0.6 --interactive -p team-b
b-2-g04 -g 0.4 --interactive -p team-b
b-3-g -g 1 -p team-b
b-4-gg -g 2 -p team-b
c-1-g05 -g 0.5 --interactive -p team-c
c-2-g03 -g 0.3 --interactive -p team-c
c-3-g02 -g 0.2 --interactive -p team-c
c-4-gg -g 2 -p team-c
c-5-g -g 1 -p team-c
d-1-gggg -g 4 -p team-d
"""


def submit_lines(capsys, lines: str) -> None:
    for line in lines.strip().splitlines():
        assert veil(capsys, "job", "submit", *line.split(), "--", "sleep", "1000")[0] == 0, line


def test_the_seeds_command_sequences_give_the_seeds_tables(home, capsys):
    two_dgx1(capsys)
    submit_lines(capsys, SECTION_4_8)
    assert table() == {"team-a": (4, 0), "team-b": (4, 0), "team-c": (4, 0), "team-d": (4, 0)}
    code, out, _ = veil(capsys, "job", "list")
    assert code == 0 and "http://127.0.0.1:8888/" in out and "Interactive" in out

    submit_lines(capsys, "d-2-gg -g 2 -p team-d\nd-3-gg -g 2 -p team-d")  # 4.9
    assert table() == {"team-a": (4, 0), "team-b": (2, 1), "team-c": (2, 1), "team-d": (8, 0)}
    waiting = [j.name for j in sched.list_jobs() if j.state == "pending"]
    assert sorted(j[0] for j in waiting) == ["b", "c"]
    code, out, _ = veil(capsys, "job", "why", "b-4-gg")
    assert "b-4-gg is pending (preempted 1 time(s))" in out
    assert "preempted to reclaim GPUs for d-2-gg" in out

    submit_lines(capsys, "a-3-gg -g 2 -p team-a")  # 4.10
    assert table()["team-a"] == (4, 1)
    submit_lines(capsys, "a-4-gg -g 2 -p team-a\nb-5-gg -g 2 -p team-b\nc-6-gg -g 2 -p team-c")
    assert table() == {"team-a": (4, 2), "team-b": (2, 2), "team-c": (2, 2), "team-d": (8, 0)}
    code, _, _ = veil(capsys, "job", "delete", "-p", "team-d", "d-1-gggg", "d-2-gg", "d-3-gg")
    assert code == 0
    assert table() == {"team-a": (8, 0), "team-b": (4, 1), "team-c": (4, 1), "team-d": (0, 0)}

    code, out, _ = veil(capsys, "project", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["team-a"]["fair_share"] == 8 and rows["team-b"]["fair_share"] == 4
    png = home.parent / "alloc.png"
    assert veil(capsys, "report", "--plot", str(png))[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_one_line_and_non_zero(home, capsys):
    two_dgx1(capsys)
    cases = [
        (["submit", "j", "-p", "nope", "-g", "1", "--", "true"], 1, "no project 'nope'"),
        (["submit", "j", "-p", "team-a", "-g", "0", "--", "true"], 2, "a fraction from 0.01 to 1"),
        (["submit", "j", "-p", "team-a", "-g", "1.5", "--", "true"], 2, "(0, 1]"),
        (["submit", "j", "-p", "team-a", "-g", "-1", "--", "true"], 2, "a fraction from 0.01 to 1"),
        (["submit", "j", "-p", "team-b", "-g", "3", "--interactive", "--", "true"], 2,
         "must fit team-b's quota of 2 GPUs"),
        (["submit", "j", "-p", "team-a", "-g", "1", "--port", "80", "--", "true"], 2,
         "--interactive"),
        (["submit", "j", "-p", "team-a", "-g", "1"], 2, "command after --"),
        (["delete", "ghost"], 1, "no job 'ghost'"),
        (["project", "create", "team-a", "--gpus", "1"], 1, "already exists"),
        (["project", "create", "Bad_Name", "--gpus", "1"], 2, "invalid project name"),
        (["submit", "j", "-p", "team-a", "-g", "inf", "--", "true"], 2, "finite"),
        (["submit", "j", "-p", "team-a", "-g", "9", "--", "true"], 2, "can never be placed"),
        (["submit", "j", "-p", "team-a", "-g", "8", "--processes", "3", "--", "true"], 2,
         "can never be placed"),
        (["project", "create", "t", "--gpus", "1", "--over-quota-weight", "inf"], 2, "finite"),
        (["project", "create", "t", "--gpus", "1", "--interactive-time-limit", "nan"], 2,
         "finite"),
        (["node", "add", "huge", "--gpus", "1000000"], 2, "from 0 to 1024"),
        (["scheduler", "run", "--interval", "-1", "--once"], 2, "--interval"),
    ]
    for args, want, text in cases:
        code, _, err = veil(capsys, *args)
        assert code == want and text in err and len(err.strip().splitlines()) == 1, (args, err)
    assert veil(capsys, "job", "submit", "j", "-p", "team-a", "-g", "1", "--", "true")[0] == 0
    code, _, err = veil(capsys, "job", "submit", "j", "-p", "team-a", "-g", "1", "--", "true")
    assert code == 1 and "a job named 'j' exists" in err
    code, _, err = veil(capsys, "project", "delete", "team-a")
    assert code == 1 and "active job" in err
    code, _, err = veil(capsys, "node", "delete", "dgx1-1")
    assert code == 1 and "runs on node" in err
    code, _, err = veil(capsys, "project", "create", "team-e", "--gpus", "4")
    assert code == 0 and "warning: quotas now sum to 20 GPUs" in err


JOB = textwrap.dedent("""
    import os, signal, sys, time
    out = sys.argv[1]
    with open(out, "a") as f:
        f.write(f"start {os.getpid()} {os.environ['CUDA_VISIBLE_DEVICES']} "
                f"{os.environ.get('VEIL_GPU_FRACTION', '-')} {os.environ.get('RANK', '-')}\\n")
    def term(*_):
        with open(out, "a") as f:
            f.write("term\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, term)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1000)
""")


def test_the_agent_starts_preempts_and_restarts_real_processes(home, tmp_path, capsys):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    assert veil(capsys, "node", "add", "n1", "--gpus", "2")[0] == 0
    for p in ("low", "high"):
        assert veil(capsys, "project", "create", p, "--gpus", "1")[0] == 0
    logs = {n: tmp_path / f"{n}.txt" for n in ("low-1", "low-2", "high-1")}
    for n in ("low-1", "low-2"):
        assert veil(capsys, "job", "submit", n, "-p", "low", "-g", "1", "--", sys.executable,
                    str(script), str(logs[n]))[0] == 0
    agent = Agent(grace=5)
    assert wait_for(lambda: all(p.exists() for n, p in logs.items() if n != "high-1"), agent)
    gpus = sorted(logs[n].read_text().split()[2] for n in ("low-1", "low-2"))
    assert gpus == ["0", "1"]  # CUDA_VISIBLE_DEVICES: one GPU each
    # high is entitled to its quota: one low job is preempted (SIGTERM) for it
    assert veil(capsys, "job", "submit", "high-1", "-p", "high", "-g", "1", "--", sys.executable,
                str(script), str(logs["high-1"]))[0] == 0
    assert wait_for(lambda: logs["high-1"].exists(), agent)
    victim = next(j for j in sched.list_jobs() if j.name.startswith("low")
                  and j.state == "pending")
    assert "term" in logs[victim.name].read_text() and victim.preemptions == 1
    assert "preempted to reclaim GPUs for high-1" in sched.why(victim.name)
    # high finishes: the preempted job starts again, in a new process
    assert veil(capsys, "job", "delete", "high-1")[0] == 0
    assert wait_for(lambda: logs[victim.name].read_text().count("start") == 2, agent)
    again = sched.get_job(victim.name)  # restarted, not taken for finished by its clean exit
    assert again.state == "running" and again.preemptions == 1 and again.exit_code is None
    for n in ("low-1", "low-2"):
        assert veil(capsys, "job", "delete", n)[0] == 0
    assert wait_for(lambda: all(j.pid is None for j in sched.list_jobs(all_states=True)), agent)


def test_a_restarted_agent_loses_no_job(home, tmp_path, capsys):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    assert veil(capsys, "node", "add", "n1", "--gpus", "4")[0] == 0
    assert veil(capsys, "project", "create", "p", "--gpus", "4")[0] == 0
    out = {n: tmp_path / f"{n}.txt" for n in ("keeps", "ends", "killed", "frac", "mpi")}
    for n, extra in (("keeps", []), ("ends", ["0.5"]), ("killed", [])):
        assert veil(capsys, "job", "submit", n, "-p", "p", "-g", "1", "--", sys.executable,
                    str(script), str(out[n]), *extra)[0] == 0
    assert veil(capsys, "job", "submit", "frac", "-p", "p", "-g", "0.5", "--", sys.executable,
                str(script), str(out["frac"]))[0] == 0
    first = Agent(grace=2)
    assert wait_for(lambda: all(out[n].exists() for n in ("keeps", "ends", "killed", "frac")),
                    first)
    assert out["frac"].read_text().split()[3] == "0.5"  # VEIL_GPU_FRACTION
    pid_keeps = sched.get_job("keeps").pid
    del first  # the agent goes away; its jobs do not
    jobs = Path(home / "sched" / "jobs")
    deadline = time.monotonic() + 20
    while not list(jobs.glob("ends.*.0.exit")) and time.monotonic() < deadline:
        time.sleep(0.1)  # "ends" finishes meanwhile
    pid = sched.get_job("killed").pid
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # and this one dies without a status
    time.sleep(0.3)
    second = Agent(grace=2)
    second.reconcile()
    assert sched.get_job("keeps").pid == pid_keeps  # adopted, not restarted
    ends = sched.get_job("ends")
    assert ends.state == "completed" and ends.exit_code == 0
    assert wait_for(lambda: out["killed"].read_text().count("start") == 2, second)
    names = {j.name: j.state for j in sched.list_jobs(all_states=True)}
    assert names == {"keeps": "running", "ends": "completed", "killed": "running",
                     "frac": "running"}
    # a multi-process job: all processes at once, with their ranks
    assert veil(capsys, "job", "delete", "keeps", "killed", "frac")[0] == 0
    assert veil(capsys, "job", "submit", "mpi", "-p", "p", "-g", "1", "--processes", "2", "--",
                sys.executable, str(script), str(out["mpi"]))[0] == 0
    assert wait_for(lambda: out["mpi"].exists() and
                    out["mpi"].read_text().count("start") == 2, second)
    ranks = sorted(line.split()[4] for line in out["mpi"].read_text().splitlines())
    assert ranks == ["0", "1"]
    assert veil(capsys, "job", "delete", "mpi")[0] == 0
    assert wait_for(lambda: all(j.pid is None for j in sched.list_jobs(all_states=True)),
                    second)


def test_interactive_jobs_stop_at_the_time_limit(home, tmp_path, capsys):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    assert veil(capsys, "node", "add", "n1", "--gpus", "1")[0] == 0
    assert veil(capsys, "project", "create", "p", "--gpus", "1", "--interactive-time-limit",
                "1")[0] == 0
    assert veil(capsys, "job", "submit", "nb", "-p", "p", "-g", "1", "--interactive", "--",
                sys.executable, str(script), str(tmp_path / "nb.txt"))[0] == 0
    agent = Agent(grace=2)
    assert wait_for(lambda: sched.get_job("nb").state == "completed" and
                    sched.get_job("nb").pid is None, agent, timeout=30)
    assert "interactive time limit" in sched.why("nb") or \
        "time limit" in sched.get_job("nb").reason
    assert "term" in Path(tmp_path / "nb.txt").read_text()


def test_kai_scheduler_objects_for_the_projects_and_jobs(home, tmp_path, capsys):
    kv = pytest.importorskip("kubernetes_validate")
    import yaml

    two_dgx1(capsys)
    submit_lines(capsys, "a-1-g -g 1 -p team-a\nb-1-g06 -g 0.6 --interactive -p team-b")
    assert veil(capsys, "job", "submit", "mpi", "-p", "team-d", "-g", "1", "--processes", "3", "--",
                "python", "train.py")[0] == 0
    assert veil(capsys, "export", "k8s", str(tmp_path / "k8s"))[0] == 0
    qs = list(yaml.safe_load_all((tmp_path / "k8s" / "queues.yaml").read_text()))
    assert qs[0]["metadata"]["name"] == "veil" and qs[0]["spec"]["resources"]["gpu"]["quota"] == 16
    by = {q["metadata"]["name"]: q["spec"] for q in qs[1:]}
    assert by["team-a"]["parentQueue"] == "veil"
    assert by["team-a"]["resources"]["gpu"] == {"quota": 4, "overQuotaWeight": 4, "limit": -1}
    frac = next(yaml.safe_load_all((tmp_path / "k8s" / "pods-b-1-g06.yaml").read_text()))
    assert frac["metadata"]["annotations"]["gpu-fraction"] == "0.6"
    assert frac["metadata"]["labels"]["kai.scheduler/queue"] == "team-b"
    assert frac["spec"]["schedulerName"] == "kai-scheduler"
    assert frac["spec"]["priorityClassName"] == "build"
    ranks = list(yaml.safe_load_all((tmp_path / "k8s" / "pods-mpi.yaml").read_text()))
    assert len(ranks) == 3
    whole = next(yaml.safe_load_all((tmp_path / "k8s" / "pods-a-1-g.yaml").read_text()))
    assert whole["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    for pod in [frac, whole, *ranks]:
        kv.validate(pod, "1.30.0", strict=True)


def test_affinity_limit_fraction_hook_and_sigkill_after_grace(home, tmp_path, capsys):
    for n in ("small", "big"):
        assert veil(capsys, "node", "add", n, "--gpus", "2")[0] == 0
    assert veil(capsys, "project", "create", "pinned", "--gpus", "1", "--node", "big",
                "--limit", "2")[0] == 0
    code, _, err = veil(capsys, "project", "create", "x", "--gpus", "1", "--node", "nowhere")
    assert code == 1 and "no node 'nowhere'" in err
    for i in range(3):
        assert veil(capsys, "job", "submit", f"p{i}", "-p", "pinned", "-g", "1", "--", "sleep",
                    "1000")[0] == 0
    jobs = {j.name: j for j in sched.list_jobs()}
    assert all(j.nodes == "big" for j in jobs.values() if j.state == "running")
    assert sum(j.state == "running" for j in jobs.values()) == 2  # the limit, not the cluster
    assert "over its limit of 2" in sched.why("p2")
    assert veil(capsys, "job", "delete", "p0", "p1", "p2")[0] == 0
    # a fraction: torch gets its per-process memory fraction when the job imports it
    assert veil(capsys, "project", "create", "frac", "--gpus", "1")[0] == 0
    probe = tmp_path / "probe.txt"
    code = (f"import os, torch, pathlib; pathlib.Path({str(probe)!r}).write_text("
            "os.environ.get('VEIL_GPU_FRACTION_HOOK', 'no hook'))")
    assert veil(capsys, "job", "submit", "f", "-p", "frac", "-g", "0.5", "--", sys.executable, "-c",
                code)[0] == 0
    # a job that ignores SIGTERM is killed once the grace period is over
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "open(__file__ + '.up', 'w').close()\ntime.sleep(1000)\n")
    assert veil(capsys, "job", "submit", "s", "-p", "frac", "-g", "0.5", "--", sys.executable,
                str(stubborn))[0] == 0
    agent = Agent(grace=0.5)
    assert wait_for(lambda: probe.exists() and Path(str(stubborn) + ".up").exists(), agent)
    import torch

    # the hook ran inside the job's torch import; with a GPU it sets the memory fraction
    assert probe.read_text() == ("applied" if torch.cuda.is_available() else "no-cuda")
    assert veil(capsys, "job", "delete", "s")[0] == 0
    t0 = time.monotonic()
    assert wait_for(lambda: sched.get_job("s").pid is None, agent)
    assert time.monotonic() - t0 < 10
