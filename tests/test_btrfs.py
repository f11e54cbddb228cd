"""What only the btrfs driver does: subvolumes, read-only snapshots, quotas, the pool."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from tests.conftest import read_tree, write_tree
from veil import data
from veil.data._pool import Pool
from veil.errors import BackendError, InvalidArgument, NotFound


def _subvolume_show(path) -> str:
    return subprocess.run(["btrfs", "subvolume", "show", str(path)], check=True,
                          capture_output=True, text=True).stdout


def test_root_without_btrfs_gets_a_loop_pool_with_quotas(pool_home):
    report = data.doctor()
    assert report.driver == "btrfs" and "loop-backed btrfs pool" in report.reason
    v = data.create_volume("ds", size="64Mi")
    info = data.pool_show()
    assert info.exists and info.mounted and info.device.startswith("/dev/loop")
    assert info.size == 512 * 2**20
    assert info.mounts == (os.path.realpath(info.image),)  # mounted once, nothing under it
    assert info.image.stat().st_mode & 0o777 == 0o600 and pool_home.stat().st_mode & 0o777 == 0o700
    real = os.path.realpath(v.path)
    assert real.startswith(str(info.mountpoint)) and os.stat(real).st_ino == 256  # a subvolume
    assert data.doctor().enforces_size


def test_snapshots_are_read_only_subvolumes_and_clones_writable(pool_home):
    data.create_volume("ds")
    write_tree(data.volume_path("ds"), {"f": b"x"})
    data.create_snapshot("ds", "s")
    snap = data.snapshot_path("ds", "s")
    assert "readonly" in _subvolume_show(snap).split("Flags:")[1].splitlines()[0]
    with pytest.raises(OSError) as e:
        (snap / "g").write_text("no")
    assert e.value.errno == errno.EROFS
    c = data.clone_volume("ds", "c", snapshot="s")
    assert "readonly" not in _subvolume_show(os.path.realpath(c.path)).split("Flags:")[1][:40]


def test_writing_past_the_size_fails_with_disk_quota_exceeded(pool_home):
    v = data.create_volume("small", size="8Mi")
    with pytest.raises(OSError) as e, open(v.path / "big", "wb") as f:
        for _ in range(32):
            f.write(b"\0" * 2**20)
            f.flush()
            os.fsync(f.fileno())
    assert e.value.errno == errno.EDQUOT
    # a clone carries the limit over; a given size replaces it
    data.create_snapshot("small", "s")
    roomy = data.clone_volume("small", "roomy", snapshot="s", size="64Mi")
    with open(roomy.path / "ok", "wb") as f:
        f.write(b"\0" * 16 * 2**20)
        os.fsync(f.fileno())


def test_pool_detach_keeps_data_and_any_command_reattaches(pool_home):
    v = data.create_volume("ds")
    write_tree(v.path, {"keep.txt": b"kept"})
    data.create_snapshot("ds", "s")
    info = data.pool_detach()
    assert info.exists and not info.mounted
    assert data.pool_detach().mounted is False  # detaching twice is fine
    data.create_snapshot("ds", "s2")  # a write re-attaches the pool
    assert data.pool_show().mounted
    assert read_tree(v.path) == {"keep.txt": b"kept"}


def test_pool_grow(pool_home):
    data.create_volume("ds")
    before = data.pool_show()
    after = data.pool_grow(1024 * 2**20)
    assert after.size == 1024 * 2**20
    assert after.free > before.free + 400 * 2**20  # the filesystem grew, online
    with pytest.raises(InvalidArgument, match="larger size"):
        data.pool_grow(512 * 2**20)


def test_pool_commands_without_a_pool_say_so(pool_home):
    assert data.pool_show().exists is False
    with pytest.raises(NotFound, match="no pool"):
        data.pool_grow(2**30)


def test_a_pool_that_cannot_be_created_is_a_clear_error_and_changes_nothing(pool_home,
                                                                             monkeypatch):
    monkeypatch.setenv("VEIL_POOL_SIZE", "1Mi")
    with pytest.raises((BackendError, InvalidArgument), match="cannot create a btrfs pool"):
        data.create_volume("ds")
    assert not Pool(pool_home).exists() and not Pool(pool_home).mounted()
    assert data.list_volumes() == []
    monkeypatch.setenv("VEIL_POOL_SIZE", "512Mi")
    data.create_volume("ds")  # and it works once the size is sane
