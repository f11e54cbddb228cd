"""The data operations: volumes, snapshots, clones, restore. Thin over a driver and the Store."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from veil._config import veil_home
from veil.data._drivers import Choice, choose, open_driver
from veil.data._drivers._base import Driver, Progress, failpoint
from veil.data._names import MAX_NAME, check_labels, parse_labels, parse_size, validate_name
from veil.data._private import DIR_MODE
from veil.data._store import SnapshotRow, Store, VolumeRow, exclusive, try_exclusive
from veil.errors import AlreadyExists, InUse, InvalidArgument, NotFound


@dataclass(frozen=True)
class Volume:
    """A writable data volume."""

    name: str
    path: Path  # the directory to read and write (stable across restores)
    driver: str
    size: int | None  # bytes; None = no limit
    labels: dict[str, str]
    created: datetime
    origin_volume: str | None = None  # set on clones: the volume and snapshot cloned
    origin_snapshot: str | None = None
    restored_from: str | None = None  # the last snapshot restored into this volume
    snapshots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """A read-only point-in-time copy of a volume."""

    volume: str
    name: str
    created: datetime
    labels: dict[str, str]
    clones: list[str] = field(default_factory=list)  # volumes cloned from this snapshot


# -- plumbing ------------------------------------------------------------------------------------
class _Home:
    """A veil home opened for reading, or for writing under its lock."""

    def __init__(self, home: Path | str | None):
        self.path = Path(home).absolute() if home is not None else veil_home()
        self.store = Store(self.path)
        self._driver: Driver | None = None
        self._choice: Choice | None = None

    @property
    def volumes_dir(self) -> Path:
        return self.path / "volumes"

    def choice(self) -> Choice:
        """The saved choice of driver, or what would be chosen now (changing nothing)."""
        if self._choice is None:
            saved = self.store.get_meta("driver")
            if saved:
                d = json.loads(saved)
                self._choice = Choice(d["driver"], Path(d["root"]), d["reason"], d["pool"])
            else:
                self._choice = choose(self.path, os.environ.get("VEIL_DRIVER") or None)
        return self._choice

    def driver(self) -> Driver:
        """The home's driver, chosen once and then kept (its objects are in its format)."""
        if self._driver is None:
            choice = self.choice()
            self._driver = open_driver(choice, self.path)
            if self.store.get_meta("driver") is None:
                self.store.set_meta("driver", json.dumps(
                    {"driver": choice.driver, "root": str(choice.root), "reason": choice.reason,
                     "pool": choice.pool}))
        return self._driver

    def abs(self, loc: str) -> Path:
        return self.choice().root / loc

    def volume(self, name: str) -> VolumeRow:
        validate_name(name, "volume name")
        row = self.store.volume(name)
        if row is None:
            raise NotFound(f"no volume named {name!r} (see `veil volume list`)")
        return row

    def snapshot(self, volume: VolumeRow, name: str) -> SnapshotRow:
        """The snapshot `name` of `volume`; `latest` is its newest snapshot (unless one is
        named so, which only a home from before `latest` was reserved can hold)."""
        validate_name(name, "snapshot name")
        row = self.store.snapshot(volume.id, name)
        if row is None and name == LATEST:
            rows = self.store.snapshots(volume.id)
            if not rows:
                raise NotFound(f"volume {volume.name!r} has no snapshots, so none is latest")
            return rows[-1]
        if row is None:
            raise NotFound(f"volume {volume.name!r} has no snapshot named {name!r} "
                           f"(see `veil snapshot list {volume.name}`)")
        return row

    def link(self, row: VolumeRow) -> None:
        """Point ``volumes/NAME`` at the volume's current data (atomically replacing the link)."""
        self.volumes_dir.mkdir(DIR_MODE, exist_ok=True)
        tmp = self.volumes_dir / f".{row.name}.{uuid.uuid4().hex[:8]}"
        os.symlink(self.abs(row.loc), tmp)
        os.replace(tmp, self.volumes_dir / row.name)

    def recover(self) -> None:
        """Finish or undo what a killed process left: pending objects, deletions, garbage."""
        store, driver = self.store, self.driver()
        removed = False
        for loc, _kind in store.garbage():
            driver.remove(self.abs(loc))
            with store.tx() as db:
                db.execute("DELETE FROM garbage WHERE loc = ?", (loc,))
            removed = True
        for s in store.snapshots(states=("pending", "deleting")):  # before their volumes
            driver.remove(self.abs(s.loc))
            with store.tx() as db:
                _forget_snapshot(db, s.id)
            removed = True
        for v in store.volumes(("pending", "deleting")):
            driver.remove(self.abs(v.loc))
            with store.tx() as db:
                db.execute("DELETE FROM volumes WHERE id = ?", (v.id,))
            removed = True
        if removed:
            self.collect_garbage()
        self.resync_links()

    def collect_garbage(self) -> None:
        live = [self.abs(s.loc) for s in self.store.snapshots(states=("ready",))]
        self.driver().collect_garbage(live)

    def resync_links(self) -> None:
        ready = {v.name: v for v in self.store.volumes()}
        if self.volumes_dir.exists():
            for entry in self.volumes_dir.iterdir():
                if entry.name not in ready:
                    entry.unlink()
        for v in ready.values():
            link = self.volumes_dir / v.name
            if not link.is_symlink() or os.readlink(link) != str(self.abs(v.loc)):
                self.link(v)

    def to_volume(self, row: VolumeRow) -> Volume:
        snaps = [s.name for s in self.store.snapshots(row.id)]
        return Volume(
            name=row.name, path=self.volumes_dir / row.name, driver=self.choice().driver,
            size=row.size, labels=row.labels, created=_dt(row.created),
            origin_volume=row.origin_volume, origin_snapshot=row.origin_snapshot,
            restored_from=row.restored_from, snapshots=snaps,
        )

    def to_snapshot(self, row: SnapshotRow, volume_name: str) -> Snapshot:
        clones = [v.name for v in self.store.clones_of_snapshot(row.id)]
        return Snapshot(volume_name, row.name, _dt(row.created), row.labels, clones)


@contextlib.contextmanager
def _reading(home: Path | str | None) -> Iterator[_Home]:
    """Open the home to read. If no writer holds the lock, first finish what a killed process
    left (e.g. a restore killed after its switch), so readers never see a stale volume path."""
    h = _Home(home)
    try:
        if h.store.get_meta("driver") is not None:
            with try_exclusive(h.path) as locked:
                if locked:
                    h.recover()
        yield h
    finally:
        h.store.close()


@contextlib.contextmanager
def _writing(home: Path | str | None, what: str) -> Iterator[_Home]:
    """Open the home under its exclusive lock, after recovering from any earlier crash."""
    h = _Home(home)
    try:
        with exclusive(h.path, what):
            h.recover()
            yield h
    finally:
        h.store.close()


def _forget_snapshot(db, snapshot_id: str) -> None:
    """Drop a snapshot's row; clones made from it keep its name, marked deleted."""
    db.execute("UPDATE volumes SET origin_snapshot_id = NULL, "
               "origin_snapshot = origin_snapshot || ' (deleted)' "
               "WHERE origin_snapshot_id = ?", (snapshot_id,))
    db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))


LATEST = "latest"
"""The name that stands for a volume's newest snapshot wherever a snapshot is named."""


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc).astimezone()


def _new_id() -> str:
    return uuid.uuid4().hex


def _labels(labels: dict[str, str] | list[str] | None) -> dict[str, str]:
    if isinstance(labels, dict):
        return check_labels({str(k): str(v) for k, v in labels.items()})
    return parse_labels(labels)


def timestamp() -> str:
    """The time as veil and the reports' jobs put it in names: YYYY-MM-DD-HH-MM-SS."""
    return time.strftime("%Y-%m-%d-%H-%M-%S")


def _free_snapshot_name(h: _Home, volume: VolumeRow, base: str) -> str:
    base = base[:MAX_NAME]
    name, n = base, 1
    while h.store.snapshot(volume.id, name, ("pending", "ready", "deleting")):
        n += 1
        name = f"{base[: MAX_NAME - len(str(n)) - 1]}-{n}"
    return name


def _undo(h: _Home, objects: list[tuple[str, str]]) -> None:
    """After a failure (not a kill): remove what an operation made and forget its rows."""
    if not objects:
        return
    for table, oid in objects:
        row = h.store._db.execute(f"SELECT loc FROM {table} WHERE id = ?", (oid,)).fetchone()
        if row:
            with contextlib.suppress(Exception):
                h.driver().remove(h.abs(row[0]))
            with h.store.tx() as db:
                db.execute(f"DELETE FROM {table} WHERE id = ?", (oid,))
    with contextlib.suppress(Exception):
        h.collect_garbage()  # content a failed copy snapshot stored and nothing refers to


# -- volumes -------------------------------------------------------------------------------------
def create_volume(
    name: str,
    size: str | int | None = None,
    labels: dict[str, str] | list[str] | None = None,
    *,
    home: Path | str | None = None,
) -> Volume:
    """Create an empty writable volume; ``size`` (e.g. ``"50Gi"``) becomes its quota where the
    driver enforces one."""
    validate_name(name, "volume name")
    nbytes = parse_size(size)
    lab = _labels(labels)
    with _writing(home, f"creating volume {name}") as h:
        if h.store.volume(name):
            raise AlreadyExists(f"a volume named {name!r} already exists")
        vid = _new_id()
        loc = f"objects/{vid}"
        with h.store.tx() as db:
            db.execute(
                "INSERT INTO volumes (id, name, loc, size, labels, created, state) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                (vid, name, loc, nbytes, json.dumps(lab), time.time()),
            )
        try:
            h.driver().create_volume(h.abs(loc), nbytes)
            failpoint("volume.create")
            with h.store.tx() as db:
                db.execute("UPDATE volumes SET state = 'ready' WHERE id = ?", (vid,))
        except BaseException:
            _undo(h, [("volumes", vid)])
            raise
        row = h.store.volume(name)
        assert row is not None
        h.link(row)
        return h.to_volume(row)


def list_volumes(*, home: Path | str | None = None) -> list[Volume]:
    """All volumes, by name."""
    with _reading(home) as h:
        return [h.to_volume(r) for r in h.store.volumes()]


def get_volume(name: str, *, home: Path | str | None = None) -> Volume:
    """One volume, by name."""
    with _reading(home) as h:
        return h.to_volume(h.volume(name))


def volume_path(name: str, *, home: Path | str | None = None) -> Path:
    """The directory to read and write; it stays the same across restores."""
    return get_volume(name, home=home).path


def delete_volume(
    name: str,
    *,
    with_snapshots: bool = False,
    force: bool = False,
    home: Path | str | None = None,
) -> None:
    """Delete a volume. Refused while it has snapshots unless ``with_snapshots``; refused while
    clones were made from those snapshots unless ``force`` (the clones stay, and keep working)."""
    with _writing(home, f"deleting volume {name}") as h:
        row = h.volume(name)
        snaps = h.store.snapshots(row.id)
        if snaps and not with_snapshots:
            raise InUse(
                f"volume {name!r} has {len(snaps)} snapshot(s) ({_few(s.name for s in snaps)}); "
                "delete them first or pass --with-snapshots"
            )
        if not force:
            for s in snaps:
                clones = h.store.clones_of_snapshot(s.id)
                if clones:
                    raise InUse(
                        f"clone(s) {_few(c.name for c in clones)} were made from snapshot "
                        f"{name}@{s.name}; delete them first or pass --force"
                    )
        with h.store.tx() as db:
            db.execute("UPDATE snapshots SET state = 'deleting' WHERE volume_id = ?", (row.id,))
            db.execute("UPDATE volumes SET state = 'deleting' WHERE id = ?", (row.id,))
        (h.volumes_dir / name).unlink(missing_ok=True)
        failpoint("volume.delete")
        for s in snaps:
            h.driver().remove(h.abs(s.loc))
        h.driver().remove(h.abs(row.loc))
        with h.store.tx() as db:
            for s in snaps:
                _forget_snapshot(db, s.id)
            db.execute("DELETE FROM volumes WHERE id = ?", (row.id,))
        if snaps:
            h.collect_garbage()


def _few(names, n: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", and {len(names) - n} more" if len(names) > n else "")


# -- snapshots -----------------------------------------------------------------------------------
def _add_snapshot(h: _Home, volume: VolumeRow, name: str, labels: dict[str, str]) -> SnapshotRow:
    sid = _new_id()
    loc = h.driver().snapshot_location(sid)
    with h.store.tx() as db:
        db.execute(
            "INSERT INTO snapshots (id, volume_id, name, loc, labels, created, state) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            (sid, volume.id, name, loc, json.dumps(labels), time.time()),
        )
    row = h.store.snapshot(volume.id, name, ("pending",))
    assert row is not None
    return row


def _take_snapshot(h: _Home, volume: VolumeRow, snap: SnapshotRow, progress: Progress | None):
    previous = [s for s in h.store.snapshots(volume.id) if s.id != snap.id]
    prev_path = h.abs(previous[-1].loc) if previous else None
    h.driver().snapshot(h.abs(volume.loc), h.abs(snap.loc), prev_path, progress)


def create_snapshot(
    volume: str,
    name: str | None = None,
    labels: dict[str, str] | list[str] | None = None,
    *,
    progress: Progress | None = None,
    home: Path | str | None = None,
) -> Snapshot:
    """Take a read-only point-in-time snapshot of a volume; the default name carries a
    timestamp (``snap-YYYY-MM-DD-HH-MM-SS``)."""
    if name is not None:
        validate_name(name, "snapshot name")
        if name == LATEST:
            raise InvalidArgument(f"{LATEST!r} stands for a volume's newest snapshot: choose "
                                  "another name")
    lab = _labels(labels)
    with _writing(home, f"snapshotting {volume}") as h:
        vrow = h.volume(volume)
        if name is None:
            name = _free_snapshot_name(h, vrow, f"snap-{timestamp()}")
        elif h.store.snapshot(vrow.id, name):
            raise AlreadyExists(f"volume {volume!r} already has a snapshot named {name!r}")
        srow = _add_snapshot(h, vrow, name, lab)
        try:
            _take_snapshot(h, vrow, srow, progress)
            failpoint("snapshot.create")
            with h.store.tx() as db:
                db.execute("UPDATE snapshots SET state = 'ready' WHERE id = ?", (srow.id,))
        except BaseException:
            _undo(h, [("snapshots", srow.id)])
            raise
        return h.to_snapshot(srow, volume)


def list_snapshots(
    volume: str | None = None, *, home: Path | str | None = None
) -> list[Snapshot]:
    """Snapshots of one volume, or of all volumes, oldest first."""
    with _reading(home) as h:
        if volume is not None:
            vrow = h.volume(volume)
            return [h.to_snapshot(s, vrow.name) for s in h.store.snapshots(vrow.id)]
        names = {v.id: v.name for v in h.store.volumes()}
        return [h.to_snapshot(s, names[s.volume_id]) for s in h.store.snapshots()
                if s.volume_id in names]


def get_snapshot(volume: str, name: str, *, home: Path | str | None = None) -> Snapshot:
    with _reading(home) as h:
        vrow = h.volume(volume)
        return h.to_snapshot(h.snapshot(vrow, name), vrow.name)


def delete_snapshot(
    volume: str, name: str, *, force: bool = False, home: Path | str | None = None
) -> None:
    """Delete a snapshot. Refused while clones made from it exist, unless ``force`` (the clones
    stay, and keep working; their origin is then shown as deleted)."""
    with _writing(home, f"deleting snapshot {volume}@{name}") as h:
        vrow = h.volume(volume)
        srow = h.snapshot(vrow, name)
        clones = h.store.clones_of_snapshot(srow.id)
        if clones and not force:
            raise InUse(f"clone(s) {_few(c.name for c in clones)} were made from snapshot "
                        f"{volume}@{name}; delete them first or pass --force")
        with h.store.tx() as db:
            db.execute("UPDATE snapshots SET state = 'deleting' WHERE id = ?", (srow.id,))
        failpoint("snapshot.delete")
        h.driver().remove(h.abs(srow.loc))
        with h.store.tx() as db:
            _forget_snapshot(db, srow.id)
        h.collect_garbage()


def restore_snapshot(
    volume: str,
    name: str,
    *,
    progress: Progress | None = None,
    home: Path | str | None = None,
) -> Volume:
    """Make a volume's content that of one of its snapshots; the snapshot stays. The switch is
    atomic: a crash leaves either the old content or the restored one, never a mix."""
    with _writing(home, f"restoring {volume}@{name}") as h:
        vrow = h.volume(volume)
        srow = h.snapshot(vrow, name)
        new_loc = f"objects/{_new_id()}"
        with h.store.tx() as db:  # until the switch, the new copy is garbage if we die
            db.execute("INSERT INTO garbage VALUES (?, 'restore-new', ?)", (new_loc, time.time()))
        try:
            h.driver().clone(h.abs(srow.loc), h.abs(new_loc), vrow.size, progress)
        except BaseException:
            h.driver().remove(h.abs(new_loc))
            with h.store.tx() as db:
                db.execute("DELETE FROM garbage WHERE loc = ?", (new_loc,))
            raise
        failpoint("restore.built")
        with h.store.tx() as db:  # the switch
            db.execute("UPDATE volumes SET loc = ?, restored_from = ? WHERE id = ?",
                       (new_loc, name, vrow.id))
            db.execute("DELETE FROM garbage WHERE loc = ?", (new_loc,))
            db.execute("INSERT INTO garbage VALUES (?, 'restore-old', ?)", (vrow.loc, time.time()))
        failpoint("restore.switched")
        new_row = h.store.volume(volume)
        assert new_row is not None
        h.link(new_row)
        h.driver().remove(h.abs(vrow.loc))
        with h.store.tx() as db:
            db.execute("DELETE FROM garbage WHERE loc = ?", (vrow.loc,))
        return h.to_volume(new_row)


def clone_volume(
    source: str,
    new: str,
    snapshot: str | None = None,
    *,
    size: str | int | None = None,
    labels: dict[str, str] | list[str] | None = None,
    progress: Progress | None = None,
    home: Path | str | None = None,
) -> Volume:
    """A new writable volume with the content of ``source`` at ``snapshot``, independent of it
    from then on. Cloning the live volume takes a snapshot first (``clone-NEW-TIMESTAMP``)."""
    validate_name(new, "volume name")
    nbytes = parse_size(size)
    lab = _labels(labels)
    with _writing(home, f"cloning {source} into {new}") as h:
        src = h.volume(source)
        if h.store.volume(new):
            raise AlreadyExists(f"a volume named {new!r} already exists")
        made: list[tuple[str, str]] = []
        given = h.snapshot(src, snapshot) if snapshot is not None else None
        try:
            if given is None:
                sname = _free_snapshot_name(h, src, f"clone-{new}-{timestamp()}")
                srow = _add_snapshot(h, src, sname, {"veil.clone": new})
                made.append(("snapshots", srow.id))
                _take_snapshot(h, src, srow, progress)
            else:
                srow = given
            vid = _new_id()
            loc = f"objects/{vid}"
            with h.store.tx() as db:
                db.execute(
                    "INSERT INTO volumes (id, name, loc, size, labels, created, origin_volume, "
                    "origin_snapshot, origin_snapshot_id, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                    (vid, new, loc, nbytes if nbytes is not None else src.size, json.dumps(lab),
                     time.time(), src.name, srow.name, srow.id),
                )
            made.insert(0, ("volumes", vid))
            h.driver().clone(h.abs(srow.loc), h.abs(loc), nbytes or src.size, progress)
            failpoint("clone.create")
            with h.store.tx() as db:  # the snapshot taken for it and the clone appear together
                db.execute("UPDATE snapshots SET state = 'ready' WHERE id = ?", (srow.id,))
                db.execute("UPDATE volumes SET state = 'ready' WHERE id = ?", (vid,))
        except BaseException:
            _undo(h, made)
            raise
        row = h.store.volume(new)
        assert row is not None
        h.link(row)
        return h.to_volume(row)


def snapshot_path(volume: str, name: str, *, home: Path | str | None = None) -> Path | None:
    """Where a snapshot's files can be read, for drivers that keep them as a directory."""
    with _reading(home) as h:
        srow = h.snapshot(h.volume(volume), name)
        p = h.abs(srow.loc)
        return p if p.is_dir() else None


__all__ = [
    "Snapshot",
    "Volume",
    "clone_volume",
    "create_snapshot",
    "create_volume",
    "delete_snapshot",
    "delete_volume",
    "get_snapshot",
    "get_volume",
    "list_snapshots",
    "list_volumes",
    "restore_snapshot",
    "snapshot_path",
    "volume_path",
]


def stored_bytes(*, home: Path | str | None = None) -> int | None:
    """Bytes the home's snapshots occupy in the copy driver's content store (None for drivers
    whose snapshots share blocks with the filesystem: btrfs, reflink)."""
    driver = _Home(home).driver()
    measure = getattr(driver, "stored_bytes", None)
    return measure() if callable(measure) else None
