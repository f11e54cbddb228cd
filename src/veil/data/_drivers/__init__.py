"""Choosing a data driver for a veil home."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from veil.data._drivers._base import Driver, reflink_works
from veil.data._drivers.btrfs import BtrfsDriver
from veil.data._drivers.copy import CopyDriver
from veil.data._drivers.reflink import ReflinkDriver
from veil.data._pool import Pool, _kernel_has_btrfs, mount_of
from veil.data._private import private_dir
from veil.errors import BackendError, InvalidArgument

DRIVERS = ("btrfs", "reflink", "copy")


@dataclass(frozen=True)
class Choice:
    """Which driver a home uses, where its objects live, and why."""

    driver: str
    root: Path
    reason: str
    pool: bool = False  # the btrfs driver on veil's own loop-backed pool


def data_dir(home: Path) -> Path:
    """Where the drivers keep data: the home, or a folder of this home's own in VEIL_DATA_DIR
    (two homes sharing one data directory must never see each other's objects)."""
    env = os.environ.get("VEIL_DATA_DIR")
    if not env:
        return home
    tag = hashlib.sha256(str(home.absolute()).encode()).hexdigest()[:12]
    return Path(env).expanduser().absolute() / f"veil-{tag}"


def fs_type(path: Path) -> str:
    p = path
    while not p.exists():
        p = p.parent
    m = mount_of(p)
    return m[1] if m else "unknown"


def can_create_pool() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not running as root (mounting a pool needs root)"
    if not _kernel_has_btrfs():
        return False, "the kernel has no btrfs support"
    if shutil.which("mkfs.btrfs") is None or shutil.which("btrfs") is None:
        return False, "btrfs-progs is not installed (apt-get install btrfs-progs)"
    return True, "running as root with btrfs-progs and a btrfs-capable kernel"


def choose(home: Path, forced: str | None = None) -> Choice:
    """Pick the fastest driver that works here (or ``forced``), without changing anything."""
    data = data_dir(home)
    pool = Pool(home)
    fstype = fs_type(data)
    if forced is not None and forced not in DRIVERS:
        raise InvalidArgument(f"unknown driver {forced!r}: choose one of {', '.join(DRIVERS)}")
    if forced in (None, "btrfs"):
        if fstype == "btrfs" and os.geteuid() == 0 and shutil.which("btrfs"):
            # non-root users could not delete read-only snapshots: they get reflink on btrfs
            return Choice("btrfs", data / "btrfs", f"{data} is on a btrfs filesystem")
        if pool.exists():
            return Choice("btrfs", pool.mountpoint, f"veil's btrfs pool {pool.image}", pool=True)
        ok, why = can_create_pool()
        if ok:
            return Choice("btrfs", pool.mountpoint,
                          f"no btrfs at {data}; {why}: veil makes a loop-backed btrfs pool "
                          f"at {pool.image}", pool=True)
        if forced == "btrfs":
            raise BackendError(f"the btrfs driver cannot be used: {data} is {fstype} and {why}")
    if forced in (None, "reflink"):
        if reflink_works(data / "reflink"):
            return Choice("reflink", data / "reflink", f"FICLONE works on {data} ({fstype})")
        if forced == "reflink":
            raise BackendError(f"the reflink driver cannot be used: {fstype} at {data} "
                               "does not support FICLONE")
    return Choice("copy", data / "copy", f"{data} is {fstype}: no btrfs, no reflink"
                  if forced is None else "chosen with VEIL_DRIVER=copy")


def open_driver(choice: Choice, home: Path) -> Driver:
    """Make the chosen driver ready to use (creating or mounting veil's pool if needed). The
    driver's folders are private to the user (an older veil made them readable by all)."""
    if choice.pool:
        pool = Pool(home)
        if not pool.exists():
            pool.create()
        else:
            pool.attach()
    data = data_dir(home)
    if data != home:
        private_dir(data)
    private_dir(choice.root)
    private_dir(choice.root / "objects")
    if choice.driver == "btrfs":
        return BtrfsDriver(choice.root)
    if choice.driver == "reflink":
        return ReflinkDriver(choice.root)
    return CopyDriver(choice.root)
