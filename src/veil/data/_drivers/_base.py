"""What every data driver implements, and helpers they share."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from veil.data._private import DIR_MODE, create_private, private_dir
from veil.errors import BackendError
from veil.progress import Progress

# Set VEIL_FAILPOINT=<name> to make the process stop (sleep) at that point, after writing its pid to
# $VEIL_FAILPOINT_FILE: the crash tests kill it there with SIGKILL. Read once, at import.
_FAILPOINT = os.environ.get("VEIL_FAILPOINT")


def failpoint(name: str) -> None:
    """Stop here forever if the crash tests asked to (see VEIL_FAILPOINT)."""
    if _FAILPOINT is not None and name == _FAILPOINT:
        Path(os.environ["VEIL_FAILPOINT_FILE"]).write_text(str(os.getpid()))
        while True:
            time.sleep(3600)


class Driver(Protocol):
    """The physical operations of the DataOps toolkit, on absolute paths the caller chooses."""

    name: str
    root: Path  # the directory under which this driver keeps volumes and snapshots
    enforces_size: bool

    def create_volume(self, path: Path, size: int | None) -> None: ...
    def snapshot(
        self, volume: Path, dest: Path, previous: Path | None, progress: Progress | None
    ) -> None: ...
    def clone(
        self, snapshot: Path, dest: Path, size: int | None, progress: Progress | None
    ) -> None: ...
    def remove(self, path: Path) -> None: ...
    def collect_garbage(self, live_snapshots: list[Path]) -> None: ...
    def snapshot_location(self, object_id: str) -> str: ...


def run(cmd: list[str], what: str) -> str:
    """Run a storage command; its failure becomes a one-line BackendError."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise BackendError(f"{what}: {cmd[0]} is not installed") from e
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BackendError(f"{what}: {detail}")
    return proc.stdout


FICLONE = 0x40049409  # _IOW(0x94, 9, int), from linux/fs.h


def reflink_file(src: Path | str, dst: Path | str) -> None:
    """Copy-on-write copy of one file (FICLONE) into a new file, 0600 until its metadata is
    applied: shares the data extents, O(1) in the data."""
    with open(src, "rb") as fs, open(create_private(dst), "wb") as fd:
        fcntl.ioctl(fd.fileno(), FICLONE, fs.fileno())


def copy_file(src: Path | str, dst: Path | str) -> None:
    """Copy one file's bytes into a new file, 0600 until its metadata is applied."""
    with open(src, "rb") as fs, open(create_private(dst), "wb") as fd:
        size = os.fstat(fs.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                sent = os.sendfile(fd.fileno(), fs.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        except OSError as e:  # a filesystem without sendfile between files
            if offset or e.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            shutil.copyfileobj(fs, fd, 1 << 20)


def reflink_works(directory: Path) -> bool:
    """Whether FICLONE works between two files in ``directory``."""
    made = not directory.exists()
    a, b = directory / f".reflink-probe-{os.getpid()}", directory / f".reflink-probe-{os.getpid()}b"
    try:
        if not directory.parent.exists():  # the home's own data folder: private from the start
            private_dir(directory.parent)
        directory.mkdir(DIR_MODE, exist_ok=True)
        a.write_bytes(b"veil")
        reflink_file(a, b)
        return b.read_bytes() == b"veil"
    except OSError:
        return False
    finally:
        for p in (a, b):
            p.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                directory.rmdir()


def copy_tree(
    src: Path,
    dst: Path,
    copy_file: Callable[[str, str], None],
    progress: Progress | None = None,
    description: str = "copying",
) -> None:
    """Recreate ``src`` at ``dst`` (which must not exist): files, symlinks, modes, times, owners
    (as root), and hard links between files of the tree."""
    is_root = os.geteuid() == 0
    entries: list[tuple[str, os.stat_result]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(src, onerror=_raise):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            entries.append((p, st))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    if progress:
        progress.start(total, description)
    os.mkdir(dst, DIR_MODE)
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = [(str(dst), os.lstat(src))]
    for p, st in entries:
        out = os.path.join(dst, os.path.relpath(p, src))
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(out, 0o700)
            dirs.append((out, st))
            continue
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(p), out)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], out)
                continue
            copy_file(p, out)
            links[key] = out
            if progress:
                progress.advance(st.st_size)
        else:
            continue  # sockets, fifos and devices are not data
        apply_metadata(out, st.st_mode, st.st_mtime_ns, st.st_uid, st.st_gid, is_root)
    for out, st in reversed(dirs):  # after their content, so the mtimes stay
        apply_metadata(out, st.st_mode, st.st_mtime_ns, st.st_uid, st.st_gid, is_root)


def _raise(err: OSError) -> None:
    raise err  # an unreadable directory must fail the operation, not be skipped silently


def apply_metadata(path: str, mode: int, mtime_ns: int, uid: int, gid: int, is_root: bool) -> None:
    if is_root:
        os.lchown(path, uid, gid)
    if not stat.S_ISLNK(mode):
        os.chmod(path, stat.S_IMODE(mode))
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def rmtree(path: Path) -> None:
    """Remove a tree even where its directories are read-only or unreadable; a missing path is
    fine."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    for _ in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except PermissionError:  # open up every directory we own, then try again
            for dirpath, dirnames, _files in os.walk(path):
                for d in [dirpath, *(os.path.join(dirpath, n) for n in dirnames)]:
                    with contextlib.suppress(OSError):
                        os.chmod(d, 0o700)
    shutil.rmtree(path)
