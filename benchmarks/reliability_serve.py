"""Reliability (issue 15), serving: bad values given to `veil serve`, malformed requests to a
served model, another user's attempts on a server, and servers killed mid-run, each against
real components (veil processes, PyTriton's Triton on loopback) and counted.

    .venv/bin/python benchmarks/reliability_serve.py [--rounds N] [--budget SECONDS]

- bad input: every case of tests/test_hardening_serve.py's table, each as a real `veil`
  process. Held: the table's exit code, one stderr line starting `error: ` with the table's
  text, no traceback, nothing on stdout, the home unchanged, no server started.
- malformed requests: tests/test_serve.py's HTTP and gRPC cases, `--rounds` times, to a
  served model. Held: an error status (or gRPC error) with a message, and the server still
  live with the model ready afterwards; at the end, a good request gets the right answer.
- another user (uid 65534, root only): the probe of tests/test_serve.py. Held, per item: the
  token on no command line; each server process's environment unreadable; each file under
  the server's folder and workspace unreadable, and no readable file in the home holding the
  token; each shared-memory region unreadable; each unload without the token refused (403)
  with the model still ready.
- killed servers: start a server, SIGKILL (the server process only, or all of its processes
  at once, after it is ready or at a random moment while it starts: from 0.5 s to 90% of the
  time the other server took to start), then clean with `veil serve stop` or with the next
  `veil serve start` of the name, alternately. Held: nothing of the killed server is left
  (processes: any of this run's but the servers meant to run, those started after the kill
  and those naming no folder of the server too; scratch folder, workspace, the stubs' folders
  and shared memory, record), the next start serves, and the other server running all along
  is untouched and answers. No new kill starts after `--budget` seconds. Each trial is judged
  on its own (it is blamed for what its server used and what of this run appeared during it,
  never for what was there before it) and what it left is removed before the next one; only
  this run's processes and files count (other servers on the machine are neither blamed nor
  touched); one line per trial goes to stderr.
- stopped while starting: `veil serve start --timeout T` for a T too short to get ready.
  Held: one error line, and no process, folder or record of it left within seconds.

Prints a table, then one JSON line (with each kill trial's outcome).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tests.badinput import home_state  # noqa: E402
from tests.test_hardening_serve import CASES, make_repositories  # noqa: E402
from tests.test_serve import (  # noqa: E402
    AS_NOBODY,
    MALFORMED_GRPC,
    REPO,
    http_request,
    malformed_requests,
    server_processes,
    token_of,
    what_a_server_uses,
)

from veil import process, serve  # noqa: E402
from veil.cli import main as cli_main  # noqa: E402
from veil.errors import NotFound  # noqa: E402
from veil.process import pid_alive  # noqa: E402
from veil.solutions import face_privacy as fp  # noqa: E402

OTHER = "steady"


def row(check: str, tried: int, held: int, notes: str = "") -> dict:
    return {"check": check, "tried": tried, "held": held, "notes": notes}


def veil(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "veil", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def servers() -> list[str]:
    return sorted(s.name for s in serve.list_servers())


# ------------------------------------------------------------------ bad input
def _run_cli(argv: list[str], processes: bool) -> tuple[int, str, str]:
    if processes:
        p = veil(*argv)
        return p.returncode, p.stdout, p.stderr
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main([str(a) for a in argv])
        except BaseException:  # an exception escaping main is what is counted
            traceback.print_exc()
            code = -1
    return code, out.getvalue(), err.getvalue()


def bad_input(home: Path, processes: bool) -> dict:
    held, failed = 0, []
    for argv, match, code in CASES:
        before, names = home_state(home), servers()
        rc, out, err = _run_cli(argv, processes)
        lines = err.strip().splitlines()
        ok = (rc == code and len(lines) == 1 and lines[0].startswith("error: ")
              and match.lower() in lines[0].lower() and "Traceback" not in err
              and out == "" and home_state(home) == before and servers() == names)
        held += ok
        if not ok:
            failed.append(f"{' '.join(map(str, argv))[:50]}: exit {rc}, {err.strip()[-80:]}")
            for name in set(servers()) - set(names):  # a server that should not have started
                veil("serve", "stop", name)
    how = "real processes" if processes else "in-process, as tests/badinput.py"
    return row(f"bad input to veil serve start/stop/logs ({how})", len(CASES), held,
               "; ".join(failed[:3]))


# ------------------------------------------------------------------ malformed requests
def _serving_ok(info) -> bool:
    try:
        return http_request(info.http_port, "GET", "/v2/health/live")[0] == 200 and \
            http_request(info.http_port, "GET", f"/v2/models/{fp.BASE}/ready")[0] == 200
    except OSError:
        return False


def malformed(info, model, rounds: int) -> list[dict]:
    import torch
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    http_cases = malformed_requests(fp.BASE)
    tried = held = 0
    failed = []
    for _ in range(rounds):
        for what, method, path, body, headers in http_cases:
            tried += 1
            try:
                status, answer = http_request(info.http_port, method, path, body, headers)
                ok = 400 <= status < 600 and b"error" in answer.lower()
            except OSError:
                ok = False
            ok = ok and _serving_ok(info)
            held += ok
            if not ok:
                failed.append(what)
    g_tried = g_held = 0
    g = tg.InferenceServerClient(info.grpc)
    try:
        for _ in range(rounds):
            for what, name, dtype, arr in MALFORMED_GRPC:
                g_tried += 1
                inp = tg.InferInput(name, list(arr.shape), dtype)
                inp.set_data_from_numpy(arr)
                try:
                    g.infer(fp.BASE, [inp])
                    ok = False
                except InferenceServerException as e:
                    ok = bool(str(e).strip())
                ok = ok and _serving_ok(info)
                g_held += ok
                if not ok:
                    failed.append(f"grpc {what}")
    finally:
        g.close()
    a = torch.randn(2, 128, 32, 32)
    with torch.no_grad():
        want = model.forward_tail(a)[0].numpy()
    with serve.Client(info.name, fp.BASE) as c:
        right = bool(np.allclose(c.send(a)[0], want, atol=1e-4))
    note = f"{len(http_cases)} HTTP and {len(MALFORMED_GRPC)} gRPC cases x {rounds}; a good " \
           f"request afterwards {'right' if right else 'WRONG'}"
    if failed:
        note += "; not held: " + ", ".join(sorted(set(failed))[:4])
    return [row("malformed HTTP requests to a served model: error answer, server serving",
                tried, held if right else 0, note),
            row("malformed gRPC requests to a served model: error answer, server serving",
                g_tried, g_held if right else 0, "")]


# ------------------------------------------------------------------ another user
def another_user(info, home: Path) -> list[dict]:
    if os.geteuid() != 0:
        return [row("another user (nobody) vs a server", 0, 0, "skipped: needs root")]
    token = token_of(info)
    pids = server_processes(info)
    uses = what_a_server_uses(info)
    workspaces = [str(f) for f in uses["workspaces"]]
    regions = [str(f) for f in uses["files"] if str(f).startswith("/dev/shm/")]
    mode = home.stat().st_mode
    home.chmod(0o755)  # a home another user can enter
    try:
        args = {"token": token.decode(), "pids": pids, "trees": [str(home), *workspaces],
                "shm": regions, "port": info.http_port, "model": fp.BASE}
        p = subprocess.run([sys.executable, "-c", AS_NOBODY], input=json.dumps(args),
                           capture_output=True, text=True, timeout=120)
    finally:
        home.chmod(mode & 0o7777)
    if p.returncode != 0:
        return [row("another user (nobody) vs a server", 1, 0, p.stderr.strip()[-200:])]
    seen = json.loads(p.stdout)
    private = [f for f in seen["files"] if "/serve/" in f or f.startswith(tuple(workspaces))]
    n_files = sum(len(fs) for top in [home / "serve", *map(Path, workspaces)]
                  for _, _, fs in os.walk(top))
    hidden_tried = 1 + len(pids) + n_files + len(regions)
    hidden_held = (not seen["cmdlines"]) + (len(pids) - len(seen["environs"])) \
        + (n_files - len(private)) + (len(regions) - len(seen["shm"])) - len(seen["leaks"])
    still = _serving_ok(info)
    refused = sum(code == 403 for code in seen["unload"]) if still else 0
    return [row("another user reads the access token or the server's data", hidden_tried,
                max(hidden_held, 0), f"1 scan of all command lines, {len(pids)} environments, "
                f"{n_files} files, {len(regions)} shared-memory regions; readable file with "
                f"the token: {len(seen['leaks'])}"),
            row("another user unloads a model without the token", len(seen["unload"]),
                refused, "no header, the placeholder, an empty token; model still ready: "
                f"{still}")]


# ------------------------------------------------------------------ killed servers
# Each trial is checked on its own: what a trial is blamed for is what its own server used and
# what of this run appeared during the trial (not what was there before it, such as a leftover
# of an earlier trial), and what it left is then removed, so the next trial starts clean and is
# not blamed for it. Only what this run started counts: other servers on the machine (another
# run, the tests) are neither blamed nor removed.
def _ours(pid: int) -> bool:
    """Whether `pid` runs with this run's veil home: started by this script."""
    entry = f"VEIL_HOME={os.environ['VEIL_HOME']}".encode()
    return entry in _read(Path(f"/proc/{pid}/environ")).split(b"\0")


def _session_of(pid: int) -> int | None:
    fields = process._stat(pid)
    return int(fields[3]) if fields else None


def _this_run() -> tuple[set[int], set[str]]:
    """The pids and workspaces of every server this run started, from their logs (a server
    writes both there first thing)."""
    pids, workspaces = set(), set()
    for log in (Path(os.environ["VEIL_HOME"]) / "serve").glob("*.log"):
        if log.name.endswith(".triton.log"):
            continue
        text = _read(log).decode(errors="replace")
        pids |= {int(p) for p in re.findall(r"\(pid (\d+)\) starting", text)}
        workspaces |= set(re.findall(r"^veil serve: workspace (/\S+)$", text, re.M))
    return pids, workspaces


def victim_uses(info) -> dict:
    """What a server uses (`what_a_server_uses`), its session (every process it starts stays in
    it) and its shared memory's prefix (PyTriton's, from the server's pid)."""
    used = what_a_server_uses(info)
    used.update(session=_session_of(info.pid), prefix=f"pytrtion{info.pid}-")
    return used


def _snapshot(keep: list[dict]) -> set[str]:
    """What of this run's servers is there but none of `keep`'s: processes, workspaces, the
    stubs' folders (their config names the workspace) and shared memory."""
    sessions = {k.get("session") for k in keep}
    keep_ws = {str(Path(w).parent) for k in keep for w in k.get("workspaces", [])}
    prefixes = tuple(k["prefix"] for k in keep if k.get("prefix"))
    daemons, workspaces = _this_run()
    workspaces -= keep_ws
    out = {f"pid {p}" for p, f in process._running_stats().items()
           if p != os.getpid() and int(f[3]) not in sessions and _ours(p)}
    out |= {w for w in workspaces if Path(w).exists()}
    out |= {str(d) for d in Path("/tmp").glob("folder??????")
            if any(f"{w}/".encode() in _read(d / "config.pbtxt") for w in workspaces)}
    out |= {str(r) for d in daemons for r in Path("/dev/shm").glob(f"pytrtion{d}-*")
            if not (prefixes and r.name.startswith(prefixes))}
    return out


def _left(used: dict, keep: list[dict], before: set[str], home: Path | None = None,
          new_scratch: bool = False) -> list[str]:
    """What is left of a killed server named victim that used `used`, and what of this run
    appeared since `before` (taken before its trial). With `home`: its record too. With
    `new_scratch`: a new server of the name runs, whose scratch folder has the old one's
    path."""
    left = [f"pid {p}" for p, st in used["procs"] if pid_alive(p, st)]
    left += [str(f) for f in used["files"] if f.exists()
             and not (new_scratch and f.name == ".victim.tmp")]
    if used.get("prefix"):
        left += [str(r) for r in Path("/dev/shm").glob(f"{used['prefix']}*")]
    if home is not None:
        left += [p.name for p in (home / "serve").glob("*victim.json*")]
    return left + sorted(_snapshot(keep) - before - set(left))


def _sweep(left: list[str], home: Path) -> None:
    """Remove what a trial left, so that the next one is not blamed for it: its processes
    (this run's only), files and folders."""
    for item in left:
        if item.startswith("pid "):
            pid = int(item.split()[1])
            if _ours(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        elif item.startswith("/"):
            f = Path(item)
            with contextlib.suppress(OSError):
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
        else:
            (home / "serve" / item).unlink(missing_ok=True)


def _record(name: str) -> tuple | None:
    return _record_id(serve._server._read(serve._server._entry(name, None)))


def _record_id(info) -> tuple | None:
    return None if info is None else (info.pid, info.proc_start, info.started)


def _state(name: str) -> str | None:
    try:
        return serve.get_server(name).state
    except NotFound:
        return None


KILL_MODES = ["server process, after ready", "all its processes at once, after ready",
              "server process, while starting"]


def _describe(item: str) -> str:
    """A leftover as found: a process with its parent, state, session, age and command."""
    if not item.startswith("pid "):
        return item
    pid = int(item.split()[1])
    fields = process._stat(pid)
    if not fields:
        return f"{item} (gone)"
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    args = _read(Path(f"/proc/{pid}/cmdline")).replace(b"\0", b" ").decode(errors="replace")
    return f"{item} (ppid {fields[1]}, state {fields[0]}, session {fields[3]}, {age:.0f} s " \
           f"old: {args[:160]})"


def kills(other, home: Path, budget: float, t0: float, start_s: float,
          modes: list[str] = KILL_MODES) -> tuple[list[dict], list[dict]]:
    rng = random.Random(15)
    tried, held, notes = {m: 0 for m in modes}, {m: 0 for m in modes}, []
    trials: list[dict] = []
    other_uses = victim_uses(other)
    pending = None  # the trial waiting for the next start to clean it

    def judge(trial: dict, left: list[str], ok: bool, extra: str = "") -> None:
        mode = trial["mode"]
        tried[mode] += 1
        held[mode] += ok
        trial.update(left=[_describe(x) for x in left], held=ok)
        if not ok:
            log = _read(home / "serve" / "victim.log").decode(errors="replace")
            trial["log"] = log.splitlines()[-40:]
        trials.append(trial)
        print(f"  trial {trial['trial']}: {mode}, cleaned by {trial['cleaner']}: "
              f"{'held' if ok else 'NOT held'}{'; left ' + str(left[:4]) if left else ''}"
              f"{extra}", file=sys.stderr, flush=True)
        if not ok:
            notes.append(f"{mode}, trial {trial['trial']}, cleaned by {trial['cleaner']}: "
                         f"left {left[:2]}{extra}")
        _sweep(left, home)

    i = 0
    while i < 3 or time.monotonic() - t0 < budget:
        mode = modes[i % len(modes)]
        cleaner = "stop" if (i // len(modes)) % 2 == 0 or mode.endswith("while starting") \
            else "start"
        trial = {"trial": i, "mode": mode, "cleaner": cleaner}
        i += 1
        before = _snapshot([other_uses])
        if mode.endswith("while starting"):
            # the record a killed server of the last trial left is not this start's
            stale = _record("victim")
            p = subprocess.Popen([sys.executable, "-m", "veil", "serve", "start",
                                  "--model-repo", REPO, "--name", "victim"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, max(1.0, 0.9 * start_s)))
            info, deadline = None, time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:  # until it has a pid
                info = serve._server._read(serve._server._entry("victim", None))
                if info is not None and info.pid and _record_id(info) != stale:
                    break
                info = None
                time.sleep(0.05)
            used = {"procs": [], "files": []}
            if info is not None:
                used = victim_uses(info)
                trial.update(pid=info.pid, session=used["session"], state=info.state)
                if pid_alive(info.pid, info.proc_start):  # that server, not a reused pid
                    os.kill(info.pid, signal.SIGKILL)
            else:
                trial["note"] = "the start ended before its server could be killed"
            p.wait(timeout=300)
        else:
            r = veil("serve", "start", "--model-repo", REPO, "--name", "victim", timeout=300)
            if r.returncode != 0:
                tried[mode] += 1
                notes.append(f"{mode}, trial {trial['trial']}: start failed: "
                             f"{r.stderr.strip()[-120:]}")
                if pending is not None:  # its cleaner failed: stop cleans it instead
                    ptrial, pused, pbefore = pending
                    veil("serve", "stop", "victim")
                    judge(ptrial, _left(pused, [other_uses], pbefore, home), False,
                          " (the start that was to clean it failed)")
                    pending = None
                continue
            info = serve.get_server("victim")
            used = victim_uses(info)
            trial.update(pid=info.pid, session=used["session"],
                         procs=[p for p, _ in used["procs"]])
            if pending is not None:  # the start just done had to clean the last kill
                ptrial, pused, pbefore = pending
                left = _left(pused, [other_uses, used], pbefore, new_scratch=True)
                judge(ptrial, left, not left and _serving_ok(info))
                pending = None
                before = _snapshot([other_uses, used])
            victims = [info.pid] if mode.startswith("server process") else \
                [p for p, _ in used["procs"]]
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _state("victim") not in (None, "exited") and time.monotonic() < deadline:
            time.sleep(0.1)
        if mode.endswith("while starting"):
            trial["cleaner"] = "the start itself, then stop"
        if cleaner == "stop":
            r = veil("serve", "stop", "victim")
            left = _left(used, [other_uses], before, home)
            # exit 1: no record was left to remove (a start killed while starting removes it)
            judge(trial, left, r.returncode in (0, 1) and not left,
                  f" (stop: {r.stderr.strip()[-80:]})" if r.returncode not in (0, 1) else "")
        else:
            pending = (trial, used, before)
        intact = all(pid_alive(p, st) for p, st in other_uses["procs"]) and all(
            f.exists() for f in other_uses["files"]) and _serving_ok(other)
        if not intact:
            notes.append("the other server was disturbed")
            held = {m: 0 for m in modes}
            break
    if pending is not None:  # nothing more started: stop cleans it instead
        ptrial, pused, pbefore = pending
        ptrial["cleaner"] = "stop (the last)"
        veil("serve", "stop", "victim")
        left = _left(pused, [other_uses], pbefore, home)
        judge(ptrial, left, not left)
    veil("serve", "stop", "victim")
    return [row(f"SIGKILL of a served model's {m}; then stop or start cleans", tried[m],
                held[m], "; ".join(n for n in notes if n.startswith(m))[:300]
                or "cleaned by stop and by the next start, alternately; the other server "
                   "untouched") for m in modes], trials


def stopped_while_starting(n: int, keep: dict) -> dict:
    rng = random.Random(7)
    held, notes = 0, []
    for _ in range(n):
        t = round(rng.uniform(0.3, 3.0), 1)
        before = _snapshot([keep])
        r = veil("serve", "start", "--model-repo", REPO, "--name", "hasty", "--timeout", t)
        lines = r.stderr.strip().splitlines()
        time.sleep(0.5)
        left = sorted(_snapshot([keep]) - before)
        left += [*(["record"] if _state("hasty") else []),
                 *(["scratch"] if serve._server.scratch_dir(None, "hasty").exists() else [])]
        ok = r.returncode == 1 and bool(lines) and lines[-1].startswith("error: ") \
            and "not ready after" in lines[-1] and not left
        held += ok
        if not ok:
            notes.append(f"--timeout {t}: exit {r.returncode}, left {left[:2]}")
            veil("serve", "stop", "hasty")
            _sweep([x for x in left if x.startswith(("pid ", "/"))],
                   Path(os.environ["VEIL_HOME"]))
    return row("serve start that gives up (--timeout 0.3..3 s): nothing left", n, held,
               "; ".join(notes[:2]))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds of malformed requests")
    ap.add_argument("--budget", type=float, default=100.0,
                    help="seconds (from the start) after which no new kill starts")
    ap.add_argument("--processes", action="store_true",
                    help="run each bad input as a real veil process (slower)")
    args = ap.parse_args()
    t0 = time.monotonic()
    top = Path(tempfile.mkdtemp(prefix="veil-rel-serve-", dir="/tmp"))
    top.chmod(0o755)
    home = top / "home"
    os.environ.update(VEIL_HOME=str(home), VEIL_DRIVER="copy")
    os.environ.pop("VEIL_DATA_DIR", None)
    rows: list[dict] = []
    trials: list[dict] = []
    try:
        fp.export_models(REPO)
        make_repositories()  # the bad-input table's volumes
        model = fp.load_model("cpu")
        rows.append(bad_input(home, args.processes))
        t_start = time.monotonic()
        other = serve.start(REPO, name=OTHER)
        start_s = time.monotonic() - t_start
        try:
            rows += malformed(other, model, args.rounds)
            rows += another_user(other, home)
            keep = victim_uses(other)
            rows.append(stopped_while_starting(3, keep))
            kill_rows, trials = kills(other, home, args.budget, t0, start_s)
            rows += kill_rows
        finally:
            serve.stop(OTHER)
    finally:
        for s in serve.list_servers():
            with contextlib.suppress(Exception):
                serve.stop(s.name, grace=5)
        shutil.rmtree(top, ignore_errors=True)
    width = max(len(r["check"]) for r in rows)
    print(f"{'check':<{width}}  tried  held  notes")
    for r in rows:
        print(f"{r['check']:<{width}}  {r['tried']:>5}  {r['held']:>4}  {r['notes']}")
    print(f"({time.monotonic() - t0:.0f} s)")
    print(json.dumps({"area": "serve", "rows": rows, "kill_trials": trials}))
    return 0 if all(r["tried"] == r["held"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
