"""Issue 15, the data layer: what veil stores is its user's alone, and every bad input to the
volume, snapshot, pool and doctor commands is refused in one line with nothing changed.

The bad inputs run `veil.cli.main` in-process (tests/badinput.py); the permission tests read
the home as the unprivileged user nobody (uid 65534) in a real process."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.badinput import refused
from tests.conftest import HAS_BTRFS, ROOT, make_home, need, read_tree
from veil import data
from veil.cli import main
from veil.data._drivers import data_dir
from veil.data._pool import Pool
from veil.data._store import exclusive

LONG = "1" * 400  # a number of 400 digits


def _pool_state(home: Path):
    pool = Pool(home)
    return pool.mounts(), pool.info().size


# -- bad inputs: a home with a volume, a snapshot and a clone -------------------------------------
CASES = [
    # volume create
    (["volume", "create", "ds"], "already exists"),
    (["volume", "create", "Bad"], "not allowed"),
    (["volume", "create", "a/b"], "'/' is not allowed"),
    (["volume", "create", ".."], "'.' and '..'"),
    (["volume", "create", ""], "empty"),
    (["volume", "create", "a" * 254], "at most 253"),
    (["volume", "create", "x;rm -rf ~"], "not allowed"),
    (["volume", "create", "x", "--size", "9Ei"], "less than 8Ei"),
    (["volume", "create", "x", "--size", "8Ei"], "less than 8Ei"),
    (["volume", "create", "x", "--size", "9223372036854775808"], "less than 8Ei"),
    (["volume", "create", "x", "--size", LONG], "400 digits"),
    (["volume", "create", "x", "--size", f"{LONG}.5Ki"], "400 digits"),
    (["volume", "create", "x", "--size", "0"], "at least 1 byte"),
    (["volume", "create", "x", "--size", "0.1"], "at least 1 byte"),
    (["volume", "create", "x", "--size=-5Gi"], "invalid size"),
    (["volume", "create", "x", "--size", "nan"], "invalid size"),
    (["volume", "create", "x", "--size", "inf"], "invalid size"),
    (["volume", "create", "x", "--size", "1e3"], "invalid size"),
    (["volume", "create", "x", "--size", "5 GB"], "invalid size"),
    (["volume", "create", "x", "--size", "50GiB"], "invalid size"),
    (["volume", "create", "x", "--size", "9" * 100_000], "100000 digits"),
    (["volume", "create", "x", "--label", "novalue"], "key=value"),
    (["volume", "create", "x", "--label", "=x"], "key=value"),
    (["volume", "create", "x", "--label", "a=b\nc"], "control characters"),
    (["volume", "create", "x", "--label", "a\tb=c"], "control characters"),
    (["volume", "create", "x", "--label", "k" * 300 + "=v"], "at most 253"),
    (["volume", "create", "x", "--label", "k=" + "v" * 5000], "at most 4096"),
    # volume clone
    (["volume", "clone", "ds", "c"], "already exists"),
    (["volume", "clone", "ds", "ds"], "already exists"),
    (["volume", "clone", "nope", "x"], "no volume named 'nope'"),
    (["volume", "clone", "ds", "x", "-s", "nope"], "no snapshot named 'nope'"),
    (["volume", "clone", "ds", "x", "-s", "../s"], "'/' is not allowed"),
    (["volume", "clone", "ds", "X"], "not allowed"),
    (["volume", "clone", "ds", "x", "--size", "9Ei"], "less than 8Ei"),
    (["volume", "clone", "ds", "x", "-s", "s", "--size", "16Ei"], "less than 8Ei"),
    (["volume", "clone", "ds", "x", "-s", "s", "--size", LONG + "Ei"], "400 digits"),
    (["volume", "clone", "ds", "x", "--label", "bad"], "key=value"),
    # volume delete / path
    (["volume", "delete", "nope"], "no volume named 'nope'"),
    (["volume", "delete", "ds"], "has 1 snapshot"),
    (["volume", "delete", "ds", "--with-snapshots"], "clone(s) c were made"),
    (["volume", "delete", "Bad"], "not allowed"),
    (["volume", "path", "nope"], "no volume named 'nope'"),
    (["volume", "path", ".."], "'.' and '..'"),
    # snapshots
    (["snapshot", "create", "nope"], "no volume named 'nope'"),
    (["snapshot", "create", "ds", "-n", "s"], "already has a snapshot named 's'"),
    (["snapshot", "create", "ds", "-n", "../x"], "'/' is not allowed"),
    (["snapshot", "create", "ds", "-n", ""], "empty"),
    (["snapshot", "create", "ds", "-n", "S"], "not allowed"),
    (["snapshot", "create", "ds", "--label", "a=\x1b[31m"], "control characters"),
    (["snapshot", "list", "nope"], "no volume named 'nope'"),
    (["snapshot", "delete", "ds", "nope"], "no snapshot named 'nope'"),
    (["snapshot", "delete", "ds", "s"], "clone(s) c were made"),
    (["snapshot", "delete", "nope", "s"], "no volume named 'nope'"),
    (["snapshot", "restore", "ds", "nope"], "no snapshot named 'nope'"),
    (["snapshot", "restore", "nope", "s"], "no volume named 'nope'"),
    (["snapshot", "restore", "ds", ".."], "'.' and '..'"),
    # the pool, in a home that uses the copy driver
    (["pool", "create"], "already uses the copy driver"),
    (["pool", "create", "--size", "9Ei"], "less than 8Ei"),
    (["pool", "create", "--size", "100Mi"], "the minimum is 256Mi"),
    (["pool", "create", "--size", LONG], "400 digits"),
    (["pool", "grow", "--size", "1Gi"], "no pool"),
    (["pool", "grow", "--size", "9Ei"], "less than 8Ei"),
    (["pool", "detach"], "no pool"),
]


@pytest.fixture(scope="module")
def populated_copy_home(tmp_path_factory):
    """A copy-driver home with volume ds (a file), its snapshot s and a clone c of it."""
    home = tmp_path_factory.mktemp("bad-inputs") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(home))
        mp.setenv("VEIL_DRIVER", "copy")
        v = data.create_volume("ds")
        (v.path / "f.txt").write_text("stored")
        data.create_snapshot("ds", "s")
        data.clone_volume("ds", "c", snapshot="s")
    return home


@pytest.mark.parametrize(("argv", "match"), CASES,
                         ids=[" ".join(a)[:60].replace("\n", "\\n") for a, _ in CASES])
def test_bad_data_inputs_are_refused_cleanly(capsys, monkeypatch, populated_copy_home, argv,
                                             match):
    monkeypatch.setenv("VEIL_HOME", str(populated_copy_home))
    monkeypatch.setenv("VEIL_DRIVER", "copy")
    refused(capsys, argv, match, home=populated_copy_home)
    assert read_tree(data.volume_path("ds")) == {"f.txt": b"stored"}


def test_value_errors_exit_2_and_missing_objects_exit_1(capsys, monkeypatch,
                                                        populated_copy_home):
    monkeypatch.setenv("VEIL_HOME", str(populated_copy_home))
    refused(capsys, ["volume", "create", "x", "--size", "9Ei"], "8Ei", home=populated_copy_home,
            code=2)
    refused(capsys, ["volume", "path", "nope"], "no volume", home=populated_copy_home, code=1)


# -- bad inputs on veil's btrfs pool -------------------------------------------------------------
@pytest.fixture(scope="module")
def pool_home_with_volume(tmp_path_factory):
    """A home on veil's own 512Mi btrfs pool, with volume ds."""
    if not HAS_BTRFS:
        need(False, "needs root and btrfs-progs for the btrfs pool")
    home = tmp_path_factory.mktemp("bad-pool") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("VEIL_DRIVER", raising=False)
        mp.setenv("VEIL_HOME", str(home))
        mp.setenv("VEIL_POOL_SIZE", "512Mi")
        data.create_volume("ds", size="64Mi")
    yield home
    Pool(home).detach()


def _beyond_the_disk(home: Path) -> str:
    pool = Pool(home)
    room = pool.image.stat().st_blocks * 512 + shutil.disk_usage(pool.dir).free
    return str(room + 2**30)


POOL_CASES = [
    (["pool", "create"], "already exists"),
    (["pool", "create", "--size", "1Gi"], "already exists"),
    (["pool", "grow", "--size", "256Mi"], "larger size"),
    (["pool", "grow", "--size", "512Mi"], "larger size"),
    (["pool", "grow", "--size", "9Ei"], "less than 8Ei"),
    (["pool", "grow", "--size", "BEYOND"], "so the pool can be at most"),
    (["volume", "create", "x", "--size", "9Ei"], "less than 8Ei"),
    (["volume", "clone", "ds", "x", "--size", "9Ei"], "less than 8Ei"),
]


@pytest.mark.parametrize(("argv", "match"), POOL_CASES, ids=[" ".join(a) for a, _ in POOL_CASES])
def test_bad_pool_inputs_are_refused_cleanly(capsys, monkeypatch, pool_home_with_volume, argv,
                                             match):
    home = pool_home_with_volume
    monkeypatch.setenv("VEIL_HOME", str(home))
    argv = [_beyond_the_disk(home) if a == "BEYOND" else a for a in argv]
    refused(capsys, argv, match, home=home, also=lambda: _pool_state(home))


def test_pool_grow_past_the_free_space_names_it(capsys, monkeypatch, pool_home_with_volume):
    """The audit's `pool grow --size 10Ti` on a disk with 65 GB free."""
    home = pool_home_with_volume
    monkeypatch.setenv("VEIL_HOME", str(home))
    if shutil.disk_usage(home).free > 9 * 2**40:
        pytest.skip("this disk has 10Ti free")
    line = refused(capsys, ["pool", "grow", "--size", "10Ti"], "free", home=home, code=2,
                   also=lambda: _pool_state(home))
    assert str(Pool(home).dir) in line and "10Ti" in line


# -- first use as root: the pool's size from VEIL_POOL_SIZE ---------------------------------------
FIRST_USE = [
    ("9Ei", "VEIL_POOL_SIZE: invalid size '9Ei': must be less than 8Ei"),
    (LONG, "VEIL_POOL_SIZE: invalid size (400 digits)"),
    ("lots", "VEIL_POOL_SIZE: invalid size 'lots'"),
    ("1Mi", "the minimum is 256Mi"),
    ("BEYOND", "so the pool can be at most"),
]


@pytest.mark.parametrize(("size", "match"), FIRST_USE, ids=[s[:12] for s, _ in FIRST_USE])
def test_a_bad_pool_size_at_first_use_is_refused_and_makes_no_pool(capsys, monkeypatch, request,
                                                                    tmp_path, size, match):
    need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs pool")
    home = tmp_path / "home"
    request.addfinalizer(lambda: Pool(home).detach())  # should a pool be made after all
    monkeypatch.delenv("VEIL_DRIVER", raising=False)
    monkeypatch.setenv("VEIL_HOME", str(home))
    data.list_volumes()  # a home that exists, with no driver chosen yet
    with exclusive(home, "setting up"):
        pass
    if size == "BEYOND":
        size = str(shutil.disk_usage(home).free + 2**30)
    monkeypatch.setenv("VEIL_POOL_SIZE", size)
    refused(capsys, ["volume", "create", "x"], match, home=home, code=2)
    assert not Pool(home).dir.exists()


# -- doctor --------------------------------------------------------------------------------------
def test_doctor_on_a_fresh_root_home_says_the_pool_it_creates_enforces_sizes(capsys, monkeypatch,
                                                                             tmp_path):
    need(HAS_BTRFS, "needs root and btrfs-progs for the btrfs pool")
    monkeypatch.delenv("VEIL_DRIVER", raising=False)
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    report = data.doctor()
    assert report.driver == "btrfs" and not report.saved
    assert report.enforces_size and "pool veil creates" in report.sizes
    assert not any("quota" in h for h in report.hints), report.hints
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sizes:        enforced (btrfs quotas on the pool veil creates" in out
    assert not Pool(tmp_path / "home").exists()  # doctor made no pool


def test_doctor_reports_a_home_others_can_read(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("VEIL_HOME", str(home))
    monkeypatch.setenv("VEIL_DRIVER", "copy")
    data.create_volume("ds")
    assert home.stat().st_mode & 0o777 == 0o700
    assert all(c.ok for c in data.doctor().checks if c.name == "home private to its owner")
    shared = tmp_path / "shared"  # sticky, like /tmp: veil does not take others' bits away
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    monkeypatch.setenv("VEIL_HOME", str(shared))
    report = data.doctor()
    assert [c.ok for c in report.checks if c.name == "home private to its owner"] == [False]
    assert any("chmod 700" in h for h in report.hints)


# -- permissions: nobody reads a 0600 file's content anywhere under the home ----------------------
_PROBE = """
import json, os, sys
secret = sys.argv[1].encode()
paths = json.loads(sys.stdin.read())
os.setgroups([]); os.setgid(65534); os.setuid(65534)
found = []
for p in paths:
    try:
        with open(p, "rb") as f:
            tail = b""
            while chunk := f.read(1 << 24):
                if secret in tail + chunk:
                    found.append(p)
                    break
                tail = chunk[-len(secret):]
    except OSError:
        pass
print(json.dumps(found))
"""


def nobody_reads(secret: bytes, *roots: Path) -> list[str]:
    """The files under ``roots`` (listed as root, pool mount included) from which uid 65534
    can read ``secret``."""
    paths = [os.path.join(d, f) for r in roots for d, _, files in os.walk(r) for f in files]
    p = subprocess.run([sys.executable, "-c", _PROBE, secret.decode()], input=json.dumps(paths),
                       capture_output=True, text=True, check=True, timeout=120)
    return json.loads(p.stdout)


@pytest.fixture
def passable(request):
    """``passable(path)``: let others pass through every folder above ``path`` for this test, as
    they usually may through /home/USER (pytest's own tmp folders are 0700)."""
    changed: list[tuple[Path, int]] = []

    def open_up(path: Path) -> None:
        for p in reversed(path.parents):
            mode = stat.S_IMODE(p.stat().st_mode)
            if not mode & 0o001:
                changed.append((p, mode))
                os.chmod(p, mode | 0o001)

    yield open_up
    for p, mode in reversed(changed):
        os.chmod(p, mode)


def _private_file(path: Path, content: bytes) -> None:
    old = os.umask(0o077)  # as the audit wrote it
    try:
        path.write_bytes(content)
    finally:
        os.umask(old)


@pytest.mark.parametrize("kind", ["copy", "copy-data-dir", "btrfs", "btrfs-mounted", "reflink"])
def test_nobody_can_read_a_private_file_anywhere_veil_keeps_it(kind, tmp_path, monkeypatch,
                                                               request, passable):
    if not ROOT:
        pytest.skip("needs root to switch to another user")
    home = make_home("copy" if kind == "copy-data-dir" else kind, tmp_path, monkeypatch, request)
    passable(home)
    roots = [home]
    if kind == "copy-data-dir":
        (tmp_path / "data").mkdir(mode=0o755)  # shared by homes of several users
        monkeypatch.setenv("VEIL_DATA_DIR", str(tmp_path / "data"))
        roots.append(data_dir(home))
    secret = b"veil-secret-" + os.urandom(8).hex().encode()
    v = data.create_volume("ds")
    _private_file(v.path / "private.txt", secret)
    (v.path / "plain.txt").write_text("not secret")
    data.create_snapshot("ds", "s")
    data.clone_volume("ds", "c", snapshot="s")
    data.restore_snapshot("ds", "s")
    os.sync()  # the pool's content reaches its file
    assert nobody_reads(secret, *roots) == []
    for p in roots:
        assert p.stat().st_mode & 0o777 == 0o700
    # the owner gets back the file as it was, mode included
    for name in ("ds", "c"):
        f = data.volume_path(name) / "private.txt"
        assert f.read_bytes() == secret and f.stat().st_mode & 0o777 == 0o600
    if kind == "btrfs":
        pool = Pool(home)
        assert pool.image.stat().st_mode & 0o777 == 0o600
        assert pool.dir.stat().st_mode & 0o777 == 0o700
    if kind.startswith("copy"):
        root = Path(json.loads(_meta(home))["root"])
        for d, dirs, files in os.walk(root / "cas"):
            assert all(Path(d, n).stat().st_mode & 0o077 == 0 for n in dirs + files)
        for f in (root / "manifests").iterdir():
            assert f.stat().st_mode & 0o777 == 0o600


def _meta(home: Path) -> str:
    from veil.data._store import Store

    store = Store(home)
    try:
        return store.get_meta("driver")
    finally:
        store.close()


def test_an_existing_readable_home_is_made_private_when_veil_opens_it(tmp_path, monkeypatch,
                                                                      passable):
    """A home made by veil before issue 15: 0755 folders, content 0444."""
    if not ROOT:
        pytest.skip("needs root to switch to another user")
    home = make_home("copy", tmp_path, monkeypatch, None)
    passable(home)
    secret = b"veil-secret-" + os.urandom(8).hex().encode()
    v = data.create_volume("ds")
    _private_file(v.path / "private.txt", secret)
    data.create_snapshot("ds", "s")
    for d, dirs, files in os.walk(home):  # as the old veil left it
        for n in dirs:
            os.chmod(os.path.join(d, n), 0o755)
        for n in files:
            if "/cas/" in os.path.join(d, n):
                os.chmod(os.path.join(d, n), 0o444)
    home.chmod(0o755)
    assert nobody_reads(secret, home)  # the audit's finding
    data.list_volumes()
    assert nobody_reads(secret, home) == []
    assert home.stat().st_mode & 0o777 == 0o700


def test_a_file_owned_by_another_user_comes_back_with_its_owner_and_mode(copy_home):
    if not ROOT:
        pytest.skip("needs root to give a file to another user")
    v = data.create_volume("ds")
    f = v.path / "theirs.txt"
    _private_file(f, b"theirs")
    os.chown(f, 65534, 65534)
    data.create_snapshot("ds", "s")
    f.write_text("overwritten")
    os.chown(f, 0, 0)
    data.restore_snapshot("ds", "s")
    c = data.clone_volume("ds", "c", snapshot="s")
    for path in (v.path / "theirs.txt", c.path / "theirs.txt"):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
        assert path.read_bytes() == b"theirs"
