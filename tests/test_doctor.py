"""`veil doctor` says what will happen on this machine, and suggests a manual step only where
one is needed: a root user whose first volume will make a pool with quotas is told nothing to
do; a user who is not root is told to become root; root is told what it actually lacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import HAS_BTRFS, need, run_as_nobody
from veil import data
from veil.data._pool import Pool


def _veil(*args: str, env: dict) -> str:
    p = subprocess.run([sys.executable, "-m", "veil", *args], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_a_fresh_root_home_is_told_its_pool_will_enforce_sizes_and_given_nothing_to_do(
        tmp_path):
    need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs pool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    env["VEIL_HOME"] = str(tmp_path / "h")  # does not exist yet, as on a first run
    text = _veil("doctor", env=env)
    assert "data driver:  btrfs (will be used on first write)" in text
    assert "sizes:        enforced (btrfs quotas on the pool veil creates" in text
    assert "hint:" not in text and "quota enable" not in text and "not enforced" not in text
    r = json.loads(_veil("doctor", "--json", env=env))
    assert r["enforces_size"] is True and r["hints"] == [] and r["pool"] is None
    assert all(c["ok"] for c in r["checks"] if c["name"] != "reflink (FICLONE) on the data "
                                                            "directory"), r["checks"]
    assert not Pool(tmp_path / "h").exists()  # doctor made no pool


def test_a_home_on_its_pool_has_sizes_enforced_and_a_quota_hint_only_once_they_are_off(
        pool_home):
    data.create_volume("ds", size="64Mi")
    report = data.doctor()
    assert report.enforces_size and report.sizes == "enforced (btrfs quotas)"
    assert report.hints == [] and report.pool is not None
    mountpoint = os.path.realpath(report.pool.mountpoint)
    subprocess.run(["btrfs", "quota", "disable", mountpoint], check=True)
    report = data.doctor()
    assert not report.enforces_size and report.sizes == "recorded, not enforced"
    assert report.hints == ["volume sizes are not enforced: enable btrfs quotas as root "
                            f"(`btrfs quota enable {mountpoint}`)"]


def test_root_with_veil_driver_copy_is_told_what_unsetting_it_gives_not_to_become_root(
        copy_home):
    need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs pool")
    report = data.doctor()
    assert report.driver == "copy" and not report.saved
    assert len(report.hints) == 1, report.hints
    assert report.hints[0].startswith("VEIL_DRIVER=copy is set: without it veil would use the "
                                      "btrfs driver (")
    assert "loop-backed btrfs pool" in report.hints[0]


def test_root_without_btrfs_progs_is_told_to_install_them_not_to_become_root(monkeypatch,
                                                                              tmp_path):
    need(HAS_BTRFS, "needs root and a btrfs-capable kernel")
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if "btrfs" in name
                        else which(name, *a, **k))
    monkeypatch.delenv("VEIL_DRIVER", raising=False)
    monkeypatch.delenv("VEIL_DATA_DIR", raising=False)
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "h"))
    report = data.doctor()
    assert report.driver != "btrfs"
    assert report.hints[0] == ("for O(1) snapshots and clones: install btrfs-progs "
                               "(`apt-get install btrfs-progs`); then veil creates a "
                               "loop-backed btrfs pool in the veil home")
    assert not any("as root" in h for h in report.hints), report.hints


def test_a_home_that_keeps_the_copy_format_says_faster_drivers_need_a_new_home(copy_home,
                                                                               monkeypatch):
    need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs pool")
    data.create_volume("ds")
    monkeypatch.delenv("VEIL_DRIVER")
    report = data.doctor()
    assert report.driver == "copy" and report.saved
    assert "a faster driver applies to a new VEIL_HOME" in report.hints[0]
    assert not any("VEIL_DRIVER" in h or "as root" in h for h in report.hints), report.hints


def test_a_user_who_is_not_root_is_told_to_run_as_root():
    run_as_nobody("""
r = data.doctor(home=home)
assert r.driver == "copy", r
assert r.hints[0].startswith("for O(1) snapshots and clones: run veil as root"), r.hints
assert r.hints[0].endswith("(veil creates a loop-backed btrfs pool in the veil home)"), r.hints
assert not any("VEIL_DRIVER=" in h or "quota" in h for h in r.hints), r.hints
""")
