"""`veil solutions face-privacy` as a real process: the shipped detector on generated FDDB folds,
the seed's log format, bad folds, scenario 2 on veil volumes, and the Kubernetes manifests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from veil.solutions.face_privacy import _evaluate, _fddb
from veil.solutions.face_privacy._fddb import fold_files

CLI = [sys.executable, "-m", "veil", "solutions", "face-privacy"]
FOLD_LINE = re.compile(r"^FDDB-fold-(\d+) Val AP: (\d\.\d+(?:e-\d+)?|0\.0|1\.0)$")


def veil(*args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=280, cwd=cwd)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def fddb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faces") / "FDDB"
    out = veil("generate", str(path), "--seed", "7", "--images-per-fold", "4",
               "--fit-per-fold", "2").stdout
    assert "Wrote 60 images" in out
    return path


def results_block(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = lines.index("===== Results =====")
    end = next(i for i, line in enumerate(lines) if line.startswith("mAP: "))
    return lines[start:end + 1]


@pytest.mark.slow  # 17 s; the README test runs the clean job (and a test below the format)
def test_clean_evaluation_prints_the_seeds_log_and_finds_the_faces(fddb, tmp_path):
    p = veil("evaluate", "--dataset", str(fddb), "--out", str(tmp_path / "out"))
    block = results_block(p.stdout)
    folds = [FOLD_LINE.match(line) for line in block[1:11]]
    assert all(folds), block
    assert [int(m.group(1)) for m in folds] == list(range(1, 11))
    aps = [float(m.group(2)) for m in folds]
    assert block[11].startswith("FDDB Dataset Average AP: ")
    mean = float(block[11].split(": ")[1])
    assert mean == pytest.approx(np.mean(aps), abs=1e-12)
    assert block[12] == "=====" and block[13] == f"mAP: {block[11].split(': ')[1]}"
    # the shipped weights really detect: generated faces are found (target: mAP >= 0.93 on
    # the full test folds; 40 images here, so a looser bound)
    assert mean >= 0.85, block
    assert "Predicting" in p.stderr  # tqdm progress bars, as in the seed's job log
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["mAP"] == pytest.approx(mean)
    assert summary["roc"]["tpr_at_1000_fp"] >= 0.85
    assert (tmp_path / "out" / "results.txt").read_text().splitlines()[:14] == block
    det = (tmp_path / "out" / "detections" / "FDDB-det-fold-01.txt").read_text().splitlines()
    assert det[0] == "synth/fold-01/img_0000" and int(det[1]) == len(det[2:2 + int(det[1])])


def test_a_malformed_fold_is_reported_and_the_others_still_scored(fddb, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(fddb, bad)
    _, ellipses = fold_files(bad, 4)
    lines = ellipses.read_text().splitlines()
    lines[2] = "12.0 not-a-number 1.2 100 100 1"
    ellipses.write_text("\n".join(lines) + "\n")
    p = veil("evaluate", "--dataset", str(bad), ok=False)
    assert p.returncode == 1
    block = results_block(p.stdout)
    assert [m.group(1) for m in map(FOLD_LINE.match, block[1:10])] == [
        "1", "2", "3", "5", "6", "7", "8", "9", "10"]
    left = [line for line in p.stdout.splitlines() if line.startswith("FDDB-fold-4 left out")]
    assert left and "FDDB-fold-04-ellipseList.txt:3" in left[0]


@pytest.mark.parametrize("args, code, message", [
    (["--dataset", "/nonexistent/FDDB"], 1, "no data set at /nonexistent/FDDB"),
    (["--dataset", "{tmp}"], 2, "not an FDDB data set"),
    (["--dataset", "{fddb}", "--noisy"], 2, "--noisy needs --alpha"),
    (["--dataset", "{fddb}", "--alpha", "0.5"], 2, "--alpha applies only with --noisy"),
    (["--dataset", "{fddb}", "--noisy", "--alpha", "1.5"], 2, "ALPHA"),
    (["--dataset", "{fddb}", "--weights", "{tmp}/missing.pt"], 1, "no FaceBoxes weights"),
    (["--dataset", "{tmp}/notfddb", "--volume", "nope"], 1, "no volume"),
])
def test_bad_input_ends_in_one_line(fddb, tmp_path, copy_home, capsys, args, code, message):
    from tests.badinput import refused
    from veil import data

    (tmp_path / "notfddb").mkdir()
    data.list_volumes()  # the home exists, as a user's would
    args = [a.format(tmp=tmp_path, fddb=fddb) for a in args]
    refused(capsys, ["solutions", "face-privacy", "evaluate", *args], message, code=code,
            home=copy_home)


@pytest.mark.slow  # 29 s; the README test fits and scores a noisy faces model too
def test_noisy_evaluation_fits_on_the_fit_set_and_costs_accuracy(fddb, tmp_path):
    p = veil("evaluate", "--dataset", str(fddb), "--noisy", "--alpha", "0.9", "--workdir",
             str(tmp_path / "wd"), "--json")
    noisy = json.loads(p.stdout)
    assert noisy["alpha"] == 0.9
    assert (tmp_path / "wd" / "obfuscators" / "gaussian-alpha-0.9").exists()
    clean = json.loads(veil("evaluate", "--dataset", str(fddb), "--json").stdout)
    assert 0 < noisy["mAP"] < clean["mAP"]


@pytest.mark.slow  # 25 s; the README test runs scenario 2 on a volume with its lineage
def test_scenario_2_reads_a_volume_and_snapshots_the_results(fddb, tmp_path, copy_home):
    from veil import data

    p = veil("generate", "faces/FDDB", "--volume", "inference-data", "--seed", "7",
             "--images-per-fold", "4", "--fit-per-fold", "0")
    assert "Wrote 40 images" in p.stdout
    p = veil("evaluate", "--volume", "inference-data", "--dataset", "faces/FDDB",
             "--results", "inference-results")
    block = results_block(p.stdout)
    snaps = data.list_snapshots("inference-results")
    assert len(snaps) == 1 and snaps[0].name.startswith("snap-inference-results-faces-raw-")
    assert snaps[0].labels["dataset-volume"] == "inference-data"
    assert snaps[0].labels["dataset"] == "faces/FDDB"  # inside the volume, not veil's storage
    assert float(snaps[0].labels["mAP"]) == pytest.approx(float(block[-1].split(": ")[1]))
    # the snapshot holds the run's files, and they are the printed results
    root = data.clone_volume("inference-results", "check", snapshot=snaps[0].name).path
    txt = next(root.glob("faces-raw-*/results.txt")).read_text().splitlines()
    assert txt[:14] == block
    # same seed, same images: the volume's copy scores exactly as the folder did
    direct = results_block(veil("evaluate", "--dataset", str(fddb)).stdout)
    assert block == direct
    # the job is an MLflow run linked both ways to its results snapshot
    run_id = snaps[0].labels["mlflow-run"]
    assert re.search(rf"MLflow run: {run_id}", p.stderr)
    lineage = subprocess.run([sys.executable, "-m", "veil", "lineage",
                              f"inference-results@{snaps[0].name}"], capture_output=True,
                             text=True, timeout=120, check=True).stdout
    produced = lineage.split("used by")[0]
    assert run_id in produced and f"mAP {float(snaps[0].labels['mAP']):.4f}" in produced
    assert "data inference-data:" in produced


def test_emitted_jobs_match_the_seeds_and_validate(tmp_path):
    kv = pytest.importorskip("kubernetes_validate")
    import yaml

    p = veil("export", "k8s", str(tmp_path), "--dataset", "netapp-face-detection/FDDB",
             "--alphas", "0.8", "--gpus", "2")
    assert "inference-job-raw.yaml" in p.stdout
    raw = yaml.safe_load((tmp_path / "inference-job-raw.yaml").read_text())
    noisy = yaml.safe_load((tmp_path / "inference-job-veil-0.8.yaml").read_text())
    for doc in (raw, noisy):
        kv.validate(doc, "1.30.0", strict=True)  # raises on any schema error
        c = doc["spec"]["template"]["spec"]["containers"][0]
        assert c["command"][:6] == ["veil", "solutions", "face-privacy", "evaluate", "--dataset",
                                    "/data/netapp-face-detection/FDDB"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", "/dev/shm"}
        vols = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
        assert vols["data"]["persistentVolumeClaim"]["claimName"] == "inference-data"
        assert doc["metadata"]["namespace"] == "inference"
        assert doc["spec"]["backoffLimit"] == 5
    c = noisy["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "ALPHA", "value": "0.8"} in c["env"]
    assert c["command"][6:9] == ["--alpha", "$(ALPHA)", "--noisy"]
    assert "env" not in raw["spec"]["template"]["spec"]["containers"][0]
    bad = veil("export", "k8s", str(tmp_path), "--data-pvc", "Bad_Name", ok=False)
    assert bad.returncode == 2 and "not a valid Kubernetes name" in bad.stderr


def test_log_lines_are_the_seeds_format():
    ev = _evaluate.Evaluation("x", None, [
        _evaluate.FoldResult(i, f"FDDB-fold-{i}", 1, 1, ap, []) for i, ap in
        [(1, 0.9491256561145955), (2, 0.9205024466101926)]], {}, 0.9348140513623941, 1.0, 2, 0.0)
    assert _evaluate.log_lines(ev) == [
        "===== Results =====", "FDDB-fold-1 Val AP: 0.9491256561145955",
        "FDDB-fold-2 Val AP: 0.9205024466101926", "FDDB Dataset Average AP: 0.9348140513623941",
        "=====", "mAP: 0.9348140513623941"]


def test_faces_is_a_privacy_task_with_its_own_splits(tmp_path):
    p = subprocess.run([sys.executable, "-m", "veil", "privacy", "tasks"], capture_output=True,
                       text=True, timeout=120)
    assert re.search(r"^\s*faces\s+mAP\s", p.stdout, re.M), p.stdout
    p = subprocess.run([sys.executable, "-m", "veil", "privacy", "generate", str(tmp_path / "d"),
                        "--task", "faces", "--train", "10", "--attack", "20", "--test", "10"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for sub, n in (("", 10), ("fit", 10), ("attack", 20)):
        ds = _fddb.read_fddb(tmp_path / "d" / sub)
        assert sum(len(f.images) for f in ds.folds) == n
    p = subprocess.run([sys.executable, "-m", "veil", "privacy", "generate", str(tmp_path / "e"),
                        "--task", "faces", "--test", "15"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "multiple of 10" in p.stderr
