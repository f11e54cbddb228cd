"""Write a new directory so that it appears all at once, or not at all."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from veil.errors import InvalidArgument


@contextmanager
def new_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it is renamed to `path`.

    `path` must not exist or be an empty directory. On failure nothing is left behind."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidArgument(f"{path} is not empty: choose a new folder for the data set")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists():
            path.rmdir()
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def swap_in(tmp: Path, path: Path) -> None:
    """Put the finished directory `tmp` at `path`, replacing what is there: the old one is set
    aside first and removed only once the new one is in place."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
