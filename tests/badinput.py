"""The check behind every table-driven bad-input case (issue 15): a user's mistake is refused
in one line on stderr, with a non-zero exit, no traceback, nothing on stdout, and nothing under
veil's home changed.

Cases run `veil.cli.main` in the test's process (a traceback there is an exception escaping
`main`, which fails the test with it), so hundreds of cases cost seconds, not a process each.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from veil.cli import main

# SQLite's journal files come and go on reads; lock files are created empty by readers.
_TRANSIENT = re.compile(r"(-wal|-shm|-journal|\.lock)$")


def home_state(home: Path) -> dict[str, tuple]:
    """Every entry under `home` (not following mounts' symlinks) with its type, mode and, for
    files, size and content hash: equal states mean nothing was changed."""
    state: dict[str, tuple] = {}
    if not home.exists():
        return state
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(home))
            if _TRANSIENT.search(name):
                continue
            st = p.lstat()
            if p.is_symlink():
                state[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                state[rel] = ("dir", st.st_mode)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 2**26 else ""
                state[rel] = ("file", st.st_mode, st.st_size, digest)
    return state


def refused(capsys, argv: list[str], match: str, *, home: Path, code: int | None = None,
            also: Callable[[], object] | None = None) -> str:
    """Run `veil ARGV` and assert it was refused cleanly; returns the error line.

    `match` must appear in the line (case-insensitive); `code`, when given, is the exit code;
    `also`, when given, is a probe of state outside the home (a database, a server) that must
    return the same value before and after."""
    capsys.readouterr()
    before, extra = home_state(home), also() if also else None
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    shown = f"veil {' '.join(map(str, argv))}\nexit {rc}\nstdout: {out!r}\nstderr: {err!r}"
    assert rc != 0, shown
    if code is not None:
        assert rc == code, shown
    assert "Traceback" not in err, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert match.lower() in lines[0].lower(), shown
    assert out == "", shown
    assert home_state(home) == before, f"{shown}\nthe home changed"
    if also:
        assert also() == extra, f"{shown}\nstate outside the home changed"
    return lines[0]
