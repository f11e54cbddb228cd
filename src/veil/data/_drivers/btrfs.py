"""btrfs: volumes are subvolumes, snapshots read-only snapshots, clones writable snapshots.

Snapshot and clone cost does not grow with the data: btrfs shares extents copy-on-write. Sizes are
enforced as qgroup limits on referenced bytes when quotas are enabled on the filesystem (veil
enables them on the pool it creates)."""

from __future__ import annotations

import os
from pathlib import Path

from veil.data._drivers._base import Progress, rmtree, run

_SUBVOLUME_ROOT_INO = 256  # the inode number of every btrfs subvolume's top directory


class BtrfsDriver:
    name = "btrfs"

    def __init__(self, root: Path):
        self.root = root
        self.enforces_size = quotas_enabled(root)

    def create_volume(self, path: Path, size: int | None) -> None:
        run(["btrfs", "subvolume", "create", str(path)], "cannot create the volume")
        self._limit(path, size)

    def snapshot(
        self, volume: Path, dest: Path, previous: Path | None, progress: Progress | None
    ) -> None:
        run(["btrfs", "subvolume", "snapshot", "-r", str(volume), str(dest)],
            "cannot create the snapshot")

    def clone(
        self, snapshot: Path, dest: Path, size: int | None, progress: Progress | None
    ) -> None:
        run(["btrfs", "subvolume", "snapshot", str(snapshot), str(dest)],
            "cannot create the clone")
        self._limit(dest, size)

    def remove(self, path: Path) -> None:
        if not os.path.lexists(path):
            return
        if os.lstat(path).st_ino == _SUBVOLUME_ROOT_INO:
            run(["btrfs", "subvolume", "delete", str(path)], f"cannot delete {path}")
        else:  # a directory left by an interrupted operation, not a subvolume
            rmtree(path)

    def collect_garbage(self, live_snapshots: list[Path]) -> None:
        return None  # btrfs frees extents itself when the last subvolume using them goes

    def snapshot_location(self, object_id: str) -> str:
        return f"objects/{object_id}"

    def _limit(self, path: Path, size: int | None) -> None:
        if self.enforces_size:
            run(["btrfs", "qgroup", "limit", str(size) if size else "none", str(path)],
                "cannot set the volume's size limit")


def quotas_enabled(path: Path) -> bool:
    """Whether btrfs quotas (qgroups) are enabled on the filesystem holding ``path``."""
    if os.geteuid() != 0:
        return False  # reading and setting qgroups needs root
    try:
        run(["btrfs", "qgroup", "show", str(path)], "qgroup")
    except Exception:
        return False
    return True
