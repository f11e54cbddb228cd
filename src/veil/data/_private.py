"""What veil stores is readable by the user running veil only: its home and every store in it
are 0700, the metadata and the pool file 0600, stored content 0400, and files are created with
these modes (never made readable first and narrowed afterwards)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from veil._config import home_dir

DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # the group's and others' permission bits


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter: made 0700 (missing parents the usual
    way), or, if it exists and is ours, with the group's and others' bits taken away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
    tighten(path)
    return path


def private_home(path: Path) -> Path:
    """The veil home, made 0700. An existing folder is tightened when it is ours and empty or a
    veil home already (made by an older veil), never when it is a folder shared by design such
    as /tmp (sticky)."""
    if not path.exists():
        return home_dir(path)
    if path.parent != path and ((path / "veil.db").exists() or not any(path.iterdir())):
        tighten(path)
    return path


def tighten(path: Path) -> None:
    """Take the group's and others' permission bits off ``path`` if it is ours (and not a
    sticky folder shared by design, such as /tmp)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == os.geteuid() and mode & _OTHERS and not mode & stat.S_ISVTX:
        os.chmod(path, mode & ~_OTHERS)


def create_private(path: Path | str, mode: int = FILE_MODE) -> int:
    """Open a new file (which must not exist) for writing, with ``mode`` from its creation."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)


def is_private(path: Path | str) -> bool:
    """Whether only the owner (and root) can read or enter ``path``."""
    return not os.stat(path).st_mode & _OTHERS
