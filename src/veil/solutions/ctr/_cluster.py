"""A real Dask cluster for the engines: a `distributed.LocalCluster` with worker processes (a
scheduler, a dashboard and N worker processes on this machine), or a connection to an existing
scheduler at tcp://HOST:PORT so the same command runs across many machines."""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import sys
from collections.abc import Iterator

from veil.errors import BackendError, InvalidArgument

CONNECT_TIMEOUT_S = 8
"""How long to wait for an existing scheduler before giving up."""

_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
                      r":([0-9]{1,5})$")


def check_address(scheduler: str) -> str:
    """`scheduler` if it reads tcp://HOST:PORT, else a one-line InvalidArgument."""
    m = _ADDRESS.match(scheduler)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise InvalidArgument(f"scheduler address {scheduler!r} is not tcp://HOST:PORT")
    return scheduler


@contextlib.contextmanager
def cluster(scheduler: str | None = None, *, workers: int = 2, threads_per_worker: int = 1,
            memory_limit: str | int | None = None, log=None) -> Iterator:
    """A `distributed.Client`, closed (with its local cluster) on exit.

    Without `scheduler`: a LocalCluster of `workers` worker PROCESSES with `threads_per_worker`
    threads each and `memory_limit` per worker (None: distributed's "auto", the machine's
    memory split among the workers); its dashboard listens on a free port. With `scheduler`
    "tcp://HOST:PORT": connect to that cluster and use its workers (`workers` and the rest are
    the remote cluster's business), failing in one line after CONNECT_TIMEOUT_S. Either way the
    dashboard address and its Task Stream view (the seed's monitoring) are logged."""
    from distributed import Client, LocalCluster

    say = log or (lambda line: None)
    if workers < 1 or threads_per_worker < 1:
        raise InvalidArgument("a cluster needs at least one worker with one thread")
    with contextlib.ExitStack() as stack:
        if scheduler:
            probe(check_address(scheduler))
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT_S,
                                set_as_default=False)
            except (OSError, TimeoutError) as e:
                why = " ".join(str(e).split()) or type(e).__name__
                raise InvalidArgument(
                    f"cannot reach the Dask scheduler at {scheduler}: {why}") from None
            stack.enter_context(client)
            where = f"the Dask scheduler at {scheduler}"
        else:
            local = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                memory_limit="auto" if memory_limit is None else memory_limit,
                # a failed task (a bad line) is raised here in one line: the workers need not
                # log it again with its traceback
                dashboard_address=":0", silence_logs=logging.CRITICAL))
            client = stack.enter_context(Client(local, set_as_default=False))
            client.run(_stdout_to_stderr)
            where = f"a local Dask cluster ({local.scheduler_address})"
        n = len(client.nthreads())
        if n == 0:
            raise BackendError(f"{where} has no workers")
        say(f"Using {where} with {n} worker{'s' if n != 1 else ''}")
        link = dashboard(client)
        if link:
            say(f"Dask dashboard: {link} (Task Stream: {task_stream(link)})")
        yield client


def _stdout_to_stderr() -> None:
    """In a local worker: what native libraries print (LightGBM's "[LightGBM] [Info]
    Listening...") goes to stderr, not into the stdout of `veil ... --json`."""
    import os
    import sys

    sys.stdout.flush()
    os.dup2(2, 1)


def probe(scheduler: str) -> None:
    """Fail fast (one line) when nothing listens at the scheduler's address: a refused
    connection is known at once, where distributed would retry until its timeout."""
    import socket

    host, port = scheduler[len("tcp://"):].rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or " ".join(str(e).split()) or type(e).__name__
        raise InvalidArgument(f"cannot reach the Dask scheduler at {scheduler}: {why}") from None


def dashboard(client) -> str | None:
    """The dashboard's status page, or None when the scheduler serves none (no bokeh)."""
    try:
        info = client.scheduler_info(n_workers=0)
        if "dashboard" not in info.get("services", {}):
            return None
        return client.dashboard_link
    except Exception:
        return None


def task_stream(link: str) -> str:
    """The Task Stream page beside a dashboard's status page."""
    return re.sub(r"/status/?$", "", link) + "/tasks"


def workers_of(client) -> list[str]:
    """Addresses of the cluster's workers, sorted (a stable order for partitions). (Asked of
    the scheduler directly: `scheduler_info()` races with the client's periodic refresh,
    which carries no workers.)"""
    return sorted(client.nthreads())


def _own_peak_rss() -> int:
    """This process's peak resident set size in bytes: Linux's VmHWM (ru_maxrss is carried
    over exec, so a process started from a larger one would report that one's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _own_pid() -> int:
    import os

    return os.getpid()


def peak_rss(client=None) -> dict[str, int]:
    """Peak RSS in bytes of this (client) process and, given a client, of each worker process
    ("worker tcp://..."). A LocalCluster's scheduler runs inside the client process, so its
    memory is in "client". Peaks are over each process's lifetime."""
    out = {"client": _own_peak_rss()}
    if client is not None:
        # a worker that died (and was replaced) during the run has no peak to give
        for addr, peak in sorted(client.run(_own_peak_rss, on_error="return").items()):
            if isinstance(peak, int):
                out[f"worker {addr}"] = peak
    return out


def worker_pids(client) -> dict[str, int]:
    """{worker address: process id}: where the work runs."""
    return dict(client.run(_own_pid))
