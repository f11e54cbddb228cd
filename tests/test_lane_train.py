"""TR-4896 training: data-parallel (torchrun, gloo) on a volume, the snapshot of data + model +
logs, MLflow lineage, the restore flow, and failures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mlflow")

from veil import data, track
from veil.cli import main
from veil.solutions.lane_detection import generate, read_labels

SNAP = re.compile(r"Snapshot: (snap-[a-z0-9.-]+-lane-detection-\d{4}(-\d\d){5})")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VEIL_DRIVER", "copy")
    monkeypatch.delenv("VEIL_DATA_DIR", raising=False)
    return tmp_path / "home"


def _volume_with_data(name: str = "tusimple", train: int = 8, test: int = 2) -> Path:
    data.create_volume(name)
    root = data.volume_path(name) / "data"
    generate(root, seed=1, train_clips=train, test_clips=test)
    return root


def _train(*extra: str) -> list[str]:
    return ["train", "lane-detection", "--data", "data", "--epochs", "1", "--batch-size", "2",
            "--val-batch-size", "2", "--no-use-workers", *extra]


@pytest.mark.slow  # 20 s; the README test trains 2 processes, snapshots, clones
def test_two_processes_snapshot_lineage_and_retraining_from_a_restore(home, capsys):
    _volume_with_data()
    assert main(_train("--volume", "tusimple", "--processes", "2", "--enable-snapshot")) == 0
    out = capsys.readouterr().out
    snap = SNAP.search(out).group(1)
    run_id = re.search(r"MLflow run: ([0-9a-f]{32})", out).group(1)
    s = data.get_snapshot("tusimple", snap)
    assert s.labels["mlflow-run"] == run_id and s.labels["job"] == "lane-detection"
    run_dir = data.volume_path("tusimple") / Path(s.labels["model"]).parent
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(metrics["epochs"]) == 1
    assert metrics["test"] is not None and (run_dir / "predictions.json").is_file()
    read_labels(run_dir / "predictions.json", prediction=True)
    # the command says where the predictions and the labels they are scored on are
    assert f"Predictions: {run_dir / 'predictions.json'}" in out
    assert f"Test labels: {data.volume_path('tusimple') / 'data' / 'test_label.json'}" \
        in out
    assert main(["lineage", "tusimple@latest", "--json"]) == 0  # VOLUME@latest: the newest
    assert json.loads(capsys.readouterr().out)["snapshot"]["name"] == snap
    r = track.get_run(run_id)
    assert r.status == "FINISHED" and r.output_snapshot == snap
    assert r.data_volume == "tusimple" and r.params["processes"] == "2"
    assert "test_Accuracy" in r.metrics and "loss" in r.metrics

    # restore: clone the snapshot (data + model + logs) and train again from its model
    assert main(["volume", "clone", "tusimple", "tusimple-restored", "--snapshot", snap]) == 0
    restored_model = data.volume_path("tusimple-restored") / s.labels["model"]
    assert restored_model.is_file()
    capsys.readouterr()
    assert main(_train("--volume", "tusimple-restored", "--init", str(restored_model),
                       "--job", "retrain")) == 0
    out2 = capsys.readouterr().out
    run2 = re.search(r"MLflow run: ([0-9a-f]{32})", out2).group(1)
    assert track.get_run(run2).data_snapshot == snap

    assert main(["lineage", f"tusimple@{snap}"]) == 0
    text = capsys.readouterr().out
    produced, used = text.split("used by")
    assert run_id in produced and run2 in used
    assert main(["lineage", run2]) == 0
    assert f"data came from snapshot: {snap}" in capsys.readouterr().out


def test_a_failing_replica_leaves_no_model_and_no_snapshot(home, capsys):
    root = _volume_with_data()
    labels = read_labels(root / "label_data_veil.json")[0]
    bad = root / labels[3].raw_file
    bad.write_bytes(bad.read_bytes()[:1500])  # a truncated JPEG: the worker reading it fails
    code = main(_train("--volume", "tusimple", "--processes", "2", "--enable-snapshot",
                       "--out", str(root.parent / "run")))
    err = capsys.readouterr().err
    assert code == 1
    assert "training failed" in err and "not a readable image" in err and labels[3].raw_file in err
    # the replica that failed is named: the one whose shard of epoch 0 holds that frame
    from torch.utils.data import DistributedSampler

    n = len(read_labels(root / "label_data_veil.json")[0])
    rank = next(r for r in (0, 1) if 3 in list(DistributedSampler(
        range(n), num_replicas=2, rank=r, shuffle=True, seed=0, drop_last=True)))
    assert f"training failed (rank {rank} of 2, exit 1)" in err, err
    assert not (root.parent / "run" / "model.pt").exists()
    assert data.list_snapshots("tusimple") == []
    assert [r.status for r in track.runs()] == ["FAILED"]


def test_bad_input_fails_before_training(home, capsys):
    root = _volume_with_data(train=4, test=0)
    assert main(_train("--volume", "nope", "--enable-snapshot")) == 1
    assert "no volume named 'nope'" in capsys.readouterr().err
    assert main(_train("--out", str(root.parent / "x"), "--data", str(root),
                       "--enable-snapshot")) == 2
    assert "--enable-snapshot needs --volume" in capsys.readouterr().err
    f = root / "label_data_veil.json"
    lines = f.read_text().splitlines()
    d = json.loads(lines[1])
    d["lanes"][0] = d["lanes"][0][:-1]
    lines[1] = json.dumps(d)
    f.write_text("\n".join(lines) + "\n")
    assert main(_train("--volume", "tusimple")) == 2
    assert "label_data_veil.json:2: lane 0 has 55 points but h_samples has 56" in \
        capsys.readouterr().err
    assert main(_train("--volume", "tusimple", "--processes", "0")) == 2
    assert main(["train", "lane-detection", "--out", str(root.parent / "x")]) == 2
    assert "--data is required (a TuSimple folder)" in capsys.readouterr().err
    assert main(_train("--volume", "tusimple", "--out", "o", "--results", "r")) == 2
    assert "--out and --results both say where the run writes" in capsys.readouterr().err
    assert "r" not in {v.name for v in data.list_volumes()}  # nothing made for a refusal
    assert main(_train("--volume", "tusimple", "--init", "/no/such.pt")) == 2
    from veil.errors import NotFound
    from veil.solutions.lane_detection._job import train_job
    from veil.solutions.lane_detection._train import TrainConfig

    with pytest.raises(NotFound, match="no volume named 'nope'"):
        train_job(TrainConfig(data=str(root), out=str(root.parent / "o")), 1, volume="nope",
                  snapshot=True)
    assert track.runs() == []  # nothing rejected up front is recorded as a run


def test_emitted_manifests_match_the_seeds_and_validate(tmp_path):
    kv = pytest.importorskip("kubernetes_validate")
    import yaml

    assert main(["solutions", "lane-detection", "export", "k8s", str(tmp_path), "--processes", "3",
                 "--batch-size", "33", "--num-workers", "4", "--no-use-val",
                 "--val-batch-size", "99"]) == 0
    job = yaml.safe_load((tmp_path / "pytorchjob.yaml").read_text())
    snap = yaml.safe_load((tmp_path / "volumesnapshot.yaml").read_text())
    pvc = yaml.safe_load((tmp_path / "restore-snapshot-pvc.yaml").read_text())
    assert "&id" not in (tmp_path / "pytorchjob.yaml").read_text()
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert job["kind"] == "PyTorchJob" and job["metadata"]["name"] == "dist-lane-detection-training"
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2  # --processes=3
    for spec in specs.values():
        kv.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                     "template": spec["template"]}, "1.30.0", strict=True)
        c = spec["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["USE_WORKERS"] == "true" and env["NUM_WORKERS"] == "4"
        assert env["BATCH_SIZE"] == "33" and env["USE_VAL"] == "false"
        assert env["VAL_BATCH_SIZE"] == "99"
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        vols = spec["template"]["spec"]["volumes"]
        assert vols[0]["persistentVolumeClaim"]["claimName"] == "pvc-download-tusimple-data-0"
    assert snap["kind"] == "VolumeSnapshot"
    assert snap["spec"]["source"]["persistentVolumeClaimName"] == "pvc-download-tusimple-data-0"
    assert re.fullmatch(r"snap-pvc-download-tusimple-data-0-dist-lane-detection-training-"
                        r"\d{4}(-\d\d){5}", snap["metadata"]["name"])
    kv.validate(pvc, "1.30.0", strict=True)
    assert pvc["metadata"]["name"] == "restored-tusimple"
    assert pvc["spec"]["dataSource"] == {"name": snap["metadata"]["name"],
                                         "kind": "VolumeSnapshot",
                                         "apiGroup": "snapshot.storage.k8s.io"}


def test_a_replica_configured_like_the_seeds_environment(tmp_path):
    import os
    import subprocess
    import sys

    root = tmp_path / "tusimple"
    generate(root, seed=2, train_clips=4, test_clips=1)
    env = dict(os.environ, DATA_DIR=str(root), OUT_DIR=str(tmp_path / "runs"), EPOCHS="1",
               BATCH_SIZE="2", USE_WORKERS="false", NUM_WORKERS="0", USE_VAL="true",
               VAL_BATCH_SIZE="1")
    subprocess.run([sys.executable, "-m", "veil.train",
                    "veil.solutions.lane_detection._train:worker", "--from-env",
                    "veil.solutions.lane_detection._train:TrainConfig"],
                   env=env, check=True, capture_output=True)
    assert (tmp_path / "runs" / "model.pt").is_file()
    m = json.loads((tmp_path / "runs" / "metrics.json").read_text())
    assert m["config"]["use_workers"] is False and m["processes"] == 1


def test_a_replica_killed_mid_training_keeps_the_last_checkpoint(home):
    """SIGKILL one of two replicas after the first checkpoint: the job fails, the checkpoint of
    the last finished epoch stays, and neither a model nor a snapshot appears."""
    import os
    import signal
    import threading
    import time

    import torch

    from veil.errors import VeilError
    from veil.solutions.lane_detection._job import train_job
    from veil.solutions.lane_detection._train import TrainConfig

    root = _volume_with_data(train=8, test=0)
    out = root.parent / "runs" / "killed"
    cfg = TrainConfig(data=str(root), out=str(out), epochs=200, batch_size=2,
                      use_workers=False, use_val=False)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            train_job(cfg, 2, volume="tusimple", snapshot=True, log=lambda m: None)
        except BaseException as e:
            failure.append(e)

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (out / "checkpoint.pt").exists()
    replicas = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"veil.solutions.lane_detection._train:worker" in cmd and \
                str(out / "config.json").encode() in cmd and b"torch.distributed.run" not in cmd:
            replicas.append(int(p.name))
    assert len(replicas) == 2
    os.kill(max(replicas), signal.SIGKILL)
    th.join(timeout=120)
    assert not th.is_alive()
    assert failure and isinstance(failure[0], VeilError)
    assert "training failed" in str(failure[0])
    assert not (out / "model.pt").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert 1 <= ckpt["epoch"] < 200
    assert data.list_snapshots("tusimple") == []
    assert [r.status for r in track.runs()] == ["FAILED"]
