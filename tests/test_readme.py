"""The README runs as written: every shell and Python block, in order, in a fresh folder and a
fresh VEIL_HOME, heavy commands on their documented quick presets (`[quick: ...]`).

It fails if any block fails (a command in it exits non-zero, or a Python block raises), if a
block goes silent for longer than a command may without showing progress, or if the README
leaves files in the folder that the repository's .gitignore would not ignore (a user follows
the README from the repository root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import readme_blocks as rb

# A block may go this long without printing a line; progress lines come every
# VEIL_PROGRESS_INTERVAL seconds, so only a step that shows no progress at all trips it.
SILENCE_S = 30.0
BLOCK_TIMEOUT_S = 300.0
# Commands that can take minutes: each must state its measured duration (and most have a quick
# preset; a job's time follows its data, which the quick data set keeps small).
HEAVY = ("veil privacy fit", "veil privacy evaluate", "veil privacy attack", "veil privacy leakage",
         "veil solutions face-privacy evaluate", "veil train lane-detection",
         "veil solutions face-privacy generate", "veil solutions lane-detection generate",
         "veil privacy generate", "veil solutions ctr generate", "veil solutions ctr train")


def _kill_processes_of(home: Path) -> None:
    """SIGKILL every process started with VEIL_HOME=home (the agent, its jobs, a server)."""
    needle = f"VEIL_HOME={home}\0".encode()
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (p / "environ").read_bytes() and int(p.name) != os.getpid():
                os.kill(int(p.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def test_readme_blocks_are_found_and_annotated():
    blocks = rb.blocks()
    assert sum(b.lang == "sh" for b in blocks) >= 8
    assert sum(b.lang == "python" for b in blocks) >= 2
    for b in blocks:
        if b.skip:  # only the suite itself and the long benchmarks may be skipped
            cmds = [c.split("#")[0].strip() for c in b.commands()]
            assert all(c.startswith(("make ", ".venv/bin/python benchmarks/")) for c in cmds), \
                f"README line {b.line}: only make targets and benchmarks may be skipped"
        for cmd in b.commands() if b.lang == "sh" else []:
            code, _, comment = cmd.partition("#")
            if code.strip().startswith(HEAVY) or rb.QUICK.search(comment):
                assert rb.DURATION.search(comment), \
                    f"README line {b.line}: {code.strip()!r} must state its measured duration"


def test_quick_presets_are_appended_to_their_command():
    (b,) = rb.blocks("```sh\nveil x --a 1 \\\n   --b 2   # slow (3 min) [quick: --c 3]\n```\n")
    assert "   --b 2 --c 3  # slow" in b.script(quick=True)
    assert b.script(quick=False) == b.text
    assert b.commands() == ["veil x --a 1     --b 2   # slow (3 min) [quick: --c 3]"]


def _gitignored(root: Path, names: list[str]) -> set[str]:
    if not names:
        return set()
    r = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", "--stdin"],
                       input="\n".join(names), capture_output=True, text=True)
    return {line.strip() for line in r.stdout.splitlines()}


@pytest.mark.timeout(1200)
def test_readme_runs_as_written(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    rb.venv_link(work)
    env, py_env = rb.environment(home, VEIL_PROGRESS_INTERVAL="5")
    term = rb.Terminal(work, env, log=tmp_path / "readme.log")
    ran = []
    try:
        for block in rb.blocks():
            if block.skip:
                continue
            if block.lang == "sh":
                res = term.run(block, quick=True, timeout=BLOCK_TIMEOUT_S)
            else:
                res = rb.run_python(block, work, py_env, timeout=BLOCK_TIMEOUT_S)
            ran.append(res)
            assert res.ok, (f"README block at line {block.line} failed: {res.failed}\n"
                            f"{block.script(quick=True)}\n--- output ---\n{res.text()}")
            silent = res.longest_silence()
            assert silent <= SILENCE_S, (
                f"README block at line {block.line} printed nothing for {silent:.0f} s\n"
                f"{res.text()}")
    finally:
        term.close()
        _kill_processes_of(home)
        subprocess.run([sys.executable, "-m", "veil", "pool", "detach"], env=py_env,
                       capture_output=True)
    left = [p.name + ("/" if p.is_dir() else "") for p in sorted(work.iterdir())
            if p.name != ".venv"]
    stray = sorted(set(left) - _gitignored(rb.ROOT, left))
    assert not stray, f"the README leaves files git would pick up in the repository: {stray}"
    summary = ", ".join(f"line {r.block.line}: {r.seconds:.0f} s" for r in ran)
    print(f"\nREADME blocks: {summary}")
    assert len(ran) >= 9

