"""veil.process with real processes: detached starts, identity by start time, pid files, and
stopping with SIGTERM, then SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import kill_processes_under
from veil.errors import VeilError
from veil.process import (
    Proc,
    adopt,
    descendants,
    group_members,
    pid_alive,
    proc_start_time,
    spawn_detached,
    stop,
    write_pidfile,
)


@pytest.fixture
def tmp(tmp_path):
    yield tmp_path
    kill_processes_under(tmp_path)


def spawn(tmp: Path, name: str, body: str) -> Proc:
    """A detached Python process running `body` (with `here`, the test's folder)."""
    script = tmp / f"{name}.py"
    script.write_text("import sys\nfrom pathlib import Path\nfrom veil.process import detach\n"
                      "detach()\nhere = Path(sys.argv[1])\n" + textwrap.dedent(body))
    return spawn_detached([sys.executable, str(script), str(tmp)], log=tmp / f"{name}.log")


def wait_for(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


SLEEPER = """
print("up", flush=True)
(here / "up").touch()
import time
time.sleep(1000)
"""


def test_a_detached_process_outlives_the_command_that_started_it_in_a_session_of_its_own(tmp):
    starter = ("import sys, json; from veil.process import spawn_detached; "
               "print(json.dumps(spawn_detached(sys.argv[2:], log=sys.argv[1])))")
    script = tmp / "sleeper.py"
    script.write_text("import sys\nfrom pathlib import Path\nfrom veil.process import detach\n"
                      "detach()\nhere = Path(sys.argv[1])\n" + SLEEPER)
    log = tmp / "sleeper.log"
    done = subprocess.run([sys.executable, "-c", starter, str(log), sys.executable, str(script),
                           str(tmp)], capture_output=True, text=True, timeout=60, check=True)
    proc = Proc(*json.loads(done.stdout))
    # the command that started it has exited; it still runs, as the same process
    assert wait_for(lambda: (tmp / "up").exists())
    assert proc.alive()
    assert proc.start == proc_start_time(proc.pid)
    # nobody's child here, in its own session, and in the group of its (gone) launcher
    assert os.getsid(proc.pid) == proc.group != os.getsid(0)
    assert os.getpgid(proc.pid) == proc.group != proc.pid
    assert proc.pid not in descendants(os.getpid())
    assert group_members(proc.group) == [proc.pid]
    # its standard output went to the log, not to the starter's pipe
    assert log.read_text() == "up\n"
    assert stop(proc.pid, proc.start, grace=5) is False


def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace_period(tmp):
    proc = spawn(tmp, "stubborn", """
        import signal, time
        def term(*_):
            with open(here / "got", "a") as f:
                f.write("SIGTERM\\n")
        signal.signal(signal.SIGTERM, term)
        (here / "up").touch()
        while True:
            time.sleep(0.05)
    """)
    assert wait_for(lambda: (tmp / "up").exists())
    t0 = time.monotonic()
    killed = stop(proc.pid, proc.start, grace=1.0)
    took = time.monotonic() - t0
    assert killed is True
    assert (tmp / "got").read_text() == "SIGTERM\n"  # asked first, once
    assert 1.0 <= took < 4.0  # the whole grace period, then SIGKILL at once
    assert not proc.alive()


def test_stop_lets_a_process_that_ends_on_sigterm_go_without_killing_it(tmp):
    proc = spawn(tmp, "polite", """
        import signal, sys, time
        def term(*_):
            (here / "cleaned-up").touch()
            sys.exit(0)
        signal.signal(signal.SIGTERM, term)
        (here / "up").touch()
        time.sleep(1000)
    """)
    assert wait_for(lambda: (tmp / "up").exists())
    t0 = time.monotonic()
    assert stop(proc.pid, proc.start, grace=30) is False
    assert time.monotonic() - t0 < 10  # not the grace period: it ended when asked
    assert (tmp / "cleaned-up").exists() and not proc.alive()


def test_stop_also_ends_what_the_process_started_even_once_orphaned(tmp):
    proc = spawn(tmp, "parent", """
        import signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
                                  "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                  "time.sleep(1000)", str(here)])
        (here / "child").write_text(str(child.pid))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leaves its child behind
        time.sleep(1000)
    """)
    assert wait_for(lambda: (tmp / "child").exists())
    child = int((tmp / "child").read_text())
    assert descendants(proc.pid) == [child]
    child_start = proc_start_time(child)
    assert stop(proc.pid, proc.start, grace=10, linger=0.5) is True  # the child was killed
    assert not proc.alive() and not pid_alive(child, child_start)


def test_pid_alive_is_false_for_a_pid_whose_start_time_does_not_match():
    me, start = os.getpid(), proc_start_time(os.getpid())
    assert pid_alive(me, start) and pid_alive(me)
    assert not pid_alive(me, start + 1)  # another process that was given the same pid
    assert not Proc(me, None, os.getpgid(0)).alive()  # no start time: it had already ended
    assert not pid_alive(None) and not pid_alive(0)


def test_pid_alive_is_false_for_zombies_and_reaped_processes():
    zombie = subprocess.Popen(["true"])
    assert wait_for(lambda: not pid_alive(zombie.pid))  # ended, not yet reaped
    assert Path(f"/proc/{zombie.pid}").exists()
    zombie.wait()
    assert not pid_alive(zombie.pid)


def test_a_pidfile_adopts_the_very_process_that_wrote_it(tmp):
    proc = spawn(tmp, "recorded", """
        from veil.process import write_pidfile
        write_pidfile(here / "job.pid")
        import time
        time.sleep(1000)
    """)
    pidfile = tmp / "job.pid"
    assert wait_for(pidfile.exists)
    assert adopt(pidfile) == proc  # pid, start time and group, as spawn_detached saw them
    assert Proc(*json.loads(json.dumps(proc))) == proc  # stored as a JSON list
    pid, start, group = pidfile.read_text().split()
    pidfile.write_text(f"{pid} {int(start) + 1} {group}\n")  # a reused pid is not adopted
    assert adopt(pidfile) is None
    pidfile.write_text(f"{pid} {start} {group}\n")
    assert stop(proc.pid, proc.start, grace=5) is False
    assert adopt(pidfile) is None  # it ended
    for bad in ("", "12 x 3", "1 2"):
        pidfile.write_text(bad)
        assert adopt(pidfile) is None
    assert adopt(tmp / "missing.pid") is None


def test_write_pidfile_records_the_calling_process(tmp):
    me = write_pidfile(tmp / "me.pid")
    assert me == Proc(os.getpid(), proc_start_time(os.getpid()), os.getpgid(0))
    assert adopt(tmp / "me.pid") == me
    assert not list(tmp.glob("*.tmp"))


def test_a_launcher_that_reports_no_pid_fails_in_one_line(tmp):
    with pytest.raises(VeilError) as e:
        spawn_detached([sys.executable, "-c", "import sys; sys.exit(3)"], log=tmp / "x.log",
                       what="job 'x'")
    assert str(e.value) == f"job 'x' could not be launched (exit 3); see {tmp / 'x.log'}"
