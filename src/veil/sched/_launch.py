"""Launch claims, shared by the agent and its runners (`_runner`): a file made once, durably,
by whoever comes first, the runner about to start a job or an agent giving the launch up."""

from __future__ import annotations

import os
from pathlib import Path

from veil.process import Proc

ABANDONED = "abandoned"


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def claim(path: Path | str, text: str) -> bool:
    """Create `path` holding `text`, durably, unless it exists: True when this call made it.
    The content is written and synced before the name appears (link), so a reader never sees
    half a claim."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    _sync_dir(path.parent)
    return True


def read_claim(path: Path | str) -> Proc | str | None:
    """Who claimed a launch: the runner's Proc, ABANDONED (an agent gave it up), or None (not
    claimed yet)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        pid, start, group = (int(x) for x in text.split())
    except ValueError:  # "abandoned" (or a file that is not a runner's)
        return ABANDONED
    return Proc(pid, start, group)


def write_atomically(path: str, text: str) -> None:
    """Replace `path` with `text`, synced: readers see the old file or the whole new one."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _sync_dir(Path(path).parent)
