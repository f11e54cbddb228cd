"""A loop-backed btrfs pool file inside the veil home, for root users with no btrfs mounted."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from veil.data._drivers._base import run
from veil.errors import AlreadyExists, BackendError, InvalidArgument

DEFAULT_POOL_SIZE = 64 * 2**30
MIN_POOL_SIZE = 256 * 2**20  # mkfs.btrfs refuses much smaller devices


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


class Pool:
    def __init__(self, home: Path):
        self.dir = home / "pool"
        self.image = self.dir / "pool.img"
        self.mountpoint = self.dir / "mnt"

    def exists(self) -> bool:
        return self.image.exists()

    def mounted(self) -> bool:
        return _mount_source(self.mountpoint) is not None

    def default_size(self) -> int:
        env = os.environ.get("VEIL_POOL_SIZE")
        if env:
            from veil.data._names import parse_size

            return parse_size(env)  # type: ignore[return-value]
        self.dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.dir).free
        return max(MIN_POOL_SIZE, min(DEFAULT_POOL_SIZE, int(free * 0.9)) // 2**20 * 2**20)

    def create(self, size: int | None = None) -> None:
        """Create the sparse pool file, make a btrfs on it with quotas enabled, and mount it."""
        if self.exists():
            raise AlreadyExists(f"the pool {self.image} already exists")
        size = size or self.default_size()
        if size < MIN_POOL_SIZE:
            raise InvalidArgument(
                f"cannot create a btrfs pool of {size} bytes: the minimum is "
                f"{MIN_POOL_SIZE // 2**20}Mi (set VEIL_POOL_SIZE or `veil pool create --size`)"
            )
        if os.geteuid() != 0:
            raise BackendError("cannot create a btrfs pool: mounting it needs root")
        if not _kernel_has_btrfs():
            raise BackendError("cannot create a btrfs pool: the kernel has no btrfs support")
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.image.with_suffix(".img.tmp")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.truncate(size)
            run(["mkfs.btrfs", "-q", "-L", "veil-pool", str(tmp)], "cannot create a btrfs pool")
            run(["mount", "-o", "loop", str(tmp), str(self.mountpoint)],
                "cannot create a btrfs pool: mounting it failed")
            try:
                run(["btrfs", "quota", "enable", str(self.mountpoint)],
                    "cannot create a btrfs pool: enabling quotas failed")
            except BaseException:
                run(["umount", str(self.mountpoint)], "cannot unmount the failed pool")
                raise
            os.replace(tmp, self.image)  # the pool exists only once it is whole and mounted
        finally:
            tmp.unlink(missing_ok=True)

    def attach(self) -> None:
        """Mount the pool file (after a reboot or `veil pool detach`)."""
        if self.mounted():
            return
        if os.geteuid() != 0:
            raise BackendError(
                f"the btrfs pool {self.image} is not mounted and mounting it needs root"
            )
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)],
            "cannot mount the btrfs pool")

    def detach(self) -> None:
        """Unmount the pool and release its loop device; the pool file and its data stay."""
        if not self.mounted():
            return
        run(["umount", str(self.mountpoint)], "cannot detach the pool")

    def grow(self, size: int) -> None:
        """Grow the pool file to ``size`` bytes and the filesystem with it (online)."""
        current = self.image.stat().st_size
        if size <= current:
            raise InvalidArgument(
                f"the pool is already {current} bytes; growing needs a larger size"
            )
        self.attach()
        with open(self.image, "r+b") as f:
            f.truncate(size)
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
                        _mount_source(self.mountpoint) if mounted else None)


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
    m = mount_of(mountpoint)
    if m and m[0] == os.path.realpath(mountpoint):
        return m[2]
    return None
