"""copy: the portable fallback (any filesystem, any user).

Volumes are plain directories. A snapshot is a manifest (path, type, mode, times, owner, content
hash) plus the content in a content-addressed store (``cas/ab/<sha256>``), so identical files are
stored once across all snapshots. A file whose size, mtime, ctime and inode match the volume's
previous snapshot is not read again: a second snapshot of a mostly unchanged volume reads and stores
only what changed. Clones and restores copy every byte back out: their cost grows with the data.

The store is private: its folders are 0700, content 0400 and manifests 0600, whatever the files'
own modes; each file's mode and owner are kept in the manifest and given back to the file by
clones and restores."""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import json
import os
import stat
import time
import uuid
from pathlib import Path

from veil.data._drivers._base import (
    Progress,
    _raise,
    apply_metadata,
    copy_file,
    failpoint,
    rmtree,
)
from veil.data._private import DIR_MODE, create_private, private_dir

_CHUNK = 1 << 20
_CLOCK_TICK_NS = 20_000_000  # more than one jiffy at any HZ (10 ms at HZ=100)
_libc = ctypes.CDLL(None, use_errno=True)


class CopyDriver:
    name = "copy"
    enforces_size = False

    def __init__(self, root: Path):
        self.root = root
        self.cas = root / "cas"
        self.tmp = root / "cas" / "tmp"

    # volumes ------------------------------------------------------------------------------------
    def create_volume(self, path: Path, size: int | None) -> None:
        os.mkdir(path)  # a volume's own mode: its user's to choose (the store around it is 0700)

    def remove(self, path: Path) -> None:
        rmtree(path)
        rmtree(Path(f"{path}.tmp"))

    def snapshot_location(self, object_id: str) -> str:
        return f"manifests/{object_id}.json.gz"

    # snapshots ----------------------------------------------------------------------------------
    def snapshot(
        self, volume: Path, dest: Path, previous: Path | None, progress: Progress | None
    ) -> None:
        private_dir(self.cas)
        private_dir(self.tmp)
        # file times come from the kernel's coarse clock, up to a tick behind time.time_ns()
        started = time.time_ns() - _CLOCK_TICK_NS
        known: dict[str, dict] = {}
        if previous is not None and previous.exists():
            prev_entries = read_manifest(previous)
            # A file changed in the same clock tick as the previous snapshot read it can keep its
            # times: trust the times only of files last changed before that snapshot started.
            trusted_before = prev_entries[0].get("started", 0)
            known = {e["p"]: e for e in prev_entries
                     if e["t"] == "f" and e["c"] < trusted_before}
        walk: list[tuple[str, str, os.stat_result]] = []
        todo = 0
        for dirpath, dirnames, filenames in os.walk(volume, onerror=_raise):
            dirnames.sort()
            reldir = os.path.relpath(dirpath, volume)  # once per directory, not per file
            for n in dirnames + sorted(filenames):
                p = os.path.join(dirpath, n)
                rel = n if reldir == "." else f"{reldir}/{n}"
                st = os.lstat(p)
                walk.append((p, rel, st))
                if stat.S_ISREG(st.st_mode) and not _unchanged(known.get(rel), st):
                    todo += st.st_size
        if progress:
            progress.start(todo, "snapshot (copy)")
        entries = [{**_entry(".", "d", os.lstat(volume)), "started": started}]
        for p, rel, st in walk:
            if stat.S_ISDIR(st.st_mode):
                entries.append(_entry(rel, "d", st))
            elif stat.S_ISLNK(st.st_mode):
                entries.append({**_entry(rel, "l", st), "target": os.readlink(p)})
            elif stat.S_ISREG(st.st_mode):
                prev = known.get(rel)
                if _unchanged(prev, st):
                    digest = prev["h"]
                else:
                    digest = self._store(p)
                    if progress:
                        progress.advance(st.st_size)
                    failpoint("copy.snapshot.file")
                entries.append({**_entry(rel, "f", st), "h": digest})
        _syncfs(self.cas)  # the content is durable before any manifest refers to it
        _write_manifest(dest, entries)

    def _store(self, path: str) -> str:
        """Put one file's content in the store (if not there already); return its hash."""
        digest = _hash_file(path)
        blob = self._blob(digest)
        if blob.exists():
            return digest
        tmp = self.tmp / uuid.uuid4().hex
        h = hashlib.sha256()
        with open(path, "rb") as src, open(create_private(tmp), "wb") as dst:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
        digest = h.hexdigest()  # the content copied, even if the file changed since it was hashed
        blob = self._blob(digest)
        blob.parent.mkdir(DIR_MODE, exist_ok=True)
        os.chmod(tmp, 0o400)  # stored content is never written again, and read by veil only
        os.replace(tmp, blob)
        return digest

    def _blob(self, digest: str) -> Path:
        return self.cas / digest[:2] / digest[2:]

    # clones and restores ------------------------------------------------------------------------
    def clone(
        self, snapshot: Path, dest: Path, size: int | None, progress: Progress | None
    ) -> None:
        entries = read_manifest(snapshot)
        if progress:
            progress.start(sum(e["s"] for e in entries if e["t"] == "f"), "clone (copy)")
        is_root = os.geteuid() == 0
        os.mkdir(dest, DIR_MODE)
        dirs = []
        for e in entries:
            out = os.path.join(dest, e["p"]) if e["p"] != "." else str(dest)
            if e["t"] == "d":
                if e["p"] != ".":
                    os.mkdir(out, 0o700)
                dirs.append((out, e))
                continue
            if e["t"] == "l":
                os.symlink(e["target"], out)
            else:
                copy_file(self._blob(e["h"]), out)  # 0600 until its own mode is applied
                if progress:
                    progress.advance(e["s"])
                failpoint("copy.clone.file")
            apply_metadata(out, e["m"], e["mt"], e["u"], e["g"], is_root)
        for out, e in reversed(dirs):
            apply_metadata(out, e["m"], e["mt"], e["u"], e["g"], is_root)

    # garbage ------------------------------------------------------------------------------------
    def collect_garbage(self, live_snapshots: list[Path]) -> None:
        """Delete stored content no live snapshot refers to, and interrupted writes."""
        rmtree(self.tmp)
        live = {e["h"] for m in live_snapshots for e in read_manifest(m) if e["t"] == "f"}
        if not self.cas.exists():
            return
        for sub in self.cas.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for blob in sub.iterdir():
                if sub.name + blob.name not in live:
                    blob.unlink()

    def stored_bytes(self) -> int:
        """Bytes held by the content store and the manifests."""
        total = 0
        for d in (self.cas, self.root / "manifests"):
            for dirpath, _, files in os.walk(d):
                total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
        return total


def _entry(rel: str, kind: str, st: os.stat_result) -> dict:
    return {
        "p": rel, "t": kind, "m": st.st_mode, "mt": st.st_mtime_ns, "u": st.st_uid,
        "g": st.st_gid, "s": st.st_size if kind == "f" else 0, "i": st.st_ino,
        "c": st.st_ctime_ns,
    }


def _unchanged(prev: dict | None, st: os.stat_result) -> bool:
    # ctime is part of the key: it changes on any write and cannot be set back by the user
    return prev is not None and (prev["s"], prev["mt"], prev["c"], prev["i"]) == (
        st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write_manifest(dest: Path, entries: list[dict]) -> None:
    private_dir(dest.parent)
    tmp = Path(f"{dest}.tmp")
    tmp.unlink(missing_ok=True)  # left by a killed process
    body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
    with open(create_private(tmp), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as f:
            f.write(body)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, dest)


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (Linux syncfs); elsewhere, flush everything."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if getattr(_libc, "syncfs", None) is None or _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
