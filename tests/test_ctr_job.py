"""`veil solutions ctr` end to end as a user runs it: click logs generated onto a volume, a
forest trained on a real Dask cluster (worker processes), the model written on the volume and
snapshotted, the run in MLflow with its data's lineage; and the user's mistakes, each refused in
one line with nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.badinput import refused

CLI = [sys.executable, "-m", "veil", "solutions", "ctr"]


def veil(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=280)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.mark.slow  # 12-17 s; the README test runs this flow (its exit codes, not these checks)
def test_generate_check_train_on_a_volume_snapshot_and_lineage(copy_home, tmp_path):
    from veil import data

    p = veil("generate", "criteo", "--volume", "clicks", "--rows", "20000", "--test-rows",
             "5000", "--seed", "3")
    assert "25,000 click-log rows" in p.stdout
    root = data.volume_path("clicks") / "criteo"
    assert sorted(f.name for f in root.iterdir()) == ["dataset.json", "day_15", "day_15_test"]
    checked = veil("check", str(root), "--json")
    assert json.loads(checked.stdout)["errors"] == []

    p = veil("train", "--volume", "clicks", "--data", "criteo", "--engine", "dask-rf",
             "--workers", "2", "--snapshot", "--json")
    out = json.loads(p.stdout)
    assert "Dask dashboard: http://" in p.stderr  # the seed's Task Stream view, while it ran
    m = out["metrics"]
    assert out["rows"] == 20_000 and m["rows"] == 5_000
    oracle = json.loads((root / "dataset.json").read_text())["oracle"]
    # a real signal learnt: well above chance, not above what the hidden model allows
    assert 0.6 < m["auc"] <= oracle["auc"] + 0.01
    assert m["majority_accuracy"] >= 0.5
    # the model lives on the volume, in the snapshot taken after it was written
    (snap,) = data.list_snapshots("clicks")
    assert snap.labels["engine"] == "dask-rf" and snap.labels["model"].startswith("runs/")
    assert float(snap.labels["auc"]) == pytest.approx(m["auc"], abs=1e-4)
    clone = data.clone_volume("clicks", "check", snapshot=snap.name).path
    assert (clone / snap.labels["model"]).stat().st_size > 1000
    lineage = subprocess.run([sys.executable, "-m", "veil", "lineage", f"clicks@{snap.name}"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert out["run_id"] in lineage


def test_a_malformed_row_names_file_and_line_and_skip_counts_it(copy_home, tmp_path):
    d = tmp_path / "criteo"
    veil("generate", str(d), "--rows", "3000", "--test-rows", "1000", "--seed", "1")
    lines = (d / "day_15").read_text().splitlines(keepends=True)
    lines[1233] = lines[1233].replace("\t", "\tx", 1)  # a count that is not a number
    (d / "day_15").write_text("".join(lines))
    p = veil("train", "--data", str(d), "--out", str(tmp_path / "run"), "--engine",
             "pandas-sklearn", "--no-track", ok=False)
    assert p.returncode == 2 and "day_15:1234:" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "run").exists()  # nothing written, not even the run's folder
    # on Dask workers too; what LightGBM prints there stays out of the JSON on stdout
    skipped = json.loads(veil("train", "--data", str(d), "--out", str(tmp_path / "run"),
                              "--engine", "dask-lightgbm", "--on-bad-lines", "skip",
                              "--no-track", "--json").stdout)
    assert skipped["skipped"] == 1 and skipped["rows"] == 2999
    assert (tmp_path / "run" / "model.txt").is_file()


@pytest.mark.parametrize("args,message", [
    (["--engine", "spark"], "--engine must be one of"),
    (["--trees", "0"], "--trees must be"),
    (["--engine", "dask-rf", "--categorical", "hashed"], "needs --engine dask-lightgbm"),
    (["--scheduler", "10.0.0.5:8786"], "--scheduler must be a Dask scheduler address"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
    (["--train-file", "day_3"], "day_3: no such file"),
    (["--test-file", "empty"], "is empty"),
])
def test_bad_training_options_are_refused_in_one_line(copy_home, tmp_path, capsys, args,
                                                      message):
    from veil.solutions.ctr import generate

    d = tmp_path / "criteo"
    generate(d, sizes={"rows": 500, "test_rows": 100})
    (d / "empty").write_bytes(b"")
    refused(capsys, ["solutions", "ctr", "train", "--data", str(d), "--out",
                     str(tmp_path / "run"), *args], message, home=copy_home)
    assert not (tmp_path / "run").exists()


def test_a_worker_killed_during_a_run_is_replaced_and_the_run_completes(tmp_path):
    """Tasks prefer the worker holding their rows but may run elsewhere: a dead worker's
    tasks rerun on its replacement instead of waiting forever for its address."""
    import os
    import signal

    import psutil

    from veil.solutions.ctr import generate

    d = tmp_path / "criteo"
    generate(d, sizes={"rows": 100_000, "test_rows": 2_000})
    p = subprocess.Popen([*CLI, "train", "--data", str(d), "--out", str(tmp_path / "run"),
                          "--engine", "dask-rf", "--no-track", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:  # the cluster is up: kill one worker before the rows are read
            if line.startswith("Dask dashboard:"):
                break
        workers = [c for c in psutil.Process(p.pid).children()
                   if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2
        os.kill(workers[0].pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=120)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == 0
    assert json.loads(out)["rows"] == 100_000


def test_train_on_a_cluster_started_apart_with_dasks_own_commands(tmp_path):
    """`--scheduler tcp://HOST:PORT` trains on a cluster the user started (`dask scheduler`,
    `dask worker`), as on many machines: the workers read the rows themselves."""
    import time

    from veil.solutions.ctr import generate

    d = tmp_path / "criteo"
    generate(d, sizes={"rows": 6_000, "test_rows": 1_000})
    bindir = Path(sys.executable).parent
    info = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "wb")  # noqa: SIM115 (closed below)
    procs = [subprocess.Popen([bindir / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                               "0", "--no-dashboard", "--scheduler-file", info],
                              stdout=log, stderr=log)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        procs.append(subprocess.Popen([bindir / "dask", "worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard"],
                                      stdout=log, stderr=log))
        from distributed import Client

        with Client(address, timeout=30) as c:  # both workers have joined
            c.wait_for_workers(2, timeout=60)
        p = veil("train", "--data", str(d), "--out", str(tmp_path / "run"), "--engine",
                 "dask-rf", "--scheduler", address, "--no-track", "--json")
        out = json.loads(p.stdout)
        assert f"Using the Dask scheduler at {address} with 2 workers" in p.stderr
        assert out["rows"] == 6_000 and out["workers"] == 2
        assert sum(k.startswith("worker ") for k in out["peak_rss_bytes"]) == 2
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        log.close()
