"""The `veil` command, run as a real process: tables, --json, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_as_nobody

VEIL = [sys.executable, "-m", "veil"]


def veil(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*VEIL, *args], capture_output=True, text=True, timeout=120)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_help_works_without_importing_torch():
    code = ("import sys; from veil.cli import main; rc = main(['--help']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert "volume" in veil("--help").stdout
    assert veil("--version").stdout.startswith("veil ")


def test_walkthrough_with_tables_and_json(copy_home):
    out = veil("volume", "create", "inference-data", "--size", "50Gi", "--label", "team=a").stdout
    assert "Volume 'inference-data' created (copy, size 50Gi)" in out
    path = Path(veil("volume", "path", "inference-data").stdout.strip())
    assert path == copy_home / "volumes" / "inference-data"
    (path / "img.jpg").write_bytes(b"\xff\xd8 pixels")
    veil("snapshot", "create", "inference-data", "--name", "baseline", "--label", "run=r1")
    default = json.loads(veil("snapshot", "create", "inference-data", "--json").stdout)
    assert default["name"].startswith("snap-")
    listing = veil("snapshot", "list", "inference-data").stdout
    assert "baseline" in listing and "run=r1" in listing and default["name"] in listing
    clone = json.loads(veil("volume", "clone", "inference-data", "exp-1", "--snapshot",
                            "baseline", "--json").stdout)
    assert clone["origin_volume"] == "inference-data" and clone["origin_snapshot"] == "baseline"
    assert (Path(clone["path"]) / "img.jpg").read_bytes() == b"\xff\xd8 pixels"
    (path / "img.jpg").write_bytes(b"overwritten")
    veil("snapshot", "restore", "inference-data", "baseline")
    assert (path / "img.jpg").read_bytes() == b"\xff\xd8 pixels"
    vols = json.loads(veil("volume", "list", "--json").stdout)
    assert [v["name"] for v in vols] == ["exp-1", "inference-data"]
    assert vols[1]["size"] == 50 * 2**30 and vols[1]["labels"] == {"team": "a"}
    table = veil("volume", "list").stdout
    assert "inference-data@baseline" in table and "50Gi" in table
    veil("volume", "delete", "exp-1")
    veil("volume", "delete", "inference-data", "--with-snapshots")
    assert json.loads(veil("volume", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["volume", "create", "Bad_Name"], "not allowed"),
        (["volume", "create", ".."], "'.' and '..'"),
        (["volume", "create", "a" * 254], "at most 253"),
        (["volume", "create", "x", "--size", "fifty"], "invalid size"),
        (["volume", "create", "x", "--label", "oops"], "key=value"),
        (["volume", "create", "taken"], "already exists"),
        (["volume", "delete", "ghost"], "no volume named 'ghost'"),
        (["volume", "delete", "taken"], "has 1 snapshot"),
        (["volume", "path", "ghost"], "no volume named"),
        (["volume", "clone", "taken", "c", "--snapshot", "ghost"], "no snapshot named 'ghost'"),
        (["snapshot", "create", "ghost"], "no volume named"),
        (["snapshot", "create", "taken", "--name", "s"], "already has a snapshot"),
        (["snapshot", "delete", "taken", "ghost"], "no snapshot named"),
        (["snapshot", "restore", "taken", "ghost"], "no snapshot named"),
        (["pool", "grow", "--size", "1Gi"], "no pool"),
        (["pool", "grow", "--size", "big"], "invalid size"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(copy_home, capsys, args, message):
    from tests.badinput import refused
    from veil import data

    data.create_volume("taken")
    data.create_snapshot("taken", "s")
    refused(capsys, args, message, home=copy_home)  # in-process: cheap, and a traceback fails


def test_usage_errors_exit_2_without_traceback(copy_home):
    p = veil("volume", "create", ok=False)
    assert p.returncode == 2 and "Missing argument" in p.stderr and "Traceback" not in p.stderr


def test_doctor_reports_driver_reason_and_hints(copy_home):
    r = json.loads(veil("doctor", "--json").stdout)
    assert r["driver"] == "copy" and r["reason"] and r["hints"]
    text = veil("doctor").stdout
    assert "data driver:  copy" in text and "hint:" in text


def test_pool_show_without_a_pool(copy_home):
    assert "No pool" in veil("pool", "show").stdout
    assert json.loads(veil("pool", "show", "--json").stdout)["exists"] is False


def test_pool_lifecycle_from_the_command_line(pool_home):
    veil("pool", "create", "--size", "300Mi")
    info = json.loads(veil("pool", "show", "--json").stdout)
    assert info["size"] == 300 * 2**20 and info["free"] < 300 * 2**20  # that file is what's mounted
    veil("volume", "create", "v")
    (Path(veil("volume", "path", "v").stdout.strip()) / "kept.txt").write_text("kept")
    veil("pool", "grow", "--size", "600Mi")
    assert "Mounted at" in veil("pool", "show").stdout
    assert 300 * 2**20 < json.loads(veil("pool", "show", "--json").stdout)["free"] < 600 * 2**20
    veil("pool", "detach")
    assert "Mounted:    no" in veil("pool", "show").stdout
    veil("snapshot", "create", "v", "--name", "after-detach")  # re-attaches
    assert json.loads(veil("pool", "show", "--json").stdout)["mounted"] is True
    assert (Path(veil("volume", "path", "v").stdout.strip()) / "kept.txt").read_text() == "kept"
    p = veil("pool", "create", ok=False)
    assert "already exists" in p.stderr


def test_a_non_root_user_gets_the_copy_driver():
    """As uid 65534 on ext4, veil picks the copy driver and every operation works."""
    run_as_nobody("""
r = data.doctor(home=home)
assert r.driver == "copy", r
assert any("root" in h for h in r.hints), r.hints
v = data.create_volume("mine", home=home)
(v.path / "f").write_text("hello")
data.create_snapshot("mine", "s", home=home)
(v.path / "f").write_text("changed")
c = data.clone_volume("mine", "c", snapshot="s", home=home)
assert (c.path / "f").read_text() == "hello"
data.restore_snapshot("mine", "s", home=home)
assert (v.path / "f").read_text() == "hello"
assert not os.path.exists(os.path.join(home, "pool"))
""")
