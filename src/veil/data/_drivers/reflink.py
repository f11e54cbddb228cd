"""reflink: per-file copy-on-write (FICLONE) on filesystems that support it (XFS, btrfs).

Each file is cloned, not copied, so data is shared until written; the cost grows with the number of
files, not their size. Sizes are recorded but not enforced."""

from __future__ import annotations

import os
from pathlib import Path

from veil.data._drivers._base import Progress, copy_tree, reflink_file, rmtree


class ReflinkDriver:
    name = "reflink"
    enforces_size = False

    def __init__(self, root: Path):
        self.root = root

    def create_volume(self, path: Path, size: int | None) -> None:
        os.mkdir(path)

    def snapshot(
        self, volume: Path, dest: Path, previous: Path | None, progress: Progress | None
    ) -> None:
        copy_tree(volume, dest, reflink_file, progress, "snapshot (reflink)")

    def clone(
        self, snapshot: Path, dest: Path, size: int | None, progress: Progress | None
    ) -> None:
        copy_tree(snapshot, dest, reflink_file, progress, "clone (reflink)")

    def remove(self, path: Path) -> None:
        rmtree(path)

    def collect_garbage(self, live_snapshots: list[Path]) -> None:
        return None

    def snapshot_location(self, object_id: str) -> str:
        return f"objects/{object_id}"
