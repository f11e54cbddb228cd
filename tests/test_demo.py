"""`veil demo`: each run in a new home beside the earlier ones (fast), and the face demo end to
end (slow: about 7 minutes on 2 cores; run with `pytest -m slow`)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from datetime import datetime

import pytest

from tests.conftest import HAS_BTRFS, need
from veil import data
from veil.cli import _demo, main
from veil.errors import VeilError

NOW = datetime(2026, 1, 2, 3, 4, 5)


def test_each_run_gets_a_new_private_home_and_the_earlier_ones_are_kept(tmp_path):
    first = _demo.new_home("faces", tmp_path, NOW)
    (first / "results.txt").write_text("explore me")
    second = _demo.new_home("faces", tmp_path, NOW)  # the same second: a suffix, not a reuse
    volumes = _demo.new_home("volumes", tmp_path, NOW)
    assert [p.name for p in (first, second, volumes)] == \
        ["faces-20260102-030405", "faces-20260102-030405-2", "volumes-20260102-030405"]
    assert (first / "results.txt").read_text() == "explore me"
    assert not any(second.iterdir()) and not any(volumes.iterdir())
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in (first, second, volumes))
    assert _demo.earlier_runs(volumes) == [first, second]


def test_runs_are_kept_under_VEIL_DEMO_HOME_else_dot_veil_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VEIL_DEMO_HOME", raising=False)
    assert _demo.demo_root() == tmp_path / ".veil-demo"
    monkeypatch.setenv("VEIL_DEMO_HOME", str(tmp_path / "elsewhere"))
    assert _demo.demo_root() == tmp_path / "elsewhere"
    assert _demo.new_home("volumes").parent == tmp_path / "elsewhere"


@pytest.fixture
def runs(tmp_path):
    """The folder the demo keeps its runs in; pools left mounted there are detached after."""
    yield tmp_path / "runs"
    for home in (tmp_path / "runs").glob("*-*"):
        if data.pool_show(home=home).mounted:
            data.pool_detach(home=home)


@pytest.mark.parametrize("driver", ["copy", "btrfs"])
def test_a_second_volumes_demo_leaves_the_first_runs_and_a_face_runs_results(
        driver, runs, tmp_path, monkeypatch, capsys):
    if driver == "btrfs":
        need(HAS_BTRFS, "the btrfs pool needs root, btrfs-progs and kernel btrfs")
    monkeypatch.setattr(_demo, "N_FILES", 20)
    monkeypatch.setattr(_demo, "FILE_SIZE", 1024)
    monkeypatch.setenv("VEIL_DRIVER", driver)
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "unused"))  # the demo sets it; restored after
    monkeypatch.setenv("VEIL_POOL_SIZE", "4Gi")
    monkeypatch.setenv("VEIL_DEMO_HOME", str(runs))
    faces = _demo.new_home("faces", runs, NOW)
    (faces / "privacy").mkdir()
    (faces / "privacy" / "evaluate.png").write_bytes(b"a face run's plot")

    assert main(["demo", "volumes"]) == 0
    first = capsys.readouterr().out
    assert main(["demo", "volumes"]) == 0
    second = capsys.readouterr().out

    homes = sorted(runs.glob("volumes-*"))
    assert len(homes) == 2 and f"Explore: VEIL_HOME={homes[0]}" in first
    assert f"Earlier demo runs are kept in {runs}: {faces.name}, {homes[0].name}." in second
    assert (faces / "privacy" / "evaluate.png").read_bytes() == b"a face run's plot"
    assert not any(data.pool_show(home=home).mounted for home in homes)
    for home in homes:  # each run's volumes are there (listing mounts a pool again)
        assert {v.name for v in data.list_volumes(home=home)} == {"inference-data",
                                                                   "experiment-2"}
    assert "step 7 (list) done in" in second and "Time per step:" in second


def test_a_demo_that_fails_midway_still_detaches_its_pool(runs, monkeypatch, capsys):
    need(HAS_BTRFS, "the btrfs pool needs root, btrfs-progs and kernel btrfs")
    monkeypatch.setenv("VEIL_DRIVER", "btrfs")
    monkeypatch.setenv("VEIL_HOME", str(runs / "unused"))
    monkeypatch.setenv("VEIL_POOL_SIZE", "4Gi")
    monkeypatch.setenv("VEIL_DEMO_HOME", str(runs))

    def broken(path):
        raise VeilError("the disk is full")

    monkeypatch.setattr(_demo, "_generate", broken)
    assert main(["demo", "volumes"]) == 1
    assert capsys.readouterr().err == "error: the disk is full\n"
    [home] = runs.glob("volumes-*")
    assert data.pool_show(home=home).exists and not data.pool_show(home=home).mounted


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_face_privacy_demo_runs_within_ten_minutes(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "VEIL_DEMO_HOME": str(tmp_path / "demo"), "VEIL_DRIVER": "copy"}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "veil", "demo"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=900)
    elapsed = time.perf_counter() - t
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("===== Results =====") == 2
    assert "FDDB-fold-10 Val AP" in p.stdout and "mAP: " in p.stdout
    assert "snap-inference-results-faces-raw-" in p.stdout
    assert "snap-inference-results-faces-alpha-0.8-" in p.stdout
    assert "step 6 (lineage) done in" in p.stdout and "Time per step:" in p.stdout
    [home] = (tmp_path / "demo").glob("faces-*")
    for f in ("evaluate.png", "attack.png", "attack-grid.png"):
        assert (home / "privacy" / f).stat().st_size > 10_000
    assert elapsed < 600, f"the demo took {elapsed:.0f} s:\n{p.stdout[-1500:]}"
