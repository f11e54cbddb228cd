"""`veil demo`: a narrated walk through volumes, snapshots, clones and restore on generated data.

It runs the real `veil` commands in a home of its own (``./.veil-demo``, or ``$VEIL_DEMO_HOME``),
so nothing in the user's own veil home is touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import typer
from rich.table import Table

from veil import data
from veil.cli._render import console
from veil.errors import InvalidArgument, VeilError

N_FILES = 2000
FILE_SIZE = 128 * 1024  # 2,000 x 128 KiB = 250 MiB of "images"


def _veil(*args: str) -> float:
    """Run one veil command in this process, echoing it like a shell would; returns seconds."""
    from veil.cli import main

    console.print(f"\n[bold cyan]$ veil {' '.join(args)}[/bold cyan]")
    t = time.perf_counter()
    code = main(list(args))
    elapsed = time.perf_counter() - t
    if code != 0:
        raise SystemExit(code)
    return elapsed


def _say(text: str) -> None:
    console.print(f"\n[bold]{text}[/bold]")


def _fresh_home() -> Path:
    home = Path(os.environ.get("VEIL_DEMO_HOME", ".veil-demo")).absolute()
    if home.exists():
        with contextlib.suppress(VeilError):
            data.pool_detach(home=home)
        if data.pool_show(home=home).mounted:  # never delete through a mounted pool
            raise VeilError(f"cannot reset the demo home: its pool at {home} is still mounted")
        shutil.rmtree(home)
    return home


def _generate(path: Path) -> None:
    from rich.progress import track

    seed = os.urandom(FILE_SIZE + N_FILES)
    for i in track(range(N_FILES), description="writing 250 MiB of images", console=console,
                   transient=True):
        d = path / "images" / f"{i // 200:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"img_{i:05d}.jpg").write_bytes(seed[i : i + FILE_SIZE])
    (path / "labels.csv").write_text("".join(f"img_{i:05d}.jpg,{i % 3}\n"
                                             for i in range(N_FILES)))


def run_demo() -> None:
    home = _fresh_home()
    os.environ["VEIL_HOME"] = str(home)
    os.environ.setdefault("VEIL_POOL_SIZE", "4Gi")
    console.print(f"[bold]veil demo[/bold]: data volumes, snapshots, clones and restore, "
                  f"in a home of its own ({home}).")
    _say("1. Which data driver veil uses here, and why.")
    _veil("doctor")

    _say("2. Provision a volume and put a data set on it (the seed's `create volume` step).")
    _veil("volume", "create", "inference-data", "--size", "2Gi", "--label", "purpose=demo")
    path = data.volume_path("inference-data")
    _generate(path)
    os.sync()  # flushed, as a data set is before anyone snapshots it; timings below stay fair
    console.print(f"wrote {N_FILES} images (250 MiB) and labels.csv to {path}")

    _say("3. Snapshot it before an experiment, for traceability. Compare with a full copy.")
    t_snap = _veil("snapshot", "create", "inference-data", "--name", "baseline",
                   "--label", "note=before-experiment")
    target = home / "full-copy"
    t = time.perf_counter()
    subprocess.run(["cp", "-a", "--reflink=never", f"{os.path.realpath(path)}/.", str(target)],
                   check=True)
    t_cp = time.perf_counter() - t
    shutil.rmtree(target)
    console.print(f"cp -a of the same data took {t_cp * 1000:.0f} ms")

    _say("4. An experiment damages the data: drops 200 images, rewrites the labels.")
    for f in sorted((path / "images" / "00").iterdir()):
        f.unlink()
    (path / "labels.csv").write_text("all,0\n")
    console.print(f"{sum(1 for _ in path.rglob('*.jpg'))} images left; labels.csv is 6 bytes")

    _say("5. Clone the baseline for a second experiment: a writable, independent volume.")
    t_clone = _veil("volume", "clone", "inference-data", "experiment-2", "--snapshot",
                    "baseline", "--label", "purpose=ab-test")
    clone = data.volume_path("experiment-2")
    console.print(f"the clone has {sum(1 for _ in clone.rglob('*.jpg'))} images")

    _say("6. Restore the damaged volume from its snapshot (the snapshot stays).")
    t_restore = _veil("snapshot", "restore", "inference-data", "baseline")
    n = sum(1 for _ in path.rglob("*.jpg"))
    console.print(f"{n} images back at the same path; labels.csv has "
                  f"{len((path / 'labels.csv').read_text().splitlines())} lines")

    _say("7. What exists now.")
    _veil("volume", "list")
    _veil("snapshot", "list")

    driver = data.doctor().driver
    t = Table("operation", f"time ({driver} driver)", "vs cp -a", box=None)
    for name, secs in (("snapshot", t_snap), ("clone", t_clone), ("restore", t_restore)):
        t.add_row(name, f"{secs * 1000:.0f} ms", f"{t_cp / secs:.0f}x faster")
    t.add_row("cp -a (full copy)", f"{t_cp * 1000:.0f} ms", "1x")
    _say("Timings on this machine (250 MiB in 2,001 files):")
    console.print(t)
    if data.pool_show().mounted:
        data.pool_detach()
        console.print("\nDetached the demo's btrfs pool; any veil command with "
                      f"VEIL_HOME={home} mounts it again.")
    console.print(f"\nExplore: VEIL_HOME={home} veil volume list    (remove it: rm -rf {home})")


def demo(
    which: str = typer.Argument("faces", help="faces: confidential face detection (TR-4928), "
                                "7-11 min; volumes: snapshots, clones and restore."),
) -> None:
    """Run a narrated demo on generated data, in a home of its own (./.veil-demo)."""
    if which == "faces":
        from veil.cli._demo_faces import run_face_demo

        run_face_demo()
    elif which == "volumes":
        run_demo()
    else:
        raise InvalidArgument(f"no demo {which!r}: choose faces or volumes")
