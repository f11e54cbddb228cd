"""Fixtures: a fresh veil home for each driver that can run on this machine.

btrfs (veil's loop-backed pool, and an existing btrfs mount) and reflink (an XFS mount) need root
and the kernel's filesystems. Where they are missing the tests skip, except in CI (CI=true), where
a missing driver is a failure: CI must test every driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from veil.data._pool import Pool

ROOT = os.geteuid() == 0
HAS_BTRFS = ROOT and shutil.which("mkfs.btrfs") is not None and "btrfs" in Path(
    "/proc/filesystems").read_text()
HAS_XFS = ROOT and shutil.which("mkfs.xfs") is not None and "xfs" in Path(
    "/proc/filesystems").read_text()


@pytest.fixture(autouse=True, scope="session")
def _veil_home_of_the_session(tmp_path_factory):
    """Every test, and every veil process it starts, works in a veil home of the session's
    (tests that need their own set VEIL_HOME again): nothing lands in the user's ~/.veil."""
    os.environ["VEIL_HOME"] = str(tmp_path_factory.mktemp("veil-home"))


def kill_processes_under(folder: Path) -> None:
    """SIGKILL every process whose command line names `folder`: a failed test must not leave
    its processes running."""
    import signal

    for p in Path("/proc").glob("[0-9]*"):
        try:
            if str(folder).encode() in (p / "cmdline").read_bytes():
                os.kill(int(p.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def wait_for(cond, agent, timeout: float = 30.0) -> bool:
    """Reconcile the scheduler `agent` every 0.1 s until `cond()` holds (True) or `timeout`
    seconds pass (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.reconcile()
        if cond():
            return True
        time.sleep(0.1)
    return False


def need(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run every driver: {why}")
        pytest.skip(why)


def _loop_mount(tmp: Path, fs: str, size: str) -> Path:
    img, mnt = tmp / f"{fs}.img", tmp / f"{fs}-mnt"
    subprocess.run(["truncate", "-s", size, str(img)], check=True)
    subprocess.run([f"mkfs.{fs}", "-q", str(img)], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    return mnt


@pytest.fixture(scope="session")
def xfs_mount(tmp_path_factory):
    need(HAS_XFS, "needs root and mkfs.xfs for the reflink driver")
    mnt = _loop_mount(tmp_path_factory.mktemp("xfs"), "xfs", "1G")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory):
    need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs driver")
    mnt = _loop_mount(tmp_path_factory.mktemp("btrfs"), "btrfs", "1G")
    subprocess.run(["btrfs", "quota", "enable", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


DRIVERS = ["copy", "btrfs", "btrfs-mounted", "reflink"]


def make_home(kind: str, tmp_path: Path, monkeypatch, request) -> Path:
    """A veil home whose driver is ``kind``; VEIL_HOME points at it."""
    monkeypatch.delenv("VEIL_DATA_DIR", raising=False)
    monkeypatch.delenv("VEIL_DRIVER", raising=False)
    if kind == "copy":
        home = tmp_path / "home"
        monkeypatch.setenv("VEIL_DRIVER", "copy")
    elif kind == "btrfs":  # veil's own loop-backed pool
        need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs pool")
        home = tmp_path / "home"
        monkeypatch.setenv("VEIL_POOL_SIZE", "512Mi")
        request.addfinalizer(lambda: Pool(home).detach())
    elif kind == "btrfs-mounted":  # a home on an existing btrfs filesystem
        mnt = request.getfixturevalue("btrfs_mount")
        home = mnt / f"home-{tmp_path.name}"
    elif kind == "reflink":
        mnt = request.getfixturevalue("xfs_mount")
        home = mnt / f"home-{tmp_path.name}"
        monkeypatch.setenv("VEIL_DRIVER", "reflink")
    else:
        raise AssertionError(kind)
    monkeypatch.setenv("VEIL_HOME", str(home))
    return home


@pytest.fixture(params=DRIVERS)
def home(request, tmp_path, monkeypatch) -> Path:
    """A fresh veil home, once per driver."""
    return make_home(request.param, tmp_path, monkeypatch, request)


@pytest.fixture
def copy_home(request, tmp_path, monkeypatch) -> Path:
    return make_home("copy", tmp_path, monkeypatch, request)


@pytest.fixture
def pool_home(request, tmp_path, monkeypatch) -> Path:
    return make_home("btrfs", tmp_path, monkeypatch, request)


def write_tree(root: Path, files: dict[str, bytes | str]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content)
        else:
            p.write_bytes(content)


def read_tree(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and symlink ("-> target") under root, by relative path."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"-> {os.readlink(p)}"
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


def run_as_nobody(body: str) -> None:
    """Run ``body`` in a real process that drops to uid/gid 65534 after importing veil, with a
    fresh home (``home``, owned by that user) and no VEIL_* settings; it must print "ok".

    The interpreter starts as root because this machine's Python lives under /root (mode 0700)."""
    import sys

    if not ROOT:
        pytest.skip("needs root to switch to another user")
    home = Path("/tmp") / f"veil-nobody-{os.getpid()}"
    home.mkdir()
    os.chown(home, 65534, 65534)
    code = (
        "import os\n"
        "from veil import data\n"
        "from veil.errors import VeilError\n"
        "import veil.data._api, veil.data._doctor, veil.data._drivers.btrfs\n"
        "import veil.data._drivers.copy\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        f"home = {str(home)!r}\n" + body + "\nprint('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr + p.stdout
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)
