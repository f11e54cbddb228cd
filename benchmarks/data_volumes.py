"""Snapshot and clone cost of each data driver versus `cp -a`, measured side by side in one run.

    sudo .venv/bin/python benchmarks/data_volumes.py [--workdir /var/tmp/veil-bench] [--quick]

Data sets: 1 GiB in 10,000 files and 4 GiB in 100 files (incompressible, every file distinct).
Drivers: btrfs (veil's loop-backed pool, root only), reflink (a loop-mounted XFS, root only) and
copy (the host filesystem). `cp -a` copies the same volume on the same filesystem, with
--reflink=never so it is a real copy (coreutils >= 9 would otherwise reflink on btrfs and XFS);
its time is the command's wall time (data may still be in the page cache, which favours cp).
Caches are warm for both sides. Prints the tables, writes benchmarks/out/data_volumes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from veil import data

GiB = 2**30
DATASETS = {"1GiB-10000files": (GiB, 10_000), "4GiB-100files": (4 * GiB, 100)}
QUICK = {"64MiB-1000files": (64 * 2**20, 1000), "256MiB-10files": (256 * 2**20, 10)}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def write_dataset(root: Path, total: int, nfiles: int, seed: int = 0) -> None:
    """``nfiles`` distinct incompressible files adding up to ``total`` bytes."""
    pool = os.urandom(64 * 2**20 + 2**20)
    size = total // nfiles
    for i in range(nfiles):
        d = root / f"part{i % 100:02d}"
        d.mkdir(exist_ok=True)
        with open(d / f"file{i:05d}.bin", "wb") as f:
            left, off = size, (i * 7919 + seed) % 2**20
            f.write(f"{seed}:{i}".encode().ljust(32, b"."))
            left -= 32
            while left > 0:
                n = min(left, 64 * 2**20 - off)
                f.write(pool[off : off + n])
                left -= n
                off = 0
    os.sync()


def fs_used(path: Path) -> int:
    os.sync()
    if shutil.which("btrfs") and data.doctor().driver == "btrfs":
        subprocess.run(["btrfs", "filesystem", "sync", str(path)], check=False,
                       capture_output=True)
    v = os.statvfs(path)
    return (v.f_blocks - v.f_bfree) * v.f_frsize


def cp_a(src: Path, dst: Path) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    t = timed(lambda: subprocess.run(["cp", "-a", "--reflink=never", f"{src}/.", str(dst)],
                                     check=True))
    shutil.rmtree(dst)
    return t


def bench_driver(label: str, home: Path, env: dict[str, str], datasets, reps: int) -> dict:
    os.environ.pop("VEIL_DRIVER", None)
    os.environ.update(env, VEIL_HOME=str(home))
    out: dict = {"driver": label, "datasets": {}}
    for ds, (total, nfiles) in datasets.items():
        out["datasets"][ds] = row = bench_dataset(label, ds, total, nfiles, reps)
        print(f"  {label:8s} {ds:18s} first snapshot {row['first_snapshot_s']*1000:9.1f} ms   "
              f"clone {row['clone_s']*1000:9.1f} ms   cp -a {row['cp_a_s']*1000:9.1f} ms",
              flush=True)
    return out


def bench_dataset(label: str, ds: str, total: int, nfiles: int, reps: int) -> dict:
    vol = f"v-{ds.lower()}"
    v = data.create_volume(vol)
    real = Path(os.path.realpath(v.path))
    write_dataset(real, total, nfiles)
    snap_times = [timed(lambda r=r: data.create_snapshot(vol, f"s{r}")) for r in range(reps)]
    used0 = fs_used(real)
    clone_times = [timed(lambda: data.clone_volume(vol, f"{vol}-c0", snapshot="s0"))]
    clone_extra = fs_used(real) - used0
    clone_reps = reps if label != "copy" else 1  # a copy clone rewrites every byte
    clone_times += [timed(lambda r=r: data.clone_volume(vol, f"{vol}-c{r}", snapshot="s0"))
                    for r in range(1, clone_reps)]
    live_clone_t = timed(lambda: data.clone_volume(vol, f"{vol}-lc"))
    cp_t = cp_a(real, real.parent / f"cp-{ds}")
    for name in [f"{vol}-c{r}" for r in range(clone_reps)] + [f"{vol}-lc"]:
        data.delete_volume(name)
    data.delete_volume(vol, with_snapshots=True)
    if label == "btrfs":  # let btrfs finish dropping them, or it slows the next data set down
        subprocess.run(["btrfs", "subvolume", "sync", str(real.parent)], check=False,
                       capture_output=True)
    row = {
        "bytes": total, "files": nfiles,
        # the first snapshot copies everything on the copy driver; repeats of an unchanged volume
        # are incremental there. On btrfs and reflink every snapshot costs the same.
        "first_snapshot_s": snap_times[0],
        "repeat_snapshot_s": statistics.median(snap_times[1:]) if reps > 1 else None,
        "snapshot_runs_s": snap_times,
        "clone_s": statistics.median(clone_times), "clone_runs_s": clone_times,
        "clone_of_live_s": live_clone_t, "cp_a_s": cp_t,
        "clone_extra_disk_bytes": clone_extra,
        "clone_extra_disk_pct": 100 * clone_extra / total,
    }
    row["snapshot_s"] = statistics.median(snap_times) if label != "copy" else snap_times[0]
    row["cp_over_snapshot"] = cp_t / row["snapshot_s"]
    row["cp_over_clone"] = cp_t / row["clone_s"]
    return row


def bench_copy_incremental(home: Path, total: int, nfiles: int) -> dict:
    """copy driver, a fresh home: first snapshot, change 1% of the files, second snapshot."""
    os.environ.update(VEIL_DRIVER="copy", VEIL_HOME=str(home))
    v = data.create_volume("incremental")
    real = Path(os.path.realpath(v.path))
    write_dataset(real, total, nfiles, seed=1)
    first = timed(lambda: data.create_snapshot("incremental", "first"))
    stored_first = data.stored_bytes()
    files = sorted(real.rglob("*.bin"))
    changed = files[::100]
    for p in changed:
        with open(p, "r+b") as f:
            f.write(b"changed!" + os.urandom(24))
    os.sync()
    second = timed(lambda: data.create_snapshot("incremental", "second"))
    stored_second = data.stored_bytes() - stored_first
    data.delete_volume("incremental", with_snapshots=True)
    return {
        "bytes": total, "files": nfiles,
        "first_snapshot_s": first, "second_snapshot_s": second, "changed_files": len(changed),
        "second_over_first_time_pct": 100 * second / first,
        "first_stored_bytes": stored_first, "second_stored_bytes": stored_second,
        "second_over_first_bytes_pct": 100 * stored_second / stored_first,
    }


def loop_mount(work: Path, fs: str, size: str) -> Path:
    img, mnt = work / f"{fs}.img", work / f"{fs}-mnt"
    subprocess.run(["truncate", "-s", size, str(img)], check=True)
    subprocess.run([f"mkfs.{fs}", "-q", "-f", str(img)], check=True, capture_output=True)
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    return mnt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/var/tmp/veil-bench")
    ap.add_argument("--quick", action="store_true", help="small data sets, for a smoke run")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--drivers", default="btrfs,reflink,copy")
    args = ap.parse_args()
    datasets = QUICK if args.quick else DATASETS
    work = Path(args.workdir)
    if work.exists():
        subprocess.run(["umount", "-q", str(work / "xfs-mnt")], check=False)
        subprocess.run(["umount", "-q", str(work / "btrfs-home/pool/mnt")], check=False)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    host_fs = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True,
                             text=True).stdout.strip()
    results = {"host": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                        "workdir_fs": host_fs, "root": os.geteuid() == 0},
               "drivers": []}
    wanted = args.drivers.split(",")
    print(f"workdir {work} ({host_fs}), data sets: {', '.join(datasets)}")
    if os.geteuid() != 0 and ("btrfs" in wanted or "reflink" in wanted):
        print("not root: only the copy driver is measured", file=sys.stderr)
        wanted = ["copy"]
    try:
        if "btrfs" in wanted:
            os.environ["VEIL_POOL_SIZE"] = "24Gi"
            results["drivers"].append(bench_driver("btrfs", work / "btrfs-home", {}, datasets,
                                                   args.reps))
            data.pool_detach()
        if "reflink" in wanted:
            mnt = loop_mount(work, "xfs", "24G")
            try:
                results["drivers"].append(bench_driver(
                    "reflink", mnt / "home", {"VEIL_DRIVER": "reflink"}, datasets, args.reps))
            finally:
                subprocess.run(["umount", str(mnt)], check=False)
        if "copy" in wanted:
            results["drivers"].append(bench_driver("copy", work / "copy-home",
                                                   {"VEIL_DRIVER": "copy"}, datasets, 3))
            total, nfiles = next(iter(datasets.values()))
            results["copy_incremental"] = bench_copy_incremental(work / "copy-incr", total,
                                                                 nfiles)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, datasets)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "data_volumes.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out / 'data_volumes.json'}")
    return 0


def report(results: dict, datasets) -> None:
    print("\n| driver | data set | snapshot (first) | snapshot (median) | clone (median) "
          "| clone of live | cp -a | cp -a / snapshot | cp -a / clone | clone extra disk |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in results["drivers"]:
        for ds, r in d["datasets"].items():
            med = "-" if d["driver"] == "copy" else f"{r['snapshot_s']*1000:.1f} ms"
            print(f"| {d['driver']} | {ds} | {r['first_snapshot_s']*1000:.1f} ms | {med} | "
                  f"{r['clone_s']*1000:.1f} ms | {r['clone_of_live_s']*1000:.1f} ms | "
                  f"{r['cp_a_s']:.2f} s | {r['cp_over_snapshot']:.0f}x | "
                  f"{r['cp_over_clone']:.0f}x | {r['clone_extra_disk_pct']:.2f}% |")
    names = list(datasets)
    for d in results["drivers"]:
        rows = d["datasets"]
        if d["driver"] == "btrfs" and len(names) == 2:
            ratio = rows[names[1]]["snapshot_s"] / rows[names[0]]["snapshot_s"]
            print(f"\nbtrfs snapshot time {names[1]} / {names[0]}: {ratio:.2f}x (goal <= 2x)")
            print("btrfs cp -a / snapshot: " + ", ".join(
                f"{k} {v['cp_over_snapshot']:.0f}x" for k, v in rows.items()) + " (goal >= 50x)")
            print("btrfs cp -a / clone: " + ", ".join(
                f"{k} {v['cp_over_clone']:.0f}x" for k, v in rows.items()) + " (goal >= 50x)")
        for k, r in rows.items():
            if d["driver"] in ("btrfs", "reflink") and k == names[0]:
                print(f"{d['driver']} clone of unchanged {k}: "
                      f"{r['clone_extra_disk_pct']:.3f}% extra disk (goal < 1%)")
    r = results.get("copy_incremental")
    if r:
        print(f"\ncopy driver, {r['files']} files / {r['bytes'] // 2**20} MiB: first snapshot "
              f"{r['first_snapshot_s']:.2f} s; second after changing {r['changed_files']} files "
              f"(1%) {r['second_snapshot_s']:.3f} s = {r['second_over_first_time_pct']:.2f}% of "
              f"the first (goal <= 5%); it stored {r['second_stored_bytes']} more bytes = "
              f"{r['second_over_first_bytes_pct']:.2f}% (goal <= 2%)")


if __name__ == "__main__":
    sys.exit(main())
