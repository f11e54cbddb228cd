"""Metadata of volumes and snapshots in one SQLite database per veil home.

Crash safety rests on three rules:
  * an object row is written as ``pending`` before its data exists and becomes ``ready`` only after
    the data is complete; readers see ``ready`` rows only;
  * a location that may hold data nobody owns (a half-built copy, a volume's content replaced by a
    restore) is written to the ``garbage`` table first, in the same transaction that gives it up;
  * every mutating operation holds an exclusive lock on the home, and recovery (removing pending
    objects and garbage) runs under that lock before the next mutation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from veil.data._private import FILE_MODE, private_home, tighten

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    loc TEXT NOT NULL,
    size INTEGER,
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    origin_volume TEXT,
    origin_snapshot TEXT,
    origin_snapshot_id TEXT,
    restored_from TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'deleting'))
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    volume_id TEXT NOT NULL REFERENCES volumes(id),
    name TEXT NOT NULL,
    loc TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'deleting')),
    UNIQUE (volume_id, name)
);
CREATE TABLE IF NOT EXISTS garbage (loc TEXT PRIMARY KEY, kind TEXT NOT NULL, since REAL NOT NULL);
"""


@dataclass
class VolumeRow:
    id: str
    name: str
    loc: str
    size: int | None
    labels: dict[str, str]
    created: float
    origin_volume: str | None
    origin_snapshot: str | None
    origin_snapshot_id: str | None
    restored_from: str | None
    state: str


@dataclass
class SnapshotRow:
    id: str
    volume_id: str
    name: str
    loc: str
    labels: dict[str, str]
    created: float
    state: str


class Store:
    """The SQLite metadata of one veil home."""

    def __init__(self, home: Path):
        self.home = home
        private_home(home)
        self.path = home / "veil.db"
        # 0600 from the start; SQLite gives its -wal and -shm files the database's mode
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             FILE_MODE))
        for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            tighten(p)  # made by an older veil
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction: all of it is stored, or none of it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # meta ---------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # volumes ------------------------------------------------------------------------------------
    def volumes(self, states: tuple[str, ...] = ("ready",)) -> list[VolumeRow]:
        q = f"SELECT * FROM volumes WHERE state IN ({','.join('?' * len(states))}) ORDER BY name"
        return [_volume(r) for r in self._db.execute(q, states)]

    def volume(self, name: str, states: tuple[str, ...] = ("ready",)) -> VolumeRow | None:
        q = f"SELECT * FROM volumes WHERE name = ? AND state IN ({','.join('?' * len(states))})"
        row = self._db.execute(q, (name, *states)).fetchone()
        return _volume(row) if row else None

    def volume_by_id(self, vid: str) -> VolumeRow | None:
        row = self._db.execute("SELECT * FROM volumes WHERE id = ?", (vid,)).fetchone()
        return _volume(row) if row else None

    # snapshots ----------------------------------------------------------------------------------
    def snapshots(
        self, volume_id: str | None = None, states: tuple[str, ...] = ("ready",)
    ) -> list[SnapshotRow]:
        q = f"SELECT * FROM snapshots WHERE state IN ({','.join('?' * len(states))})"
        args: tuple = states
        if volume_id is not None:
            q += " AND volume_id = ?"
            args = (*states, volume_id)
        q += " ORDER BY created, name"
        return [_snapshot(r) for r in self._db.execute(q, args)]

    def snapshot(
        self, volume_id: str, name: str, states: tuple[str, ...] = ("ready",)
    ) -> SnapshotRow | None:
        q = (
            "SELECT * FROM snapshots WHERE volume_id = ? AND name = ? "
            f"AND state IN ({','.join('?' * len(states))})"
        )
        row = self._db.execute(q, (volume_id, name, *states)).fetchone()
        return _snapshot(row) if row else None

    def clones_of_snapshot(self, snapshot_id: str) -> list[VolumeRow]:
        q = "SELECT * FROM volumes WHERE origin_snapshot_id = ? AND state != 'deleting'"
        return [_volume(r) for r in self._db.execute(q, (snapshot_id,))]

    def garbage(self) -> list[tuple[str, str]]:
        return list(self._db.execute("SELECT loc, kind FROM garbage ORDER BY since"))


def _volume(r: tuple) -> VolumeRow:
    return VolumeRow(
        id=r[0], name=r[1], loc=r[2], size=r[3], labels=json.loads(r[4]), created=r[5],
        origin_volume=r[6], origin_snapshot=r[7], origin_snapshot_id=r[8], restored_from=r[9],
        state=r[10],
    )


def _snapshot(r: tuple) -> SnapshotRow:
    return SnapshotRow(
        id=r[0], volume_id=r[1], name=r[2], loc=r[3], labels=json.loads(r[4]), created=r[5],
        state=r[6],
    )


@contextlib.contextmanager
def try_exclusive(home: Path) -> Iterator[bool]:
    """Hold the home's write lock if it is free right now; yields whether it was taken."""
    try:
        fd = os.open(home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError:  # a reader without write access to the home
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(home: Path, what: str) -> Iterator[None]:
    """Hold the home's write lock; waits (telling the user once) if another veil process has it.
    The lock file names its holder while it is held, and is empty again once released."""
    private_home(home)
    fd = os.open(home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            print(f"veil: waiting for {holder} to finish before {what}...", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what}, since {time.strftime('%H:%M:%S')})".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock, also when the process is killed
