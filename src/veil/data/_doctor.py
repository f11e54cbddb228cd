"""`veil doctor` for the data layer: which driver, why, and what would make it faster."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from veil._config import veil_home
from veil.data._drivers import can_create_pool, choose, data_dir, fs_type
from veil.data._drivers._base import reflink_works
from veil.data._pool import Pool, PoolInfo, _kernel_has_btrfs, mount_of
from veil.data._private import is_private

_COST = {
    "btrfs": "snapshots and clones are O(1) in data size (btrfs copy-on-write subvolumes)",
    "reflink": "snapshots and clones clone each file's extents (FICLONE): the cost grows with the "
               "number of files, not their size; sizes are recorded but not enforced",
    "copy": "snapshots store changed files once (content-addressed, deduplicated), but the first "
            "snapshot, every clone and every restore copy all the data: their time and disk use "
            "grow with the data; sizes are recorded but not enforced",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class DoctorReport:
    """What the data layer uses on this machine, and why."""

    home: Path
    data_dir: Path
    driver: str
    reason: str
    cost: str
    enforces_size: bool
    sizes: str  # how volume sizes are kept, in words
    saved: bool  # the home already holds volumes in this driver's format
    checks: list[Check] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    pool: PoolInfo | None = None


def doctor(*, home: Path | str | None = None) -> DoctorReport:
    """Inspect the machine and the home. It changes nothing of the user's, but like any veil
    command it first finishes the recovery of an operation a killed process left, and it mounts
    the home's pool if it is detached."""
    from veil.data._api import _reading
    from veil.data._drivers.btrfs import quotas_enabled

    path = Path(home).absolute() if home is not None else veil_home()
    with _reading(path) as h:
        saved = h.store.get_meta("driver") is not None
        choice = h.choice()
    data = data_dir(path)
    fstype = fs_type(data)
    pool_ok, pool_why = can_create_pool()
    reflink = reflink_works(data / ".reflink-probe") if fstype != "btrfs" else True
    checks = [
        Check("data directory", True, f"{data} ({fstype})"),
        Check("running as root", os.geteuid() == 0, f"uid {os.geteuid()}"),
        Check("kernel btrfs support", _kernel_has_btrfs(), "/proc/filesystems"),
        Check("btrfs-progs", shutil.which("btrfs") is not None,
              shutil.which("btrfs") or "not installed"),
        Check("can create a btrfs pool", pool_ok, pool_why),
        Check("reflink (FICLONE) on the data directory", reflink, fstype),
    ]
    pool = Pool(path)
    private = is_private(path)
    checks.append(Check("home private to its owner", private,
                        f"{path} is mode {stat.S_IMODE(path.stat().st_mode):o}"
                        + ("" if private else ": other users can read what it holds")))
    enforces = False
    sizes = "recorded, not enforced"
    if choice.driver == "btrfs" and choice.pool and not pool.exists():
        enforces = True  # veil enables quotas on the pool it makes (mkfs.btrfs -R quota)
        sizes = "enforced (btrfs quotas on the pool veil creates at the first write)"
        checks.append(Check("btrfs quotas (sizes enforced)", True,
                            "enabled on the pool veil creates at the first write"))
    elif choice.driver == "btrfs":
        root = choice.root if choice.root.exists() else data
        enforces = quotas_enabled(root)
        sizes = "enforced (btrfs quotas)" if enforces else sizes
        checks.append(Check("btrfs quotas (sizes enforced)", enforces,
                            "enabled" if enforces else "disabled or not readable"))
    hints: list[str] = []
    if saved and choice.driver != "btrfs":
        hints.append("this home already holds volumes in the "
                     f"{choice.driver} format; a faster driver applies to a new VEIL_HOME")
    forced = os.environ.get("VEIL_DRIVER")
    best = choose(path) if forced and not saved and choice.driver != "btrfs" else choice
    if best.driver != choice.driver:  # VEIL_DRIVER keeps a faster driver from being used
        hints.append(f"VEIL_DRIVER={forced} is set: without it veil would use the "
                     f"{best.driver} driver ({best.reason})")
    else:
        hints += _faster(choice.driver)
    if choice.driver == "btrfs" and not enforces:
        mount = mount_of(choice.root if choice.root.exists() else data)
        hints.append("volume sizes are not enforced: enable btrfs quotas as root "
                     f"(`btrfs quota enable {mount[0] if mount else 'MOUNTPOINT'}`)")
    if not private:
        hints.append(f"keep what veil stores to yourself: chmod 700 {path}")
    return DoctorReport(
        home=path, data_dir=data, driver=choice.driver, reason=choice.reason,
        cost=_COST[choice.driver], enforces_size=enforces, sizes=sizes, saved=saved,
        checks=checks, hints=hints, pool=pool.info() if pool.exists() else None,
    )


def _faster(driver: str) -> list[str]:
    """The steps this machine lacks for a faster driver than `driver`, and only those: a root
    user is not told to become root."""
    if driver == "btrfs":
        return []
    pool = "veil creates a loop-backed btrfs pool in the veil home"
    progs = shutil.which("mkfs.btrfs") is not None and shutil.which("btrfs") is not None
    if os.geteuid() != 0:
        step = f"run veil as root{'' if progs else ', with btrfs-progs installed'} ({pool})"
    elif not _kernel_has_btrfs():
        step = f"a kernel with btrfs support (`modprobe btrfs`); then {pool}"
    elif not progs:
        step = f"install btrfs-progs (`apt-get install btrfs-progs`); then {pool}"
    else:
        step = None
    hints = [f"for O(1) snapshots and clones: {step}"] if step else []
    if driver == "copy":  # FICLONE fails on the data directory, or this home keeps its format
        hints.append("for per-file copy-on-write: set VEIL_DATA_DIR to a directory on XFS "
                     "(reflink=1) or btrfs")
    return hints


def pool_show(*, home: Path | str | None = None) -> PoolInfo:
    """The loop-backed btrfs pool of this home (whether or not it exists yet)."""
    return Pool(Path(home).absolute() if home is not None else veil_home()).info()


def pool_create(size: int | None = None, *, home: Path | str | None = None) -> PoolInfo:
    """Create the pool now (it is otherwise created on first use), e.g. with a chosen size."""
    from veil.data._api import _Home
    from veil.data._store import exclusive
    from veil.errors import AlreadyExists, InUse

    path = Path(home).absolute() if home is not None else veil_home()
    pool = Pool(path)
    if pool.exists():
        raise AlreadyExists(f"the pool {pool.image} already exists (see `veil pool grow`)")
    if size is not None:
        pool.check_size(size)  # before anything is made
    with exclusive(path, "creating the pool"):
        if pool.exists():
            raise AlreadyExists(f"the pool {pool.image} already exists (see `veil pool grow`)")
        h = _Home(path)
        try:
            saved = h.store.get_meta("driver")
            if saved is not None and not h.choice().pool:
                raise InUse(f"this veil home already uses the {h.choice().driver} driver")
            forced = os.environ.get("VEIL_DRIVER")
            if forced and forced != "btrfs":
                raise InUse(f"VEIL_DRIVER={forced} is set: this home would not use the pool")
            pool.create(size)  # before anything opens the driver, which would make a default one
            h.driver()  # records the choice: this home now uses the pool
        finally:
            h.store.close()
    return pool.info()


def pool_grow(size: int, *, home: Path | str | None = None) -> PoolInfo:
    """Grow the pool file and its filesystem, online."""
    from veil.data._store import exclusive
    from veil.errors import NotFound

    path = Path(home).absolute() if home is not None else veil_home()
    pool = Pool(path)
    if not pool.exists():
        raise NotFound(f"there is no pool at {pool.image}")
    with exclusive(path, "growing the pool"):
        pool.grow(size)
    return pool.info()


def pool_detach(*, home: Path | str | None = None) -> PoolInfo:
    """Unmount the pool (its data stays in the pool file; the next veil command re-attaches it)."""
    from veil.data._store import exclusive
    from veil.errors import NotFound

    path = Path(home).absolute() if home is not None else veil_home()
    pool = Pool(path)
    if not pool.exists():
        raise NotFound(f"there is no pool at {pool.image}")
    with exclusive(path, "detaching the pool"):
        pool.detach()
    return pool.info()
