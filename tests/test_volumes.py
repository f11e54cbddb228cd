"""Every data operation, on every driver (see the `home` fixture)."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import read_tree, write_tree
from veil import data
from veil.errors import AlreadyExists, InUse, InvalidArgument, NotFound

FILES = {"a.txt": b"alpha", "sub/b.bin": os.urandom(70_000), "sub/deeper/c.txt": b"gamma"}


def populated(name: str = "ds") -> data.Volume:
    v = data.create_volume(name, size="200Mi", labels={"team": "a"})
    write_tree(v.path, FILES)
    os.symlink("a.txt", v.path / "link")
    os.chmod(v.path / "sub/deeper/c.txt", 0o600)
    return v


def test_create_list_path_delete(home):
    v = data.create_volume("inference-data", size="50Mi", labels=["team=vision", "tier=gold"])
    assert v.name == "inference-data" and v.size == 50 * 2**20
    assert v.labels == {"team": "vision", "tier": "gold"}
    assert v.path.is_dir() and os.access(v.path, os.W_OK)
    assert data.volume_path("inference-data") == v.path
    assert [x.name for x in data.list_volumes()] == ["inference-data"]
    (v.path / "f").write_text("x")
    data.delete_volume("inference-data")
    assert data.list_volumes() == []
    assert not os.path.lexists(v.path)


def test_snapshot_is_a_point_in_time_copy(home):
    v = populated()
    s = data.create_snapshot("ds", "before", labels={"run": "r1"})
    assert (s.volume, s.name, s.labels) == ("ds", "before", {"run": "r1"})
    (v.path / "a.txt").write_text("changed")
    (v.path / "new.txt").write_text("new")
    data.clone_volume("ds", "view", snapshot="before")
    assert read_tree(data.volume_path("view")) == {**FILES, "link": "-> a.txt"}


def test_default_snapshot_name_carries_a_timestamp_and_never_collides(home):
    populated()
    a = data.create_snapshot("ds")
    b = data.create_snapshot("ds")
    assert re.fullmatch(r"snap-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d(-\d+)?", a.name)
    assert a.name != b.name
    assert [s.name for s in data.list_snapshots("ds")] == [a.name, b.name]


def test_clone_of_a_snapshot_is_writable_and_independent(home):
    v = populated()
    data.create_snapshot("ds", "s1")
    c = data.clone_volume("ds", "exp-1", snapshot="s1")
    assert (c.origin_volume, c.origin_snapshot) == ("ds", "s1")
    assert read_tree(c.path) == read_tree(v.path)
    assert oct((c.path / "sub/deeper/c.txt").stat().st_mode & 0o777) == oct(0o600)
    (c.path / "a.txt").write_text("clone's own")
    (v.path / "sub/b.bin").write_bytes(b"source's own")
    assert (v.path / "a.txt").read_text() == "alpha"
    assert (c.path / "sub/b.bin").read_bytes() == FILES["sub/b.bin"]
    assert data.get_snapshot("ds", "s1").clones == ["exp-1"]


def test_clone_of_the_live_volume_takes_a_snapshot_first(home):
    v = populated()
    (v.path / "live.txt").write_text("live")
    c = data.clone_volume("ds", "copy-of-live")
    assert (c.path / "live.txt").read_text() == "live"
    snaps = data.list_snapshots("ds")
    assert len(snaps) == 1 and snaps[0].name.startswith("clone-copy-of-live-")
    assert c.origin_snapshot == snaps[0].name and snaps[0].clones == ["copy-of-live"]


def test_restore_replaces_content_keeps_snapshot_and_path(home):
    v = populated()
    data.create_snapshot("ds", "good")
    (v.path / "a.txt").write_text("corrupted")
    (v.path / "junk").write_text("junk")
    (v.path / "sub/b.bin").unlink()
    restored = data.restore_snapshot("ds", "good")
    assert restored.path == v.path and restored.restored_from == "good"
    assert read_tree(v.path) == {**FILES, "link": "-> a.txt"}
    assert [s.name for s in data.list_snapshots("ds")] == ["good"]
    (v.path / "after.txt").write_text("writable again")  # still a writable volume
    data.restore_snapshot("ds", "good")  # and restorable again
    assert not (v.path / "after.txt").exists()


def test_clone_keeps_the_source_size_unless_given(home):
    populated()
    data.create_snapshot("ds", "s")
    assert data.clone_volume("ds", "same", snapshot="s").size == 200 * 2**20
    assert data.clone_volume("ds", "big", snapshot="s", size="1Gi").size == 2**30


def test_delete_snapshot(home):
    populated()
    data.create_snapshot("ds", "a")
    data.create_snapshot("ds", "b")
    data.delete_snapshot("ds", "a")
    assert [s.name for s in data.list_snapshots()] == ["b"]
    data.clone_volume("ds", "c", snapshot="b")
    assert read_tree(data.volume_path("c")) == {**FILES, "link": "-> a.txt"}


# -- bad input: one clear error, nothing changed -----------------------------------------------
def state():
    return ([(v.name, v.snapshots, v.origin_snapshot) for v in data.list_volumes()],
            [(s.volume, s.name, s.clones) for s in data.list_snapshots()])


def test_bad_input_changes_nothing(home):
    v = populated()
    data.create_snapshot("ds", "s")
    data.clone_volume("ds", "c", snapshot="s")
    before, content = state(), read_tree(v.path)
    cases = [
        (lambda: data.create_volume("ds"), AlreadyExists, "already exists"),
        (lambda: data.create_volume("Bad"), InvalidArgument, "not allowed"),
        (lambda: data.create_volume("x", size="lots"), InvalidArgument, "invalid size"),
        (lambda: data.create_volume("x", labels=["novalue"]), InvalidArgument, "key=value"),
        (lambda: data.create_snapshot("nope"), NotFound, "no volume named 'nope'"),
        (lambda: data.create_snapshot("ds", "s"), AlreadyExists, "already has a snapshot"),
        (lambda: data.create_snapshot("ds", "../x"), InvalidArgument, "'/'"),
        (lambda: data.delete_snapshot("ds", "nope"), NotFound, "no snapshot named 'nope'"),
        (lambda: data.restore_snapshot("ds", "nope"), NotFound, "no snapshot named"),
        (lambda: data.clone_volume("ds", "c", snapshot="s"), AlreadyExists, "already exists"),
        (lambda: data.clone_volume("nope", "x"), NotFound, "no volume named"),
        (lambda: data.clone_volume("ds", "x", snapshot="nope"), NotFound, "no snapshot"),
        (lambda: data.delete_volume("nope"), NotFound, "no volume named"),
        (lambda: data.delete_volume("ds"), InUse, "has 1 snapshot"),
        (lambda: data.delete_volume("ds", with_snapshots=True), InUse, "clone"),
        (lambda: data.delete_snapshot("ds", "s"), InUse, "clone"),
        (lambda: data.volume_path(""), InvalidArgument, "empty"),
    ]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()
        assert "\n" not in str(exc), "errors are one line"
        assert state() == before
    assert read_tree(v.path) == content
    assert not os.path.lexists(home / "volumes" / "x")


def test_forced_deletes_leave_clones_working(home):
    populated()
    data.create_snapshot("ds", "s")
    c = data.clone_volume("ds", "c", snapshot="s")
    data.delete_volume("ds", with_snapshots=True, force=True)
    assert [v.name for v in data.list_volumes()] == ["c"]
    assert data.get_volume("c").origin_snapshot == "s (deleted)"
    assert read_tree(c.path) == {**FILES, "link": "-> a.txt"}
    (c.path / "more").write_text("still writable")


def test_volume_with_snapshots_deletes_with_them(home):
    populated()
    data.create_snapshot("ds", "s1")
    data.create_snapshot("ds", "s2")
    data.delete_volume("ds", with_snapshots=True)
    assert state() == ([], [])


def test_latest_names_the_newest_snapshot(home):
    vol = populated("ds")
    with pytest.raises(NotFound, match="no snapshots, so none is latest"):
        data.clone_volume("ds", "c0", snapshot="latest")
    data.create_snapshot("ds", name="first")
    (vol.path / "new.txt").write_text("second")
    data.create_snapshot("ds", name="second")
    (vol.path / "new.txt").write_text("live")
    clone = data.clone_volume("ds", "c1", snapshot="latest")
    assert (clone.path / "new.txt").read_text() == "second"
    assert data.get_volume("c1").origin_snapshot == "second"
    data.restore_snapshot("ds", "latest")
    assert (vol.path / "new.txt").read_text() == "second"
    with pytest.raises(InvalidArgument, match="newest snapshot"):
        data.create_snapshot("ds", name="latest")
    assert [s.name for s in data.list_snapshots("ds")] == ["first", "second"]
