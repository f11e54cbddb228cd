"""A loop-backed btrfs pool file inside the veil home, for root users with no btrfs mounted."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from veil.data._drivers._base import failpoint, run
from veil.data._private import DIR_MODE, create_private, private_dir, tighten
from veil.errors import AlreadyExists, BackendError, InvalidArgument

DEFAULT_POOL_SIZE = 64 * 2**30
MIN_POOL_SIZE = 256 * 2**20  # mkfs.btrfs refuses much smaller devices
_STACKED_MOUNTS_MAX = 16  # stale mounts under one another that recovery will take away


@dataclass(frozen=True)
class PoolInfo:
    """The state of the loop-backed pool."""

    image: Path
    mountpoint: Path
    exists: bool
    mounted: bool
    size: int | None  # the pool file's apparent size (the file is sparse)
    allocated: int | None  # bytes the pool file really occupies on the host disk
    used: int | None  # bytes used inside the btrfs filesystem
    free: int | None
    device: str | None
    # what is mounted on the mount point, bottom first (loop devices by their backing file):
    # the pool file alone, or nothing, once any veil command has run
    mounts: tuple[str, ...] = ()


class Pool:
    """The pool file ``pool/pool.img`` (0600 in a 0700 folder) and its mount ``pool/mnt``.

    Creation builds a whole btrfs, quotas enabled, in ``pool.img.tmp`` and renames it: the pool
    exists once it is whole, and nothing is mounted before then. Whatever a killed creation left
    (the unfinished file; with veil before issue 15, also a mount of it) is taken away by the
    next command, under the home's lock, before it mounts anything: a mount never lands on top
    of a stale one."""

    def __init__(self, home: Path):
        self.dir = home / "pool"
        self.image = self.dir / "pool.img"
        self.tmp = self.dir / "pool.img.tmp"
        self.mountpoint = self.dir / "mnt"

    def exists(self) -> bool:
        return self.image.exists()

    def mounted(self) -> bool:
        return _mount_source(self.mountpoint) is not None

    def default_size(self) -> int:
        env = os.environ.get("VEIL_POOL_SIZE")
        if env:
            from veil.data._names import parse_size

            try:
                return parse_size(env)  # type: ignore[return-value]
            except InvalidArgument as e:
                raise InvalidArgument(f"VEIL_POOL_SIZE: {e}") from None
        free = shutil.disk_usage(_existing(self.dir)).free
        return max(MIN_POOL_SIZE, min(DEFAULT_POOL_SIZE, int(free * 0.9)) // 2**20 * 2**20)

    def check_size(self, size: int) -> None:
        """Refuse a pool size mkfs.btrfs cannot use, or one the host disk could not hold: the
        pool file is sparse, and its size must not promise more than the disk's free space plus
        what the file already occupies."""
        from veil.data._names import format_size

        verb = "grow the pool to" if self.exists() else "create a btrfs pool of"
        if size < MIN_POOL_SIZE:
            raise InvalidArgument(
                f"cannot {verb} {format_size(size)}: the minimum is "
                f"{MIN_POOL_SIZE // 2**20}Mi (set VEIL_POOL_SIZE or `veil pool create --size`)"
            )
        disk = _existing(self.dir)
        free = shutil.disk_usage(disk).free
        held = self.image.stat().st_blocks * 512 if self.exists() else 0
        if size > held + free:
            already = f" and the pool file holds {format_size(held)}" if held else ""
            raise InvalidArgument(
                f"cannot {verb} {format_size(size)}: the disk holding {disk} has "
                f"{format_size(free)} free{already}, so the pool can be at most "
                f"{format_size(held + free)}"
            )

    def create(self, size: int | None = None) -> None:
        """Create the sparse pool file, make a btrfs on it with quotas enabled, and mount it."""
        if self.exists():
            raise AlreadyExists(f"the pool {self.image} already exists")
        size = size or self.default_size()
        self.check_size(size)
        if os.geteuid() != 0:
            raise BackendError("cannot create a btrfs pool: mounting it needs root")
        if not _kernel_has_btrfs():
            raise BackendError("cannot create a btrfs pool: the kernel has no btrfs support")
        self.recover()
        private_dir(self.dir)
        self.mountpoint.mkdir(DIR_MODE, exist_ok=True)
        quota_at_mkfs = _mkfs_enables_quota()
        try:
            fd = create_private(self.tmp)
            try:
                os.ftruncate(fd, size)
            except OSError as e:
                raise BackendError(f"cannot create a btrfs pool of {size} bytes at "
                                   f"{self.tmp}: {e.strerror}") from None
            finally:
                os.close(fd)
            run(["mkfs.btrfs", "-q", "-L", "veil-pool", *(["-R", "quota"] if quota_at_mkfs else []),
                 str(self.tmp)], "cannot create a btrfs pool")
            failpoint("pool.create.made")
            os.replace(self.tmp, self.image)  # the pool exists only once it is whole
        finally:
            self.tmp.unlink(missing_ok=True)
        failpoint("pool.create.renamed")
        self.attach()
        if not quota_at_mkfs:  # btrfs-progs before 5.x: quotas once mounted
            run(["btrfs", "quota", "enable", str(self.mountpoint)],
                "cannot create a btrfs pool: enabling quotas failed")

    def recover(self) -> None:
        """Take away what a killed pool creation left: mounts of the unfinished pool file on the
        mount point, and the file itself. Call it under the home's lock."""
        self._wait_for_stragglers()
        for _ in range(_STACKED_MOUNTS_MAX):
            mounts = self.mounts()
            if not mounts or not _is_ours(mounts[-1], self.tmp):
                break  # a stale mount under the pool's own goes with `veil pool detach`
            run(["umount", str(self.mountpoint)],
                "cannot take away a half-made pool's mount (is a process using it?)")
        self.tmp.unlink(missing_ok=True)

    def _wait_for_stragglers(self, timeout: float = 60.0) -> None:
        """A veil killed while it ran mkfs.btrfs or mount on the pool's files leaves that
        command running (it is not veil's to stop): wait until no process names them, so that
        its mount cannot race ours (before this wait, 2 of 16 random kills failed so)."""
        names = {str(self.image).encode(), str(self.tmp).encode()}
        deadline = time.monotonic() + timeout
        while _processes_naming(names) and time.monotonic() < deadline:
            time.sleep(0.05)

    def mounts(self) -> list[str]:
        """What is mounted on the mount point, bottom first: each loop device's backing file
        (a path, with " (deleted)" if it was removed since), or the source if not a loop."""
        return [_backing_file(src) or src for src in _mount_sources(self.mountpoint)]

    def attach(self) -> None:
        """Mount the pool file (after a reboot or `veil pool detach`), taking away first what a
        killed creation left; the pool file is made 0600 if an older veil made it readable."""
        tighten(self.dir)
        tighten(self.image)
        mounts = self.mounts()
        if mounts and not _is_ours(mounts[-1], self.tmp):
            return  # mounted
        if os.geteuid() != 0:
            raise BackendError(
                f"the btrfs pool {self.image} is not mounted and mounting it needs root"
            )
        self.recover()
        if self.mounted():
            return  # the pool's own mount, found under a stale one
        self.mountpoint.mkdir(DIR_MODE, exist_ok=True)
        run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)],
            "cannot mount the btrfs pool")

    def detach(self) -> None:
        """Unmount the pool and release its loop device; the pool file and its data stay."""
        for _ in range(_STACKED_MOUNTS_MAX):  # and a stale mount under it, if there is one
            if not self.mounted():
                return
            run(["umount", str(self.mountpoint)], "cannot detach the pool")

    def grow(self, size: int) -> None:
        """Grow the pool file to ``size`` bytes and the filesystem with it (online)."""
        from veil.data._names import format_size

        current = self.image.stat().st_size
        if size <= current:
            raise InvalidArgument(
                f"the pool is already {format_size(current)} ({current} bytes); growing needs "
                "a larger size"
            )
        self.check_size(size)
        self.attach()
        try:
            with open(self.image, "r+b") as f:
                f.truncate(size)
        except OSError as e:
            raise BackendError(f"cannot grow the pool file {self.image} to {size} bytes: "
                               f"{e.strerror}") from None
        device = _mount_source(self.mountpoint)
        run(["losetup", "-c", str(device)], "cannot grow the pool's loop device")
        run(["btrfs", "filesystem", "resize", "max", str(self.mountpoint)],
            "cannot grow the pool's filesystem")

    def info(self) -> PoolInfo:
        exists, mounted = self.exists(), self.mounted()
        size = allocated = used = free = None
        if exists:
            st = self.image.stat()
            size, allocated = st.st_size, st.st_blocks * 512
        if mounted:
            vfs = os.statvfs(self.mountpoint)
            free = vfs.f_bavail * vfs.f_frsize
            used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
        return PoolInfo(self.image, self.mountpoint, exists, mounted, size, allocated, used, free,
                        _mount_source(self.mountpoint) if mounted else None, tuple(self.mounts()))


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (where the disk's free space is measured)."""
    while not path.exists():
        path = path.parent
    return path


def _is_ours(backing: str, tmp: Path) -> bool:
    """Whether a loop device's backing file is the pool file veil was making at ``tmp`` (a
    stale mount: the finished pool file is renamed before it is ever mounted)."""
    return backing.removesuffix(" (deleted)") == os.path.realpath(tmp)


def _backing_file(source: str) -> str | None:
    """The file behind a loop device such as /dev/loop3, as the kernel names it."""
    name = os.path.basename(source)
    if not name.startswith("loop"):
        return None
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().rstrip("\n")
    except OSError:
        return None


_MKFS_QUOTA: bool | None = None


def _mkfs_enables_quota() -> bool:
    """Whether mkfs.btrfs can enable quotas itself (-R quota, btrfs-progs 5.x and later)."""
    global _MKFS_QUOTA
    if _MKFS_QUOTA is None:
        try:
            out = subprocess.run(["mkfs.btrfs", "-R", "list-all"], capture_output=True,
                                 text=True, check=False)
            _MKFS_QUOTA = "quota" in out.stdout + out.stderr
        except OSError:
            _MKFS_QUOTA = False
    return _MKFS_QUOTA


def _kernel_has_btrfs() -> bool:
    try:
        return "btrfs" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\")


def mount_of(path: Path) -> tuple[str, str, str] | None:
    """(mount point, filesystem type, source) of the mount holding ``path``."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    for line in lines:
        left, _, right = line.partition(" - ")
        mnt = _unescape(left.split()[4])
        fstype, source = right.split()[:2]
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and (best is None or len(mnt) >= len(best[0])):
            best = (mnt, fstype, _unescape(source))
    return best


def _mount_source(mountpoint: Path) -> str | None:
    """The source of the mount on top at ``mountpoint`` (None: nothing is mounted there)."""
    sources = _mount_sources(mountpoint)
    return sources[-1] if sources else None


def _mount_sources(mountpoint: Path) -> list[str]:
    """The sources of every mount at ``mountpoint`` itself, bottom first."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    real = os.path.realpath(mountpoint)
    out = []
    for line in lines:
        left, _, right = line.partition(" - ")
        if _unescape(left.split()[4]) == real:
            out.append(_unescape(right.split()[1]))
    return out


def _processes_naming(names: set[bytes]) -> list[int]:
    """Other processes with one of `names` as an argument."""
    found = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            args = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(p.name) != os.getpid() and names.intersection(args):
            found.append(int(p.name))
    return found
