"""Reliability of the data layer (issue 15): SIGKILLs of real `veil` processes mid-operation,
processes racing on the same names, the bad inputs of tests/test_hardening_data.py, and what
another local user can read, on the copy driver and on veil's loop-backed btrfs pool.

    sudo .venv/bin/python benchmarks/reliability_data.py [--rounds 1] [--seed 15] [--workdir DIR]

Kills: each operation (snapshot create, clone of a snapshot and of the live volume, restore,
snapshot delete, volume delete, volume create) is killed at each of its failpoints (the process
stops there and is killed) and at random moments while it holds the home's lock; first-use pool
creation likewise, in a fresh home each time. After each kill the next commands must see either
the old state or the new one, nothing stored may be lost (the base snapshot and every surviving
object are compared byte for byte), nothing may be orphaned on disk, and the operation must
succeed when run again. Races: four processes run the same command at once; exactly one may win
a name, the rest must be refused in one line. Bad inputs run `veil.cli.main` in this process.
Without root, the btrfs and other-user rows are skipped (and say so).

Prints a table, then as its last line one JSON object: {"area": "data", "rows": [...]}.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))  # the bad-input tables live with the tests

from tests.badinput import home_state  # noqa: E402

from reliability_rows import Row, check  # noqa: E402  (beside this script)
from veil import data  # noqa: E402
from veil.cli import main  # noqa: E402

IS_ROOT = os.geteuid() == 0
HAS_BTRFS = IS_ROOT and shutil.which("mkfs.btrfs") is not None and "btrfs" in Path(
    "/proc/filesystems").read_text()
FILES = {f"d{i % 8}/f{i:03d}.bin": os.urandom(40_000) for i in range(120)}  # 4.8 MB
CHANGED = {"d0/f000.bin": b"changed after base"}
VICTIM = {"a.txt": b"victim's", "sub/b.bin": os.urandom(50_000)}

# (name, argv, failpoints, copy-only failpoints)
OPS = [
    ("snapshot create", ["snapshot", "create", "ds", "-n", "new"],
     ["snapshot.create"], ["copy.snapshot.file"]),
    ("clone of a snapshot", ["volume", "clone", "ds", "new", "-s", "base"],
     ["clone.create"], ["copy.clone.file"]),
    ("clone of the live volume", ["volume", "clone", "ds", "new"], ["clone.create"], []),
    ("restore", ["snapshot", "restore", "ds", "base"], ["restore.built", "restore.switched"],
     []),
    ("snapshot delete", ["snapshot", "delete", "ds", "old"], ["snapshot.delete"], []),
    ("volume delete", ["volume", "delete", "victim", "--with-snapshots"], ["volume.delete"], []),
    ("volume create", ["volume", "create", "new"], ["volume.create"], []),
]


# -- homes -----------------------------------------------------------------------------------------
def env_for(home: Path, driver: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    env["VEIL_HOME"] = str(home)
    if driver == "copy":
        env["VEIL_DRIVER"] = "copy"
    else:
        env["VEIL_POOL_SIZE"] = "512Mi"
    env.update(extra)
    return env


@contextlib.contextmanager
def using(env: dict[str, str]):
    """Run library calls in this process with ``env``'s VEIL_* settings."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("VEIL_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({k: v for k, v in env.items() if k.startswith("VEIL_")})
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("VEIL_")]:
            del os.environ[k]
        os.environ.update(saved)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)


def read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = Path(d) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def reset(home: Path) -> None:
    """ds = FILES + CHANGED with snapshots base (FILES) and old; victim with snapshot vs."""
    names = {v.name for v in data.list_volumes(home=home)}
    for n in names - {"ds", "victim"}:
        data.delete_volume(n, with_snapshots=True, force=True, home=home)
    if "ds" not in names:
        v = data.create_volume("ds", home=home)
        write_tree(v.path, FILES)
        data.create_snapshot("ds", "base", home=home)
    snaps = {s.name for s in data.list_snapshots("ds", home=home)}
    for s in snaps - {"base", "old"}:
        data.delete_snapshot("ds", s, force=True, home=home)
    data.restore_snapshot("ds", "base", home=home)
    if "old" not in snaps:
        data.create_snapshot("ds", "old", home=home)
    write_tree(data.volume_path("ds", home=home), CHANGED)
    if "victim" not in names:
        v = data.create_volume("victim", home=home)
        write_tree(v.path, VICTIM)
        data.create_snapshot("victim", "vs", home=home)


def _metadata(home: Path, query: str) -> list[tuple]:
    """Rows of the home's metadata database (docs/data.md: one SQLite file, veil.db)."""
    db = sqlite3.connect(f"file:{home / 'veil.db'}?mode=ro", uri=True)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def objects_on_disk(home: Path) -> set[str]:
    [(driver,)] = _metadata(home, "SELECT value FROM meta WHERE key = 'driver'")
    root = Path(json.loads(driver)["root"])
    out = {f"objects/{p.name}" for p in (root / "objects").iterdir()}
    if (root / "manifests").exists():
        out |= {f"manifests/{p.name}" for p in (root / "manifests").iterdir()}
    return out


def objects_in_metadata(home: Path) -> set[str]:
    return {loc for (loc,) in _metadata(home, "SELECT loc FROM volumes UNION "
                                              "SELECT loc FROM snapshots")}


def pool_of(home: Path) -> data.PoolInfo:
    return data.pool_show(home=home)


def detach(home: Path) -> None:
    with contextlib.suppress(Exception):
        data.pool_detach(home=home)


def veil(argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "veil", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def veil_here(argv: list[str]) -> tuple[int, str]:
    """`veil ARGV` in this process (the CLI's own code, without a process start)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def lock_note(home: Path) -> str:
    try:
        return (home / "lock").read_text()
    except OSError:
        return ""


def kill_at_failpoint(argv, env, failpoint: str, tmp: Path) -> None:
    marker = tmp / f"at-{failpoint}-{time.monotonic_ns()}"
    proc = veil(argv, {**env, "VEIL_FAILPOINT": failpoint, "VEIL_FAILPOINT_FILE": str(marker)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended before {failpoint}: {proc.stderr.read()[-200:]}")
        check(time.monotonic() < deadline, f"{failpoint} not reached")
        time.sleep(0.005)
    proc.kill()
    proc.wait()


def kill_at_random(argv, env, home: Path, rng: random.Random, window: float) -> bool:
    """Kill at a random moment once the operation holds the home's lock; whether it still held
    it when killed (the kill landed mid-operation)."""
    proc = veil(argv, env)
    deadline = time.monotonic() + 60
    while not lock_note(home).startswith(f"pid {proc.pid} "):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.001)
    time.sleep(rng.uniform(0, window))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return lock_note(home).startswith(f"pid {proc.pid} ")


# -- kills during data operations ------------------------------------------------------------------
def after_kill(home: Path, env: dict[str, str], op: str, argv: list[str]) -> None:
    """What must hold after a kill during ``op``, then the operation again."""
    vols = {v.name: v for v in data.list_volumes(home=home)}
    snaps = {s.name for s in data.list_snapshots("ds", home=home)} if "ds" in vols else set()
    base = {**FILES}
    # nothing stored is lost: base is whole, and ds holds its old or its restored content
    c = data.clone_volume("ds", "check-base", snapshot="base", home=home)
    check(read_tree(c.path) == base, "snapshot base changed")
    data.delete_volume("check-base", home=home)
    ds = read_tree(data.volume_path("ds", home=home))
    check(ds in ({**base, **CHANGED}, base) if op == "restore" else ds == {**base, **CHANGED},
          "volume ds holds neither its old nor its restored content")
    # the object the operation makes or removes is whole, or absent
    if "new" in vols:
        want = base if op == "clone of a snapshot" else {**base, **CHANGED}
        check(read_tree(vols["new"].path) == ({} if op == "volume create" else want),
              "a half-made volume is visible")
    if "new" in snaps:
        c = data.clone_volume("ds", "check-new", snapshot="new", home=home)
        check(read_tree(c.path) == {**base, **CHANGED}, "a half-made snapshot is visible")
        data.delete_volume("check-new", home=home)
    if "old" in snaps:
        c = data.clone_volume("ds", "check-old", snapshot="old", home=home)
        check(read_tree(c.path) == base, "snapshot old changed")
        data.delete_volume("check-old", home=home)
    if "victim" in vols:
        check(read_tree(vols["victim"].path) == VICTIM, "volume victim changed")
        check([s.name for s in data.list_snapshots("victim", home=home)] == ["vs"],
              "victim lost a snapshot but not itself")
    # nothing orphaned, once a writer has recovered
    data.create_volume("probe", home=home)
    data.delete_volume("probe", home=home)
    check(objects_on_disk(home) == objects_in_metadata(home), "objects orphaned on disk")
    # and the operation can be done again
    again = {"snapshot create": "new" not in snaps,
             "clone of a snapshot": "new" not in vols, "clone of the live volume":
             "new" not in vols, "restore": True, "snapshot delete": "old" in snaps,
             "volume delete": "victim" in vols, "volume create": "new" not in vols}[op]
    if again:
        rc, err = veil_here(argv)
        check(rc == 0, f"the operation failed when run again: {err.strip()}")


def _failpoint_trial(argv, env, fp, tmp, home, name) -> None:
    kill_at_failpoint(argv, env, fp, tmp)
    after_kill(home, env, name, argv)


def _random_trial(argv, env, home, rng, name, was_mid: list[bool]) -> None:
    # btrfs operations hold the lock for tens of milliseconds, copies of 4.8 MB for longer
    window = 0.4 if env.get("VEIL_DRIVER") == "copy" else 0.06
    was_mid.append(kill_at_random(argv, env, home, rng, window))
    after_kill(home, env, name, argv)


def kill_rounds(driver: str, home: Path, tmp: Path, rounds: int, rng: random.Random):
    env = env_for(home, driver)
    fixed, randomly = Row(f"{driver}: SIGKILL at each failpoint"), Row(
        f"{driver}: SIGKILL at random moments")
    landed = 0
    with using(env):
        for name, argv, points, copy_points in OPS:
            for fp in points + (copy_points if driver == "copy" else []):
                reset(home)
                fixed.trial(_failpoint_trial, argv, env, fp, tmp, home, name)
            for _ in range(rounds):
                reset(home)
                was_mid = []
                randomly.trial(_random_trial, argv, env, home, rng, name, was_mid)
                landed += sum(was_mid)
    fixed.notes.append(f"{len(OPS)} operations, every failpoint")
    randomly.notes.append(f"{len(OPS)} operations x {rounds}, killed 0-"
                          f"{'0.4' if driver == 'copy' else '0.06'} s after taking the home's "
                          f"lock; {landed} of {randomly.tried} kills landed while it held it")
    return [fixed, randomly]


# -- first-use pool creation -----------------------------------------------------------------------
def pool_recovered(home: Path, env: dict[str, str]) -> None:
    rc, err = veil_here(["volume", "create", "after"])
    check(rc == 0, f"the next command failed: {err.strip()}")
    (data.volume_path("after", home=home) / "f.txt").write_text("written")
    pool = pool_of(home)
    check(pool.mounts == (os.path.realpath(pool.image),), f"mounts: {pool.mounts}")
    check(sorted(os.listdir(pool.image.parent)) == ["mnt", "pool.img"],
          "the unfinished pool file is left")
    for v in data.list_volumes(home=home):
        (v.path / "probe.txt").write_text("writable")
    check(data.pool_detach(home=home).mounts == (), "something stays mounted after detach")
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    check(str(pool.image.parent) not in loops, "a loop device of the pool is left")
    check((data.volume_path("after", home=home) / "f.txt").read_text() == "written",
          "lost after re-attaching")


def _pool_failpoint_trial(argv, env, fp, work, home) -> None:
    kill_at_failpoint(argv, env, fp, work)
    pool_recovered(home, env)


def _pool_random_trial(argv, env, home, rng) -> None:
    kill_at_random(argv, env, home, rng, 0.3)
    pool_recovered(home, env)


def _stale_pool_trial(home, env) -> None:
    pool = pool_of(home)
    tmp = pool.image.with_name("pool.img.tmp")
    pool.mountpoint.mkdir(parents=True)
    subprocess.run(["truncate", "-s", "300M", str(tmp)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", str(tmp)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(tmp), str(pool.mountpoint)], check=True)
    pool_recovered(home, env)


def pool_rounds(work: Path, rounds: int, rng: random.Random) -> list[Row]:
    fixed, randomly = Row("btrfs pool: SIGKILL during first-use creation, at each failpoint"), Row(
        "btrfs pool: SIGKILL during first-use creation, at random moments")
    stale = Row("btrfs pool: a stale mount of a half-made pool (veil before issue 15)")
    n = 0

    def fresh() -> tuple[Path, dict[str, str]]:
        nonlocal n
        n += 1
        home = work / f"pool-{n}"
        return home, env_for(home, "btrfs")

    def cleanup(home: Path) -> None:
        detach(home)
        for _ in range(4):  # whatever a trial that did not hold left mounted
            subprocess.run(["umount", str(home / "pool" / "mnt")], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)

    argv = ["volume", "create", "first"]
    for fp in ["pool.create.made", "pool.create.renamed"] * rounds:
        home, env = fresh()
        try:
            with using(env):
                fixed.trial(_pool_failpoint_trial, argv, env, fp, work, home)
        finally:
            cleanup(home)
    for _ in range(8 * rounds):  # 2 of 16 failed before the pool waited for a killed mount
        home, env = fresh()
        try:
            with using(env):
                randomly.trial(_pool_random_trial, argv, env, home, rng)
        finally:
            cleanup(home)
    for _ in range(rounds):
        home, env = fresh()
        try:
            with using(env):
                stale.trial(_stale_pool_trial, home, env)
        finally:
            cleanup(home)
    fixed.notes.append("failpoints: after mkfs (before the rename), after the rename (before "
                       "the mount); a fresh home each time")
    randomly.notes.append("killed 0-0.3 s after the creating process took the home's lock")
    stale.notes.append("the unfinished pool file mounted on the mount point, as a kill left it")
    return [fixed, randomly, stale]


# -- races ----------------------------------------------------------------------------------------
RACES = [
    ("volume create", ["volume", "create", "same"], "already exists"),
    ("snapshot create", ["snapshot", "create", "ds", "-n", "same"], "already has a snapshot"),
    ("clone", ["volume", "clone", "ds", "same", "-s", "base"], "already exists"),
    ("snapshot delete", ["snapshot", "delete", "ds", "old"], "no snapshot named 'old'"),
    ("restore", ["snapshot", "restore", "ds", "base"], None),
]


def _race(argv, env, home, racers: int, loser: str | None) -> None:
    procs = [veil(argv, env) for _ in range(racers)]
    results = [(p.wait(), *p.communicate()) for p in procs]
    wins = [r for r in results if r[0] == 0]
    if loser is None:
        check(len(wins) == racers, "a restore failed")
        check(read_tree(data.volume_path("ds", home=home)) == FILES, "not the restored content")
    else:
        check(len(wins) == 1, f"{len(wins)} processes won the name")
        for rc, _out, err in results:
            if rc != 0:  # one error line, after the notes of waiting for the lock
                *notes, last = err.strip().splitlines()
                check(loser in last and last.startswith("error: ")
                      and all(n.startswith("veil: waiting for pid ") for n in notes),
                      f"a loser said {err.strip()[-200:]!r}")
    check(objects_on_disk(home) == objects_in_metadata(home), "objects orphaned on disk")


def race_rounds(driver: str, home: Path, rounds: int, racers: int = 4) -> Row:
    env = env_for(home, driver)
    row = Row(f"{driver}: {racers} processes racing on one name")
    with using(env):
        for _ in range(rounds):
            for _name, argv, loser in RACES:
                reset(home)
                row.trial(_race, argv, env, home, racers, loser)
    row.notes.append(f"{len(RACES)} commands x {rounds}: create, snapshot, clone (one wins), "
                     "delete (one wins), restore (all succeed)")
    return row


# -- bad inputs -----------------------------------------------------------------------------------
def refused_cleanly(argv: list[str], match: str, home: Path, also=None) -> None:
    before, extra = home_state(home), also() if also else None
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    lines = err.getvalue().strip().splitlines()
    check("Traceback" not in err.getvalue(), "a traceback")
    check(rc != 0, f"exit 0: veil {' '.join(argv)[:80]}")
    check(len(lines) == 1 and lines[0].startswith("error: "), f"not one line: {lines[:3]}")
    check(match.lower() in lines[0].lower(), f"{lines[0]!r} does not say {match!r}")
    check(out.getvalue() == "", "printed on stdout")
    check(home_state(home) == before, "the home changed")
    if also:
        check(also() == extra, "state outside the home changed")


def _first_use_refused(match: str, home: Path) -> None:
    refused_cleanly(["volume", "create", "x"], match, home)
    check(not (home / "pool").exists(), "a pool was made")


def _pool_state(home: Path):
    info = pool_of(home)
    return info.mounts, info.size


def _beyond_the_disk(home: Path) -> str:
    info = pool_of(home)
    return str(info.allocated + shutil.disk_usage(info.image.parent).free + 2**30)


def bad_input_rows(work: Path, pool_home: Path | None) -> list[Row]:
    from tests import test_hardening_data as table

    row = Row("bad inputs refused in one line, nothing changed")
    home = work / "bad-inputs"
    env = env_for(home, "copy")
    with using(env):
        v = data.create_volume("ds", home=home)
        (v.path / "f.txt").write_text("stored")
        data.create_snapshot("ds", "s", home=home)
        data.clone_volume("ds", "c", snapshot="s", home=home)
        for argv, match in table.CASES:
            row.trial(refused_cleanly, argv, match, home)
    counts = [f"{len(table.CASES)} on a copy home"]
    if pool_home is not None:
        with using(env_for(pool_home, "btrfs")):
            reset(pool_home)
            for argv, match in table.POOL_CASES:
                argv = [_beyond_the_disk(pool_home) if a == "BEYOND" else a for a in argv]
                row.trial(refused_cleanly, argv, match, pool_home,
                          also=functools.partial(_pool_state, pool_home))
        for i, (size, match) in enumerate(table.FIRST_USE):
            first = work / f"first-use-{i}"
            with using(env_for(first, "btrfs")):
                data.list_volumes(home=first)  # a home with no driver chosen yet
                (first / "lock").touch(0o600)  # as any earlier write leaves it
                if size == "BEYOND":
                    size = str(shutil.disk_usage(first).free + 2**30)
                os.environ["VEIL_POOL_SIZE"] = size
                row.trial(_first_use_refused, match, first)
                detach(first)
        counts += [f"{len(table.POOL_CASES)} on a btrfs pool home",
                   f"{len(table.FIRST_USE)} pool sizes at first use"]
    row.notes.append(", ".join(counts))
    return [row]


# -- who can read what ----------------------------------------------------------------------------
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


def permission_rows(work: Path) -> list[Row]:
    row = Row("another user (nobody) reads a 0600 file's content from the home")
    kinds = ["copy", "copy with VEIL_DATA_DIR"] + (["btrfs pool"] if HAS_BTRFS else [])
    for i, kind in enumerate(kinds):
        home = work / f"perm-{i}" / "home"
        home.parent.mkdir(mode=0o755)
        home.parent.chmod(0o755)
        roots = [home]
        extra = {}
        if kind == "copy with VEIL_DATA_DIR":
            shared = work / f"perm-{i}" / "data"
            shared.mkdir(mode=0o755)
            extra["VEIL_DATA_DIR"] = str(shared)
            roots.append(shared)
        env = env_for(home, "btrfs" if kind == "btrfs pool" else "copy", **extra)
        try:
            with using(env):
                secret = b"veil-secret-" + os.urandom(8).hex().encode()
                v = data.create_volume("ds", home=home)
                old = os.umask(0o077)
                try:
                    (v.path / "private.txt").write_bytes(secret)
                finally:
                    os.umask(old)
                data.create_snapshot("ds", "s", home=home)
                data.clone_volume("ds", "c", snapshot="s", home=home)
                data.restore_snapshot("ds", "s", home=home)
                os.sync()
                paths = [os.path.join(d, f) for r in roots for d, _, fs in os.walk(r)
                         for f in fs]
                p = subprocess.run([sys.executable, "-c", _PROBE, secret.decode()],
                                   input=json.dumps(paths), capture_output=True, text=True,
                                   check=True)
                found = set(json.loads(p.stdout))
                for path in paths:
                    row.trial(check, path not in found, f"{path} leaks")
        finally:
            if kind == "btrfs pool":
                detach(home)
    row.notes.append(f"every file under the home and data folder, as uid 65534: "
                     f"{', '.join(kinds)}; after snapshot, clone and restore")
    return [row]


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1,
                    help="random kills per operation and driver, pool kills, race rounds")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--only", default="kills,pool,races,inputs,users",
                    help="comma-separated parts: kills, pool, races, inputs, users")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="veil-reliability-", dir=args.workdir))
    work.chmod(0o755)  # other users may pass through it, as through a user's home directory
    t0 = time.monotonic()
    rows: list[Row] = []
    skipped: list[str] = []
    homes = {"copy": work / "kills-copy"}
    if HAS_BTRFS:
        homes["btrfs"] = work / "kills-btrfs"
    else:
        skipped.append("btrfs rows (needs root, btrfs-progs and kernel btrfs)")
    timings: list[str] = []

    def timed(what: str, fn, *a) -> list[Row]:
        t = time.monotonic()
        out = fn(*a)
        timings.append(f"{what} {time.monotonic() - t:.0f} s")
        return out

    try:
        for driver, home in homes.items() if "kills" in parts else ():
            rows += timed(f"kills ({driver})", kill_rounds, driver, home, work, args.rounds, rng)
        if HAS_BTRFS and "pool" in parts:
            rows += timed("pool kills", pool_rounds, work, args.rounds, rng)
        for driver, home in homes.items() if "races" in parts else ():
            rows += timed(f"races ({driver})", lambda d=driver, h=home: [
                race_rounds(d, h, args.rounds)])
        if "inputs" in parts:
            rows += timed("bad inputs", bad_input_rows, work, homes.get("btrfs"))
        if "users" not in parts:
            pass
        elif IS_ROOT:
            rows += timed("other users", permission_rows, work)
        else:
            skipped.append("the other-user row (needs root to switch users)")
    finally:
        for home in work.iterdir():
            if (home / "pool").exists():
                detach(home)
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(r.check) for r in rows)
    print(f"{'check':<{width}}  tried  held  notes")
    for r in rows:
        d = r.as_dict()
        print(f"{r.check:<{width}}  {r.tried:5d}  {r.held:4d}  {d['notes']}")
    for s in skipped:
        print(f"skipped: {s}")
    print(f"({time.monotonic() - t0:.0f} s: {', '.join(timings)})")
    print(json.dumps({"area": "data", "rows": [r.as_dict() for r in rows]}))
    return 0 if all(r.held == r.tried for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main_())
