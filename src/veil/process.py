"""Processes that veil starts and must find again: the Triton servers of `veil.serve` and the
jobs of `veil.sched`. One place for starting a process detached (nobody's child, in a session
of its own, so it outlives the command that started it), telling it from a later process given
the same pid (its start time in /proc), recording it in a pid file and adopting it after a
restart, and stopping it with everything it started.

Linux first: identities and process trees are read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from veil.errors import VeilError


class Proc(NamedTuple):
    """A process as veil records it: its pid, its start time (clock ticks since boot, from
    /proc; None when it had ended before it could be read) and its process group. A tuple, so
    it is stored in JSON as ``[pid, start, group]`` and read back with ``Proc(*row)``."""

    pid: int
    start: int | None
    group: int

    def alive(self) -> bool:
        """Whether this very process still runs (one recorded without a start time had
        already ended)."""
        return self.start is not None and pid_alive(self.pid, self.start)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], process group
    [2], session [3], start time [19])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def _running_stats() -> dict[int, list[str]]:
    """/proc/PID/stat of every process that runs (zombies left out)."""
    out = {}
    for p in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(p.name))
        if fields and fields[0] not in ("Z", "X"):
            out[int(p.name)] = fields
    return out


def proc_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None when there is no such process."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, given `start`, is the same process as the one
    that started then, not a later one that reuses the pid."""
    if not pid:
        return False
    if Path("/proc").is_dir():
        fields = _stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return start is None or int(fields[19]) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`: its children, their children, ..."""
    children: dict[int, list[int]] = {}
    for p, fields in _running_stats().items():
        children.setdefault(int(fields[1]), []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def group_members(group: int) -> list[int]:
    """The live processes of process group `group`."""
    return [p for p, fields in _running_stats().items() if int(fields[2]) == group]


def signal_group(group: int, sig: int) -> bool:
    """Send `sig` to every process of process group `group`; False when the group is gone or
    is not ours to signal."""
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ------------------------------------------------------------------ starting, detached
def spawn_detached(argv: Sequence[str], *, log: Path | str, env: Mapping[str, str] | None = None,
                   input: bytes | None = None, timeout: float = 60.0,
                   what: str = "process") -> Proc:
    """Start `argv` in a session of its own and return the process it leaves running.

    `argv` is a launcher that calls `detach()` first: it prints the pid of a forked child and
    exits at once, so that child is nobody's child (no zombie, it outlives this process) and
    its pid is known from the first moment. `input` goes to the launcher's standard input (read
    it before `detach()`); standard error, and the child's output, are appended to `log`."""
    with open(log, "ab") as err, subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, env=None if env is None else dict(env),
            start_new_session=True) as launcher:
        try:
            out, _ = launcher.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    try:
        pid = int(out.decode().split()[-1])
    except (ValueError, IndexError):
        raise VeilError(f"{what} could not be launched (exit {launcher.returncode}); see "
                        f"{log}") from None
    # the launcher led a new session, so its pid is the group: it outlives the launcher
    return Proc(pid, proc_start_time(pid), launcher.pid)


def detach() -> None:
    """The launcher's side of `spawn_detached`: fork; the parent prints the child's pid and
    exits, the child returns with standard input from /dev/null and standard output joined to
    standard error (the log), so the launcher's pipe is let go."""
    child = os.fork()
    if child > 0:
        print(child, flush=True)
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)


# ------------------------------------------------------------------ pid files
def write_pidfile(path: Path | str) -> Proc:
    """Record the calling process in `path` (atomically: readers never see half a file), so a
    restarted supervisor can adopt it."""
    pid = os.getpid()
    me = Proc(pid, proc_start_time(pid), os.getpgid(0))
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{me.pid} {me.start} {me.group}\n")
    os.replace(tmp, path)
    return me


def adopt(path: Path | str) -> Proc | None:
    """The process recorded in pid file `path`, if that very process still runs; else None
    (no file, a malformed one, or a process that ended)."""
    try:
        pid, start, group = (int(x) for x in Path(path).read_text().split())
    except (OSError, ValueError):
        return None
    proc = Proc(pid, start, group)
    return proc if proc.alive() else None


# ------------------------------------------------------------------ stopping
def _session_members(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of `pid`'s descendants and of every other process in its session: a
    process started by `spawn_detached` leads no session but its own launcher's, so this also
    finds helpers that were reparented after their parent died."""
    fields = _stat(pid)
    sid = int(fields[3]) if fields else None
    out = set()
    if sid is not None and sid != os.getsid(0):  # never our own session
        for p, f in _running_stats().items():
            if int(f[3]) == sid and p != pid:
                out.add((p, int(f[19])))
    for c in descendants(pid):
        start = proc_start_time(c)
        if start is not None:
            out.add((c, start))
    return out


def _wait_gone(procs: set[tuple[int, int | None]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(pid_alive(p, s) for p, s in procs) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop(pid: int, start: int | None, *, grace: float, linger: float = 5.0) -> bool:
    """Stop process `pid` (given its start time, only that very process) and all it started:
    SIGTERM, SIGKILL if it still runs after `grace` seconds, then SIGKILL for whatever of its
    descendants and session is left `linger` seconds after it ended. Returns once all of them
    are gone, and whether anything had to be killed."""
    below = _session_members(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    killed: set[tuple[int, int | None]] = set()
    deadline = time.monotonic() + grace
    while pid_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.05)
        below |= _session_members(pid) if pid_alive(pid, start) else set()
    if pid_alive(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        killed.add((pid, start))
    # what it started usually ends with it; give that a moment, then make sure
    _wait_gone(below, linger)
    for p, s in below:
        if pid_alive(p, s):  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
            killed.add((p, s))
    _wait_gone(killed, 5.0)  # SIGKILL cannot be caught, but takes effect only when scheduled
    return bool(killed)
