"""Starts `tritonserver` with its secrets on no command line (issue 15).

Triton takes its access token only as an argument (`--http-restricted-api
ENDPOINTS:triton-access-token=TOKEN`), and any local user can read every process's arguments in
`/proc/PID/cmdline`. So the server process runs `python -m veil.serve._launch BINARY ARGS...`
with a placeholder in place of each secret argument and the real values in the environment
(variable `VEIL_TRITON_SECRETS`, JSON `{placeholder: value}`): `/proc/PID/environ` is readable
by the process's owner only. This launcher

1. forks a child that asks to be traced (`PTRACE_TRACEME`) and execs BINARY with the
   placeholders, the values in its environment as `VEIL_TRITON_ARG_<i>`;
2. at the stop the kernel makes right after that exec, before any of Triton's code runs,
   points the argument vector's entries at those environment strings (the argument area, which
   is what `/proc/PID/cmdline` shows, keeps the placeholders), then lets the child go;
3. stays as Triton's parent: forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to it and exits
   with its status, so PyTriton, which started this launcher, supervises Triton as before.

A placeholder is not a valid restriction (it has no `:`), so a Triton that somehow saw one
refuses to start instead of running with a known token. Anything that goes wrong here kills the
child before it runs and exits non-zero with one `error:` line."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import struct
import sys

SECRETS_ENV = "VEIL_TRITON_SECRETS"
_ARG_ENV = "VEIL_TRITON_ARG_{}"
_PTRACE_TRACEME, _PTRACE_POKEDATA, _PTRACE_DETACH = 0, 5, 17
_PR_SET_PDEATHSIG = 1
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class LaunchError(RuntimeError):
    pass


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    return libc


def _ptrace(libc, request: int, pid: int, addr: int = 0, data: int = 0) -> None:
    if libc.ptrace(request, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data)) == -1:
        err = ctypes.get_errno()
        raise LaunchError(f"ptrace({request}) on pid {pid}: {os.strerror(err)} (is ptrace "
                          "allowed here? kernel.yama.ptrace_scope, seccomp)")


def _areas(pid: int) -> tuple[int, int, int, int]:
    """arg_start, arg_end, env_start, env_end of `pid` (proc(5), fields 48 to 51)."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rfind(")") + 2:].split()  # fields from the 3rd on
    a0, a1, e0, e1 = (int(x) for x in fields[45:49])
    if not (a0 and a1 > a0 and e0 and e1 > e0):
        raise LaunchError(f"cannot read the argument and environment areas of pid {pid}")
    return a0, a1, e0, e1


def _stack(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if line.rstrip().endswith("[stack]"):
                lo, hi = line.split()[0].split("-")
                return int(lo, 16), int(hi, 16)
    raise LaunchError(f"pid {pid} has no stack mapping")


def redirect(libc, pid: int, argc: int, swaps: dict[int, str]) -> None:
    """In the stopped, just-exec'd `pid`, point argv[i] at the value of environment variable
    `swaps[i]`, for each i."""
    a0, a1, e0, e1 = _areas(pid)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        def read(addr: int, n: int) -> bytes:
            mem.seek(addr)
            return mem.read(n)

        args = read(a0, a1 - a0).split(b"\0")[:argc]
        env = b"\0" + read(e0, e1 - e0)
        if len(args) != argc:
            raise LaunchError(f"pid {pid}: {len(args)} arguments in its argument area, not {argc}")
        ptrs, off = [], a0
        for a in args:
            ptrs.append(off)
            off += len(a) + 1
        # the argument vector as the kernel laid it out: argc, argv[0..argc-1], NULL
        vector = struct.pack(f"{argc + 2}P", argc, *ptrs, 0)
        lo, hi = _stack(pid)
        stack = read(lo, hi - lo)
        at = stack.rfind(vector)
        if at < 0 or stack.find(vector) != at:
            raise LaunchError(f"pid {pid}: its argument vector is not where the ABI puts it")
        word = struct.calcsize("P")
        for i, name in swaps.items():
            key = b"\0" + name.encode() + b"="
            k = env.find(key)
            if k < 0:
                raise LaunchError(f"pid {pid}: {name} is not in its environment")
            value = e0 + k - 1 + len(key)  # env has one leading NUL that is not in memory
            slot = lo + at + word * (1 + i)
            _ptrace(libc, _PTRACE_POKEDATA, pid, slot, value)
            if struct.unpack("P", read(slot, word))[0] != value:
                raise LaunchError(f"pid {pid}: argv[{i}] could not be redirected")


def launch(binary: str, args: list[str], secrets: dict[str, str]) -> int:
    """Run `binary ARGS` with each argument that is a key of `secrets` replaced by its value
    out of sight; return its exit status (128 + N for a signal)."""
    libc = _libc()
    env = {k: v for k, v in os.environ.items() if k != SECRETS_ENV}
    swaps: dict[int, str] = {}
    for i, a in enumerate(args, 1):
        if a in secrets:
            swaps[i] = _ARG_ENV.format(i)
            env[swaps[i]] = secrets[a]
    if set(secrets) - set(args):
        raise LaunchError("a secret's placeholder is missing from Triton's arguments")
    argv = [binary, *args]
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    pid = os.fork()
    if pid == 0:  # the child: traced from its exec on, so it stops before running anything
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            _ptrace(libc, _PTRACE_TRACEME, 0)
            os.execve(binary, argv, env)
        except BaseException as e:  # the child must never return into the launcher's code
            os.write(2, f"error: cannot start {binary}: {e}\n".encode())
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    if not os.WIFSTOPPED(status):  # it failed before its exec and said why
        raise LaunchError(f"{binary} did not start (wait status {status:#x})")
    try:
        if os.WSTOPSIG(status) != signal.SIGTRAP:
            raise LaunchError(f"{binary} stopped on signal {os.WSTOPSIG(status)}, not at exec")
        if swaps:
            redirect(libc, pid, len(argv), swaps)
        _ptrace(libc, _PTRACE_DETACH, pid)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    for sig in _FORWARDED:
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    while True:
        _, status = os.waitpid(pid, 0)  # retried after each forwarded signal (PEP 475)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


def selftest() -> None:
    """Raise LaunchError, with the reason, if this machine does not let the launcher hide an
    argument (ptrace refused by kernel.yama.ptrace_scope=3 or a seccomp profile, ...): the
    server then fails at once and says why, instead of Triton exiting unexplained."""
    import subprocess

    env = {**os.environ, SECRETS_ENV: json.dumps({"veil-hidden-probe": "hidden"})}
    try:
        p = subprocess.run([sys.executable, "-m", __name__, "/bin/sh", "-c",
                            'test "$0" = hidden', "veil-hidden-probe"], env=env,
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LaunchError(f"the launcher did not run: {e}") from None
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        raise LaunchError(lines[-1].removeprefix("error: ") if lines else
                          f"the launcher's probe exited {p.returncode}")


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m veil.serve._launch BINARY [ARGS...]")
    try:
        secrets = json.loads(os.environ.get(SECRETS_ENV) or "{}")
        sys.exit(launch(sys.argv[1], sys.argv[2:], secrets))
    except (LaunchError, OSError, ValueError) as e:
        print(f"error: cannot start Triton with its access token kept private: {e}",
              file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
