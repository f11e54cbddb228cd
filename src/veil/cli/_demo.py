"""`veil demo`: narrated walks through veil on generated data (faces, the default, or volumes).

Each run works in a new veil home of its own, ``ROOT/KIND-YYYYMMDD-HHMMSS`` with ROOT
``$VEIL_DEMO_HOME`` or ``./.veil-demo``: runs are kept side by side and never replaced, so the
results an earlier run pointed to stay there, and the faces and volumes demos never touch each
other's. A run detaches its pool when it ends, done or not, and deletes nothing an earlier run
made. The user's own veil home is not touched either."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from veil import data
from veil.cli._render import console, size
from veil.errors import InvalidArgument, VeilError

DEMO_ROOT = ".veil-demo"  # where runs are kept, relative to the working folder
N_FILES = 2000
FILE_SIZE = 128 * 1024  # 2,000 x 128 KiB = 250 MiB of "images"
# Seconds each step of the face demo (_demo_faces) takes on 2 CPU cores, with its sizes: measured
# 11, 18 (34 in a second run), 146, 11, 218 and 0 s (404 s in all) on a quiet 2-core machine with
# the copy driver; rounded up to 5 s.
FACE_STEP_SECONDS = (15, 25, 150, 15, 220, 5)


def demo_root() -> Path:
    """The folder that keeps the demo's runs: $VEIL_DEMO_HOME, else ./.veil-demo."""
    return Path(os.environ.get("VEIL_DEMO_HOME") or DEMO_ROOT).expanduser().absolute()


def new_home(kind: str, root: Path | None = None, now: datetime | None = None) -> Path:
    """Make and return an empty, private (0700) veil home for one run of demo `kind`:
    ROOT/KIND-YYYYMMDD-HHMMSS (with -2, -3, ... if that name is taken). Nothing that exists is
    reused, emptied or removed."""
    root = Path(root) if root is not None else demo_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = f"{kind}-{(now or datetime.now()):%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        home = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.mkdir(home, 0o700)
        except FileExistsError:
            continue
        os.chmod(home, 0o700)  # whatever the umask
        return home
    raise VeilError(f"cannot make a demo home in {root}: {stamp} to {stamp}-999 all exist")


def earlier_runs(home: Path) -> list[Path]:
    """The other demo runs kept beside `home`, oldest first."""
    return sorted(p for p in home.parent.iterdir()
                  if p != home and p.is_dir() and p.name.startswith(("faces-", "volumes-")))


@contextlib.contextmanager
def demo_home(kind: str) -> Iterator[Path]:
    """A new home for this run (see `new_home`), made this process's VEIL_HOME; its pool, if it
    has one, is detached when the run ends, whether it finished or failed."""
    home = new_home(kind)
    os.environ["VEIL_HOME"] = str(home)
    os.environ.setdefault("VEIL_POOL_SIZE", "4Gi")
    kept = earlier_runs(home)
    if kept:
        console.print(f"Earlier demo runs are kept in {home.parent}: "
                      f"{', '.join(p.name for p in kept)}.")
    try:
        yield home
    finally:
        try:
            if data.pool_show(home=home).mounted:
                data.pool_detach(home=home)
                console.print(f"\nDetached the demo's btrfs pool; any veil command with "
                              f"VEIL_HOME={home} mounts it again.")
        except VeilError as e:
            console.print(f"\ncould not detach the demo's pool ({e}); before removing {home}: "
                          f"VEIL_HOME={home} veil pool detach", markup=False)


class Steps:
    """The demo's numbered steps: each says what it does (and, when known, about how long it
    takes) before it starts, and how long it took when done; `table` sums them up. CPU seconds
    are this process's (all its threads): on a busy machine they say what the step costs."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float, float]] = []
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()

    @contextlib.contextmanager
    def __call__(self, text: str, short: str, expect_s: float | None = None) -> Iterator[None]:
        n = len(self.done) + 1
        about = f" [dim](about {_duration(expect_s)} on 2 cores)[/dim]" \
            if expect_s and expect_s >= 30 else ""
        _say(f"{n}. {text}{about}")
        t, cpu = time.perf_counter(), time.process_time()
        yield
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        self.done.append((short, secs, cpu))
        console.print(f"[green]step {n} ({short}) done in {secs:.0f} s[/green]")

    def table(self) -> Table:
        t = Table("step", "", "seconds", "CPU seconds", box=None)
        for n, (short, secs, cpu) in enumerate(self.done, 1):
            t.add_row(str(n), short, f"{secs:.0f}", f"{cpu:.0f}")
        t.add_row("", "total", f"{time.perf_counter() - self.t0:.0f}",
                  f"{time.process_time() - self.cpu0:.0f}")
        return t


def _duration(secs: float) -> str:
    """60 s, 2.5 min, 7 min: seconds up to 90, then minutes to the nearest half."""
    return f"{secs:.0f} s" if secs < 90 else f"{round(secs / 30) / 2:g} min"


def _veil(*args: str) -> float:
    """Run one veil command in this process, echoing it like a shell would; returns seconds."""
    from veil.cli import main

    console.print(f"\n[bold cyan]$ veil {' '.join(args)}[/bold cyan]")
    t = time.perf_counter()
    code = main(list(args))
    elapsed = time.perf_counter() - t
    if code != 0:
        raise SystemExit(code)
    console.print(f"[dim]({elapsed:.1f} s)[/dim]")
    return elapsed


def _say(text: str) -> None:
    console.print(f"\n[bold]{text}[/bold]")


def _generate(path: Path) -> None:
    from rich.progress import track

    seed = os.urandom(FILE_SIZE + N_FILES)
    for i in track(range(N_FILES), description=f"writing {size(N_FILES * FILE_SIZE)} of images",
                   console=console, transient=True):
        d = path / "images" / f"{i // 200:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"img_{i:05d}.jpg").write_bytes(seed[i : i + FILE_SIZE])
    (path / "labels.csv").write_text("".join(f"img_{i:05d}.jpg,{i % 3}\n"
                                             for i in range(N_FILES)))


def run_demo() -> Path:
    """The volumes demo, in a new home (returned)."""
    with demo_home("volumes") as home:
        _volumes(home)
    console.print(f"\nExplore: VEIL_HOME={home} veil volume list    (remove it: rm -rf {home})")
    return home


def _volumes(home: Path) -> None:
    total = size(N_FILES * FILE_SIZE)
    console.print(f"[bold]veil demo volumes[/bold]: data volumes, snapshots, clones and restore, "
                  f"in a home of its own ({home}).")
    steps = Steps()
    with steps("Which data driver veil uses here, and why.", "doctor"):
        _veil("doctor")

    with steps("Provision a volume and put a data set on it (the seed's `create volume` step).",
               "create and fill"):
        _veil("volume", "create", "inference-data", "--size", "2Gi", "--label", "purpose=demo")
        path = data.volume_path("inference-data")
        _generate(path)
        os.sync()  # flushed, as a data set is before anyone snapshots it; timings below stay fair
        console.print(f"wrote {N_FILES} images ({total}) and labels.csv to {path}")

    with steps("Snapshot it before an experiment, for traceability. Compare with a full copy.",
               "snapshot and cp -a"):
        t_snap = _veil("snapshot", "create", "inference-data", "--name", "baseline",
                       "--label", "note=before-experiment")
        target = home / "full-copy"
        t = time.perf_counter()
        subprocess.run(["cp", "-a", "--reflink=never", f"{os.path.realpath(path)}/.",
                        str(target)], check=True)
        t_cp = time.perf_counter() - t
        shutil.rmtree(target)  # the copy this step made, outside any volume
        console.print(f"cp -a of the same data took {t_cp * 1000:.0f} ms")

    damaged = sum(1 for _ in (path / "images" / "00").iterdir())
    with steps(f"An experiment damages the data: drops {damaged} images, rewrites the labels.",
               "damage"):
        for f in sorted((path / "images" / "00").iterdir()):
            f.unlink()
        (path / "labels.csv").write_text("all,0\n")
        console.print(f"{sum(1 for _ in path.rglob('*.jpg'))} images left; labels.csv is "
                      "6 bytes")

    with steps("Clone the baseline for a second experiment: a writable, independent volume.",
               "clone"):
        t_clone = _veil("volume", "clone", "inference-data", "experiment-2", "--snapshot",
                        "baseline", "--label", "purpose=ab-test")
        clone = data.volume_path("experiment-2")
        console.print(f"the clone has {sum(1 for _ in clone.rglob('*.jpg'))} images")

    with steps("Restore the damaged volume from its snapshot (the snapshot stays).", "restore"):
        t_restore = _veil("snapshot", "restore", "inference-data", "baseline")
        n = sum(1 for _ in path.rglob("*.jpg"))
        console.print(f"{n} images back at the same path; labels.csv has "
                      f"{len((path / 'labels.csv').read_text().splitlines())} lines")

    with steps("What exists now.", "list"):
        _veil("volume", "list")
        _veil("snapshot", "list")

    driver = data.doctor().driver
    t = Table("operation", f"time ({driver} driver)", "vs cp -a", box=None)
    for name, secs in (("snapshot", t_snap), ("clone", t_clone), ("restore", t_restore)):
        t.add_row(name, f"{secs * 1000:.0f} ms", f"{t_cp / secs:.0f}x faster")
    t.add_row("cp -a (full copy)", f"{t_cp * 1000:.0f} ms", "1x")
    _say(f"Timings on this machine ({total} in {N_FILES + 1:,} files):")
    console.print(t)
    _say("Time per step:")
    console.print(steps.table())


def demo(
    which: str = typer.Argument("faces", help="faces: confidential face detection (TR-4928), "
                                f"about {_duration(sum(FACE_STEP_SECONDS))} on 2 CPU cores; "
                                "volumes: snapshots, clones and restore, under a minute."),
) -> None:
    """Run a narrated demo on generated data. Each run gets a new veil home of its own,
    ./.veil-demo/KIND-YYYYMMDD-HHMMSS (or under $VEIL_DEMO_HOME); earlier runs are kept."""
    if which == "faces":
        from veil.cli._demo_faces import run_face_demo

        run_face_demo()
    elif which == "volumes":
        run_demo()
    else:
        raise InvalidArgument(f"no demo {which!r}: choose faces or volumes")
