"""Triton servers that veil starts, lists and stops: one background process per server, known by
name in the veil home (`serve/NAME.json`), serving a model repository from a veil volume on
loopback. The process itself is `veil.serve._daemon`; this module never imports torch."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from veil import process
from veil._config import home_dir, veil_home
from veil.errors import AlreadyExists, InUse, InvalidArgument, NotFound, VeilError
from veil.process import pid_alive, proc_start_time

HOST = "127.0.0.1"
_DEVICE = re.compile(r"cpu|cuda(:\d{1,4})?")
# Longest wait `start --timeout` and `stop --grace` accept: a day. Longer is a typo, and
# "forever" (inf) would hang a script that meant a bound.
MAX_SECONDS = 86400.0
TYPICAL_START = 10.0  # seconds from `start` to ready: ~7 s on 2 idle cores, 14-17 s on busy ones
WAIT_NOTE = 10.0  # seconds between two "still starting" lines


@dataclass
class ServerInfo:
    name: str
    state: str  # starting, ready, stopping, exited
    pid: int | None
    http_port: int
    grpc_port: int
    metrics_port: int
    model_repo: str  # the veil volume
    repo_path: str
    device: str = "cpu"
    models: list[str] = field(default_factory=list)
    started: str = ""
    log: str = ""
    host: str = HOST
    proc_start: int | None = None  # /proc start time, to tell our pid from a reused one
    error: str | None = None
    claimed_by: int | None = None  # the command starting it, until the server has a pid
    claimed_start: int | None = None

    @property
    def http(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"{self.host}:{self.metrics_port}/metrics"

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(http=self.http, grpc=self.grpc, metrics=self.metrics)
        return d


def seconds(value: float, what: str, *, zero: bool = False) -> float:
    """`value` as a number of seconds, or InvalidArgument naming `what` and the bounds: finite,
    > 0 (>= 0 with `zero`), at most MAX_SECONDS."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= MAX_SECONDS
    if not ok:
        low = ">= 0" if zero else "> 0"
        raise InvalidArgument(f"{what} must be a number of seconds {low} and at most "
                              f"{MAX_SECONDS:g}, not {value!r}")
    return float(value)


# ------------------------------------------------------------------ registry
def _dir(home: Path | None) -> Path:
    return Path(home or veil_home()) / "serve"


def _private_dir(home: Path | None) -> Path:
    """The servers' folder, created (or tightened) to 0700: it holds their logs, records and
    scratch folders (PyTriton's sockets to the model stubs), which other users must not read."""
    home_dir(home)  # a home this makes is private too
    d = _dir(home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if d.stat().st_mode & 0o077:
        d.chmod(0o700)
    return d


def _entry(name: str, home: Path | None) -> Path:
    return _dir(home) / f"{name}.json"


def scratch_dir(home: Path | None, name: str) -> Path:
    """Server NAME's own temporary folder (its TMPDIR), removed when it exits."""
    return _dir(home) / f".{name}.tmp"


def workspace_dir(home: Path | None, name: str) -> Path | None:
    """The private folder in /tmp that server NAME's scratch folder links to (PyTriton's
    workspace), if it is there and ours."""
    try:
        target = Path(os.readlink(scratch_dir(home, name) / "workspace"))
        st = target.lstat()
    except OSError:
        return None
    if not (target.is_absolute() and target.name.startswith("veil-serve-")
            and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()):
        return None
    return target


def remove_scratch(home: Path | None, name: str) -> None:
    import shutil

    ws = workspace_dir(home, name)
    if ws is not None:
        shutil.rmtree(ws, ignore_errors=True)
    shutil.rmtree(scratch_dir(home, name), ignore_errors=True)


@contextlib.contextmanager
def name_lock(name: str, home: Path | None):
    """Held while a command reads and changes NAME's record, so that two commands (start,
    stop, the server removing its own record) never act on one state at once."""
    import fcntl

    d = _private_dir(home)
    with open(d / f".{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_entry_if(name: str, home: Path | None, pid: int | None,
                    proc_start: int | None) -> bool:
    """Remove NAME's record only if it is still that of server `pid` (a new server may already
    have taken the name)."""
    with name_lock(name, home):
        info = _read(_entry(name, home))
        if info is None or info.pid != pid or info.proc_start != proc_start:
            return False
        _entry(name, home).unlink(missing_ok=True)
        return True


def _read(path: Path) -> ServerInfo | None:
    try:
        raw = json.loads(path.read_text())
        known = ServerInfo.__dataclass_fields__
        return ServerInfo(**{k: v for k, v in raw.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None


def write_entry(info: ServerInfo, home: Path | None) -> None:
    """Replace NAME.json atomically (readers never see half a file)."""
    path = _entry(info.name, home)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.replace(tmp, path)


def _live_state(info: ServerInfo) -> ServerInfo:
    if info.state in ("starting", "ready", "stopping", "failed"):
        if info.pid is not None:
            alive = pid_alive(info.pid, info.proc_start)
        else:
            alive = info.state == "starting" and pid_alive(info.claimed_by, info.claimed_start)
        if not alive:
            info.state = "exited"
    return info


def get_server(name: str, *, home: Path | None = None) -> ServerInfo:
    info = _read(_entry(name, home))
    if info is None:
        raise NotFound(f"no server named {name!r} (veil serve list shows them)")
    return _live_state(info)


def list_servers(*, home: Path | None = None) -> list[ServerInfo]:
    d = _dir(home)
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        info = _read(p)
        if info is not None:
            out.append(_live_state(info))
    return out


# ------------------------------------------------------------------ start
def _port_in_range(port: int | None, what: str) -> int | None:
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 1 <= port <= 65535):
        raise InvalidArgument(f"--{what}-port must be in 1..65535, not {port!r}")
    return port


def _check_port(port: int, what: str) -> int:
    _port_in_range(port, what)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers bind: a port left in TIME_WAIT by a stopped server is free, one that
        # something listens on is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "already in use" if e.errno == errno.EADDRINUSE else "not allowed"
                raise InUse(f"{what} port {port} on {HOST} is {why}; choose another with "
                            f"--{what}-port") from None
            raise
    return port


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


# Set in the environment of server NAME's process to its scratch folder, so every process it
# starts (Triton's launcher, Triton, the model stubs, the stubs' multiprocessing helpers, a
# child forked but not yet exec'd) carries it in /proc/PID/environ: how `clean_leftovers` finds
# them all, including those whose command line names no folder of the server.
SERVER_ENV = "VEIL_SERVE_SERVER"


def _daemon_env(name: str, home: Path | None) -> dict[str, str]:
    """The environment of server `name`: ours, with SERVER_ENV marking its processes.
    PyTriton's Python backend stub links against libpython: on a Python built with a shared
    library outside the system paths (pyenv, conda), Triton needs that library's folder on
    LD_LIBRARY_PATH."""
    import sysconfig

    env = dict(os.environ)
    env[SERVER_ENV] = str(scratch_dir(home, name))
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        if libdir not in paths:
            env["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start(model_repo: str, *, name: str | None = None, http_port: int | None = None,
          grpc_port: int | None = None, metrics_port: int | None = None, device: str = "cpu",
          timeout: float = 180.0, home: Path | None = None,
          progress: Callable[[str], None] | None = None) -> ServerInfo:
    """Start a Triton server (PyTriton) on loopback serving the models in the veil volume
    `model_repo`; returns once it is ready. Ports left out are picked free. `progress` is
    told once the arguments are found valid and the server is being launched."""
    import importlib.util

    from veil import data
    from veil.data import validate_name
    from veil.serve._repo import read_repository

    if importlib.util.find_spec("pytriton") is None or importlib.util.find_spec("torch") is None:
        raise VeilError("veil serve start needs PyTriton and PyTorch: pip install "
                        "'veil[torch,serve]'")
    validate_name(model_repo, "volume name")
    name = model_repo if name is None else name
    validate_name(name, "server name")
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise InvalidArgument(f"--device must be cpu or cuda[:N], not {device!r}")
    timeout = seconds(timeout, "--timeout")
    for what, port in (("http", http_port), ("grpc", grpc_port), ("metrics", metrics_port)):
        _port_in_range(port, what)
    repo = data.volume_path(model_repo, home=home)  # NotFound for a missing volume
    models = read_repository(repo)  # config errors now, before any process starts
    ports: dict[str, int] = {}
    for what, port in (("http", http_port), ("grpc", grpc_port), ("metrics", metrics_port)):
        if port is not None:
            if port in ports.values():
                raise InvalidArgument(f"--{what}-port {port} is given twice; each endpoint needs "
                                      "its own port")
            ports[what] = _check_port(port, what)
    for what in ("http", "grpc", "metrics"):
        ports.setdefault(what, _free_port(set(ports.values())))
    d = _private_dir(home)
    entry = _entry(name, home)
    info = ServerInfo(name=name, state="starting", pid=None, http_port=ports["http"],
                      grpc_port=ports["grpc"], metrics_port=ports["metrics"],
                      model_repo=model_repo, repo_path=str(repo), device=device,
                      models=[m.name for m in models],
                      started=time.strftime("%Y-%m-%d %H:%M:%S"), log=str(d / f"{name}.log"),
                      claimed_by=os.getpid(), claimed_start=proc_start_time(os.getpid()))
    with name_lock(name, home):  # claim the name: of two starts, exactly one gets it
        current = _read(entry) if entry.exists() else None
        if current is not None:
            current = _live_state(current)
            if current.state != "exited":
                if current.pid is None:
                    raise AlreadyExists(f"a server named {name!r} is being started by another "
                                        "command")
                raise AlreadyExists(f"a server named {name!r} is already running (pid "
                                    f"{current.pid}, http {current.http}); stop it first: veil "
                                    f"serve stop {name}")
        clean_leftovers(name, home)  # of a server of this name that was killed
        write_entry(info, home)
    if progress is not None:
        progress(f"Starting Triton Inference Server {name!r} on the model repository in volume "
                 f"{model_repo!r} (takes ~{TYPICAL_START:g} s; up to --timeout "
                 f"{timeout:g} s) ...")
    # the log, created private (spawn_detached appends to it)
    os.close(os.open(info.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    server = None
    try:
        server = process.spawn_detached(
            [sys.executable, "-m", "veil.serve._daemon", "--name", name], log=info.log,
            input=json.dumps({"info": asdict(info), "home": str(home or veil_home())}).encode(),
            env=_daemon_env(name, home), what=f"server {name!r}")
        return _wait_ready(name, server.pid, timeout, home, progress)
    except BaseException:
        pid = server.pid if server is not None else None
        if server is not None and pid_alive(server.pid, server.start):
            process.stop(server.pid, server.start, grace=10.0)
        with name_lock(name, home):
            left = _read(entry)
            if left is not None and left.pid in (None, pid) and left.claimed_by in (
                    None, os.getpid()):
                clean_leftovers(name, home)  # of a server killed before it could clean up
                entry.unlink(missing_ok=True)
        raise


def _last_error(log: str) -> str:
    try:
        lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln.removeprefix("error:").strip()
    return lines[-1] if lines else ""


def _wait_ready(name: str, pid: int, timeout: float, home: Path | None,
                progress: Callable[[str], None] | None = None) -> ServerInfo:
    """Until server `pid` records itself ready (or failed, or dies, or time runs out);
    `progress` is told every WAIT_NOTE seconds that it is still waiting."""
    entry = _entry(name, home)
    start = proc_start_time(pid)
    t0 = time.monotonic()
    deadline = t0 + timeout
    note = t0 + WAIT_NOTE
    log = str(_dir(home) / f"{name}.log")
    while True:
        if progress is not None and time.monotonic() >= note:
            progress(f"... still starting after {time.monotonic() - t0:.0f} s (Triton is "
                     f"loading the models; log: {log})")
            note += WAIT_NOTE
        info = _read(entry)
        if info is not None and info.pid == pid:
            if info.state == "ready":
                return info
            if info.state == "failed":
                raise VeilError(f"server {name!r} failed to start: {info.error} (log: {log})")
        if not pid_alive(pid, start):
            raise VeilError(f"server {name!r} exited while starting: {_last_error(log)} "
                            f"(log: {log})")
        if time.monotonic() > deadline:
            raise VeilError(f"server {name!r} was not ready after {timeout:g} s (log: {log})")
        time.sleep(0.1)


# ------------------------------------------------------------------ stop
@dataclass
class StopResult:
    """What `stop` did: whether the server was running (else only what it left was removed),
    whether it had to be killed, and what it was (pid, models, endpoint, repository)."""

    name: str
    was_running: bool
    killed: bool
    pid: int | None = None
    models: list[str] = field(default_factory=list)
    model_repo: str = ""
    http: str = ""
    seconds: float = 0.0  # how long stopping took
    leftovers: int = 0  # processes of a dead server that were ended

    def to_json(self) -> dict:
        return asdict(self)


def stop(name: str, *, grace: float = 60.0, home: Path | None = None,
         progress: Callable[[str], None] | None = None) -> StopResult:
    """Stop server `name`: requests in flight finish (up to `grace` seconds), then the server
    and every process it started are gone, and its name is free again. For a server that died
    (killed, machine restarted), remove what it left: its record, processes, scratch folder.
    `progress` is told once a running server is being stopped."""
    grace = seconds(grace, "--grace", zero=True)
    t0 = time.monotonic()
    info = get_server(name, home=home)
    if info.pid is None and info.state == "starting":
        raise InUse(f"server {name!r} is being started by another command; stop it once "
                    "`veil serve list` shows it ready")
    was_running = info.state != "exited"
    killed = False
    files: list[Path] = []
    left = 0
    if was_running:
        if progress is not None:
            progress(f"Stopping server {name!r} (pid {info.pid}): requests in flight finish "
                     f"first (up to {grace:g} s) ...")
        files = _stub_files(_leftovers(name, home))  # Triton's, left if it has to be killed
        killed = process.stop(info.pid, info.proc_start, grace=grace)
    with name_lock(name, home):
        current = _read(_entry(name, home))
        if current is None or (current.pid, current.proc_start) == (info.pid, info.proc_start):
            # not a new server's: what is left of this one goes
            left = clean_leftovers(name, home, files if killed else [])
            _entry(name, home).unlink(missing_ok=True)
    return StopResult(name, was_running, killed, pid=info.pid, models=list(info.models),
                      model_repo=info.model_repo, http=info.http,
                      seconds=round(time.monotonic() - t0, 3), leftovers=left)


# ------------------------------------------------------------------ what a dead server leaves
def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _ancestors() -> set[int]:
    """This process and those above it: never a leftover, whatever their environment says."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        fields = process._stat(pid)
        pid = int(fields[1]) if fields else 0
    return out


def _leftovers(name: str, home: Path | None) -> list[tuple[int, int | None, list[str]]]:
    """(pid, start time, arguments) of this user's processes of server `name`: those with its
    mark in their environment (SERVER_ENV: all a server started), and those that run from its
    scratch folder or workspace (Triton, its launcher and its model stubs; also those of a
    server started before the mark)."""
    ws = workspace_dir(home, name)
    scratch = scratch_dir(home, name)
    marks = [f"{scratch}/", *([f"{ws}/"] if ws is not None else [])]
    entry = f"{SERVER_ENV}={scratch}".encode()
    mine, out = _ancestors(), []
    for p in Path("/proc").glob("[0-9]*"):
        pid = int(p.name)
        try:
            if p.stat().st_uid != os.getuid() or pid in mine:
                continue
        except OSError:
            continue
        args = _cmdline(pid)
        if any(m in a for a in args for m in marks) or _environ_has(pid, entry):
            start = proc_start_time(pid)
            if start is not None:
                out.append((pid, start, args))
    return out


_STUB_DIR = re.compile(r"(/tmp/folder[A-Za-z0-9]{6})/\d+/model\.py")
_SHM = re.compile(r"[A-Za-z0-9][\w.-]{0,200}")


def _stub_files(procs: list[tuple[int, int | None, list[str]]]) -> list[Path]:
    """What the Python backend's model stubs among `procs` use outside the scratch folder:
    their folders (`/tmp/folderXXXXXX`, whatever TMPDIR says) and their shared-memory regions
    (`/dev/shm/NAME`), named in their arguments. Triton removes them, unless it is killed."""
    found = set()
    for _, _, args in procs:
        if len(args) > 2 and (m := _STUB_DIR.fullmatch(args[1])) and _SHM.fullmatch(args[2]):
            found |= {m.group(1), f"/dev/shm/{args[2]}"}
    return [Path(f) for f in sorted(found)]


_OUTSIDE = "outside.json"
# clean_leftovers: seconds for a dead server's processes to end on SIGTERM, then to be gone
TERM_WAIT, KILL_WAIT = 3.0, 15.0


def write_outside(scratch: Path, files: list[Path], shm_prefix: str) -> None:
    """Record in `scratch` the files a server uses outside it (see `_read_outside`)."""
    tmp = scratch / f".{_OUTSIDE}.tmp"
    tmp.write_text(json.dumps({"files": [str(f) for f in files], "shm_prefix": shm_prefix}))
    os.replace(tmp, scratch / _OUTSIDE)


def _read_outside(scratch: Path) -> list[Path]:
    """The files a server recorded with `write_outside`, those of the forms it writes only."""
    try:
        rec = json.loads((scratch / _OUTSIDE).read_text())
        files, prefix = [Path(f) for f in rec["files"]], str(rec["shm_prefix"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = [f for f in files if _STUB_DIR.fullmatch(f"{f}/1/model.py")
           or (f.parent == Path("/dev/shm") and _SHM.fullmatch(f.name))]
    if _SHM.fullmatch(prefix):
        out += Path("/dev/shm").glob(f"{prefix}*")
    return out


def clean_leftovers(name: str, home: Path | None, files: list[Path] = ()) -> int:
    """With NAME's lock held and no live server of that name: end the processes a dead server
    of that name left, remove its scratch folder (PyTriton's workspace), its half-written
    records, and `files` with those of its leftover stubs (`_stub_files`) that are ours.
    Returns how many processes it found.

    What is left may still start processes: a Triton still loading models when its server was
    killed starts their stubs, even once told to stop, and a stub starts its helpers. So the
    search is repeated until it finds nothing running: SIGTERM (Triton cleans up on it) to each
    process as it is found, for up to TERM_WAIT s, then SIGKILL to whatever is found, until a
    search finds nothing or KILL_WAIT s have passed."""
    import shutil
    import signal

    seen: dict[tuple[int, int | None], list[str]] = {}

    def running() -> list[tuple[int, int | None]]:
        for p, s, args in _leftovers(name, home):
            seen.setdefault((p, s), args)
        return [(p, s) for (p, s) in seen if pid_alive(p, s)]

    def send(procs, sig) -> None:
        for p, s in procs:
            if pid_alive(p, s):  # that very process, not a reused pid
                with contextlib.suppress(OSError):
                    os.kill(p, sig)

    termed: set[tuple[int, int | None]] = set()
    deadline = time.monotonic() + TERM_WAIT
    while (alive := running()) and time.monotonic() < deadline:
        send([p for p in alive if p not in termed], signal.SIGTERM)
        termed.update(alive)
        time.sleep(0.05)
    deadline = time.monotonic() + KILL_WAIT
    while (alive := running()) and time.monotonic() < deadline:
        send(alive, signal.SIGKILL)
        # SIGKILL takes effect when the process is next scheduled; search again once it has
        gone = time.monotonic() + 2.0
        while any(pid_alive(p, s) for p, s in alive) and time.monotonic() < gone:
            time.sleep(0.02)
    procs = [(p, s, args) for (p, s), args in seen.items()]
    files = [*files, *_stub_files(procs), *_read_outside(scratch_dir(home, name))]
    remove_scratch(home, name)
    for tmp in _dir(home).glob(f".{name}.json.*.tmp"):
        writer = tmp.name.removeprefix(f".{name}.json.").removesuffix(".tmp")
        if not (writer.isdigit() and pid_alive(int(writer))):
            tmp.unlink(missing_ok=True)
    for f in files:
        with contextlib.suppress(OSError):
            if f.lstat().st_uid != os.getuid():
                continue
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f)
            else:
                f.unlink()
    return len(seen)
