"""The README's code blocks, run in order as a new user would run them in one terminal.

Shell blocks (```sh) go to one long-lived bash, so `. .venv/bin/activate`, variables and
background jobs carry from block to block as they would in a user's terminal; Python blocks
(```python) run with the same interpreter and in the same folder. Two annotations, both visible
to a reader of the README, change what runs:

- a trailing ``[quick: OPTIONS]`` in a command's comment appends OPTIONS to that command (its
  documented quick preset: the same command on tiny settings) when ``quick=True``;
- a line ``<!-- readme-test: skip: REASON -->`` right before a block skips it (only for blocks
  that are the test suite itself or a long benchmark; `test_readme.py` checks which).

Every line of output is timestamped, so a test can also check that no command went silent.
Used by tests/test_readme.py (quick presets) and benchmarks/readme_durations.py (as written).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import selectors
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip:\s*(?P<why>.+?)\s*-->\s*$")
QUICK = re.compile(r"\[quick:\s*(?P<opts>[^\]]*)\]")
DURATION = re.compile(r"\b\d+(\.\d+)?\s*(s|min|h)\b")
MARK = "@@readme-block-done"
FAIL = "@@readme-command-failed"
DONE = "@@readme-command-done"


@dataclass
class Block:
    lang: str  # "sh" or "python"
    text: str
    line: int  # line number of the opening fence in README.md
    skip: str | None = None  # the reason, when the README says to skip it

    def commands(self) -> list[str]:
        """The block's commands, continuation lines joined (comments kept)."""
        out, cur = [], ""
        for raw in self.text.splitlines():
            cur += raw
            if cur.endswith("\\"):
                cur = cur[:-1] + " "
                continue
            if cur.strip():
                out.append(cur)
            cur = ""
        return out

    def script(self, quick: bool | tuple[str, ...], timed: bool = False) -> str:
        """The block's text, with each `[quick: ...]` command given its options if `quick` (or,
        for a tuple, the commands containing one of its strings); with `timed`, each command
        line is followed by a marker line (see `Result.commands`)."""
        if self.lang != "sh" or not (quick or timed):
            return self.text
        lines = []
        for i, line in enumerate(self.commands() if timed else self.text.splitlines()):
            m = QUICK.search(line)
            wanted = quick is True or (isinstance(quick, tuple) and
                                       any(q in line.partition("#")[0] for q in quick))
            if wanted and m and "#" in line:
                code, _, comment = line.partition("#")
                line = f"{code.rstrip()} {m.group('opts').strip()}  #{comment}"
            lines.append(line)
            if timed:
                lines.append(f"echo \"{DONE} {i}\"")
        return "\n".join(lines) + "\n"


def blocks(text: str | None = None) -> list[Block]:
    """The README's fenced code blocks, in order; other languages are not returned."""
    lines = (README.read_text() if text is None else text).splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        skip = None
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (s := SKIP.match(lines[k])):
            skip = s.group("why")
        if lang in ("sh", "python"):
            out.append(Block(lang, "\n".join(lines[start + 1:j]) + "\n", start + 1, skip))
        i = j + 1
    return out


@dataclass
class Result:
    block: Block
    ok: bool
    seconds: float
    output: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)
    failed: list[str] = field(default_factory=list)  # the commands that failed

    def commands(self) -> list[tuple[str, float]]:
        """(command, seconds) for each command of a block run with `timed=True`."""
        cmds, out, t = self.block.commands(), [], 0.0
        for at, line in self.output:
            if line.startswith(DONE):
                i = int(line.split()[-1])
                out.append((cmds[i], at - t))
                t = at
        return out

    def text(self, last: int = 60) -> str:
        return "\n".join(f"{t:7.1f}  {line}" for t, line in self.output[-last:])

    def longest_silence(self) -> float:
        """The longest time the block went without printing a line (from its start)."""
        times = [0.0, *(t for t, _ in self.output), self.seconds]
        return max(b - a for a, b in itertools.pairwise(times))


class Terminal:
    """One bash, fed the README's shell blocks one after another (each `source`d from a file
    with stdin from /dev/null); a command that fails is reported through an ERR trap."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path | None = None) -> None:
        self.cwd = cwd
        self._buf = ""
        self.log = open(log, "a") if log is not None else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"], cwd=cwd, env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._send(f"trap 'echo \"{FAIL} $BASH_COMMAND\"' ERR\n")
        self.n = 0
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def run(self, block: Block, quick: bool | tuple[str, ...], timeout: float,
            timed: bool = False) -> Result:
        self.n += 1
        path = self.cwd / f".readme-block-{self.n}.sh"
        path.write_text(block.script(quick, timed))
        if self.log is not None:
            self.log.write(f"--- README line {block.line} ---\n{block.script(quick)}")
        t0 = time.monotonic()
        self._send(f"source {shlex.quote(str(path))} </dev/null\necho \"{MARK} {self.n}\"\n")
        res = Result(block, ok=True, seconds=0.0)
        done = False
        while not done:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                res.ok = False
                res.failed.append(f"timed out after {timeout:.0f} s")
                break
            if not self._sel.select(timeout=min(left, 1.0)):
                if self.proc.poll() is not None:
                    res.ok = False
                    res.failed.append(f"the shell exited ({self.proc.returncode})")
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                res.ok = False
                res.failed.append("the shell closed its output")
                break
            self._buf += chunk.decode(errors="replace").replace("\r", "\n")
            *lines, self._buf = self._buf.split("\n")
            for line in lines:
                if line == f"{MARK} {self.n}":
                    done = True
                    break
                if line.startswith(FAIL):
                    res.ok = False
                    res.failed.append(line[len(FAIL):].strip())
                if line.strip():
                    res.output.append((time.monotonic() - t0, line))
                if self.log is not None:
                    self.log.write(f"{time.monotonic() - t0:7.1f}  {line}\n")
                    self.log.flush()
        res.seconds = time.monotonic() - t0
        path.unlink(missing_ok=True)
        return res

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
        self.proc.wait()
        self._sel.close()
        if self.log is not None:
            self.log.close()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


def run_python(block: Block, cwd: Path, env: dict[str, str], timeout: float) -> Result:
    """A Python block, run as a script by this interpreter in `cwd`."""
    t0 = time.monotonic()
    res = Result(block, ok=True, seconds=0.0)
    proc = subprocess.Popen([sys.executable, "-c", block.text], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        res.failed.append(f"timed out after {timeout:.0f} s")
    res.seconds = time.monotonic() - t0
    res.output = [(res.seconds, line) for line in out.splitlines()]
    if proc.returncode != 0:
        res.failed.append(f"exit code {proc.returncode}")
    res.ok = not res.failed
    return res


def venv_link(cwd: Path) -> None:
    """Make `cwd/.venv` the virtual environment running this interpreter, so the README's
    `. .venv/bin/activate` works in a fresh folder."""
    prefix = Path(sys.prefix)
    if not (prefix / "bin" / "activate").exists():
        raise RuntimeError(f"{sys.prefix} is not a virtual environment: run the README test "
                           "with .venv/bin/pytest (make test)")
    (cwd / ".venv").symlink_to(prefix, target_is_directory=True)


def environment(home: Path, **extra: str) -> tuple[dict[str, str], dict[str, str]]:
    """(shell, python) environments for running the README as a new user would: this
    interpreter's venv taken off PATH (the README's `. .venv/bin/activate` must put it back),
    no VEIL_* or VIRTUAL_ENV from here, VEIL_HOME=home, and `extra`. The Python blocks' has
    the venv on PATH, as after activation."""
    bindir = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VEIL_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != bindir)
    env.update(VEIL_HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="120", **extra)
    return env, {**env, "PATH": bindir + os.pathsep + env["PATH"]}

