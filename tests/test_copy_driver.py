"""The copy driver: content-addressed, deduplicated, and only reads what changed."""

from __future__ import annotations

import os
import time

from tests.conftest import read_tree, run_as_nobody, write_tree
from veil import data
from veil.data._drivers import copy as copy_mod
from veil.data._drivers.copy import CopyDriver


def _store_bytes(home) -> int:
    return CopyDriver(home / "copy").stored_bytes()


def _many_files(n: int = 100, size: int = 20_000) -> dict[str, bytes]:
    return {f"d{i % 7}/f{i:04d}.bin": os.urandom(size) for i in range(n)}


def test_second_snapshot_stores_only_what_changed(copy_home):
    v = data.create_volume("ds")
    files = _many_files()
    write_tree(v.path, files)
    data.create_snapshot("ds", "s1")
    first = _store_bytes(copy_home)
    assert first >= sum(map(len, files.values()))
    changed = {k: os.urandom(20_000) for k in list(files)[:3]}
    write_tree(v.path, changed)
    data.create_snapshot("ds", "s2")
    grown = _store_bytes(copy_home) - first
    assert 60_000 <= grown < 60_000 + 10_000  # the 3 changed files, plus a small manifest


def test_unchanged_files_are_not_read_again(copy_home, monkeypatch):
    v = data.create_volume("ds")
    files = _many_files(50, 1000)
    write_tree(v.path, files)
    time.sleep(0.05)  # files changed within a clock tick of a snapshot are re-read by the next
    data.create_snapshot("ds", "s1")
    hashed: list[str] = []
    real = copy_mod._hash_file
    monkeypatch.setattr(copy_mod, "_hash_file", lambda p: hashed.append(p) or real(p))
    write_tree(v.path, {"d0/f0000.bin": b"new content", "added.txt": b"added"})
    data.create_snapshot("ds", "s2")
    assert sorted(os.path.relpath(p, os.path.realpath(v.path)) for p in hashed) == [
        "added.txt", "d0/f0000.bin"]


def test_a_rewrite_that_keeps_size_and_mtime_is_still_seen(copy_home):
    v = data.create_volume("ds")
    f = v.path / "f.bin"
    f.write_bytes(b"A" * 4096)
    st = f.stat()
    data.create_snapshot("ds", "s1")
    f.write_bytes(b"B" * 4096)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime moved
    data.create_snapshot("ds", "s2")
    data.clone_volume("ds", "c", snapshot="s2")
    assert (data.volume_path("c") / "f.bin").read_bytes() == b"B" * 4096


def test_identical_files_are_stored_once(copy_home):
    v = data.create_volume("ds")
    blob = os.urandom(100_000)
    write_tree(v.path, {f"copy{i}.bin": blob for i in range(10)})
    data.create_snapshot("ds", "s1")
    assert _store_bytes(copy_home) < 2 * len(blob)


def test_deleting_snapshots_frees_content_no_snapshot_needs(copy_home):
    v = data.create_volume("ds")
    write_tree(v.path, {"keep.bin": os.urandom(50_000), "gone.bin": os.urandom(50_000)})
    data.create_snapshot("ds", "s1")
    (v.path / "gone.bin").unlink()
    data.create_snapshot("ds", "s2")
    data.delete_snapshot("ds", "s1")
    assert 50_000 <= _store_bytes(copy_home) < 60_000
    data.clone_volume("ds", "c", snapshot="s2")
    assert list(read_tree(data.volume_path("c"))) == ["keep.bin"]
    data.delete_volume("ds", with_snapshots=True, force=True)
    assert _store_bytes(copy_home) == 0


def test_a_file_changed_right_after_a_snapshot_started_is_read_again(copy_home):
    v = data.create_volume("ds")
    write_tree(v.path, {"f.bin": b"A" * 100})
    data.create_snapshot("ds", "s1")
    write_tree(v.path, {"f.bin": b"B" * 100})  # same size, within the same few milliseconds
    data.create_snapshot("ds", "s2")
    data.clone_volume("ds", "c", snapshot="s2")
    assert (data.volume_path("c") / "f.bin").read_bytes() == b"B" * 100


def test_an_unreadable_directory_fails_the_snapshot_instead_of_skipping_it():
    """As a non-root user a chmod 000 directory cannot be read: the snapshot must fail."""
    run_as_nobody("""
v = data.create_volume("v", home=home)
(v.path / "secret").mkdir(); (v.path / "secret" / "f").write_text("x")
os.chmod(v.path / "secret", 0)
try:
    data.create_snapshot("v", "s", home=home)
except PermissionError:
    pass
else:
    raise SystemExit("the snapshot skipped an unreadable directory")
assert data.list_snapshots("v", home=home) == []
data.delete_volume("v", home=home)  # and the volume can still be deleted
""")
