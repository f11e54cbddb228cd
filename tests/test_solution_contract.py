"""The solution contract: a solution defined only in the tests (tests/plugins/veil_toy, found
through its own `veil.solutions` entry point) gets generate, check, its jobs, export k8s and
`veil train` from the registry, runs a job on a volume with lineage and a snapshot, and exports
a Job in a veil project's KAI queue. Real processes, a real MLflow store, real volumes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def veil(tmp_path):
    env = dict(os.environ, VEIL_HOME=str(tmp_path / "home"), VEIL_DRIVER="copy",
               PYTHONPATH=os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    env.pop("VEIL_DATA_DIR", None)

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "veil", *args], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=180)
        if ok:
            assert p.returncode == 0, p.stderr
        return p

    return run


def test_a_solution_in_its_own_package_gets_every_command_from_the_registry(veil, tmp_path):
    listed = veil("solutions", "list").stdout
    assert re.search(r"^toy\s+TR-0000\s+train, evaluate\s", listed, re.M), listed
    assert re.search(r"^lane-detection\s+TR-4896\s", listed, re.M)
    help_text = veil("solutions", "toy", "--help").stdout
    for verb in ("info", "generate", "check", "train", "evaluate", "export"):
        assert verb in help_text
    info = json.loads(veil("solutions", "toy", "info", "--json").stdout)
    assert info["report"] == "TR-0000" and info["metrics"][0]["higher_is_better"] is False

    # generate onto a volume (created), then check it, then break it and check again
    p = veil("solutions", "toy", "generate", "pts", "--volume", "toyvol", "--points", "40",
             "--seed", "3")
    assert "Wrote a points data set" in p.stdout
    made = json.loads(veil("solutions", "toy", "generate", "pts-2", "--volume", "toyvol",
                           "--points", "5", "--json").stdout)
    assert made["sizes"] == {"points": 5} and made["path"].endswith("pts-2")
    root = tmp_path / "home"
    found = list(root.rglob("pts/points.csv"))
    assert len(found) == 1 and len(found[0].read_text().splitlines()) == 40
    assert json.loads((found[0].parent / "dataset.json").read_text())["points"] == 40
    assert "40 points; 0 problem(s)." in veil("solutions", "toy", "check", "pts", "--volume",
                                              "toyvol").stdout

    # a job on the volume: MLflow run with lineage tags, then a snapshot of the volume
    p = veil("solutions", "toy", "train", "--volume", "toyvol", "--data", "pts", "--snapshot",
             "--json")
    out = json.loads(p.stdout)
    assert out["metrics"]["mse"] < 0.05 and out["snapshot"].startswith("snap-toyvol-toy-")
    assert "fitted y = 2.0" in p.stderr
    # the home's first tracked run says why it is slow to start: the store is being made
    assert "Creating the lineage store" in p.stderr and "mlflow.db" in p.stderr
    lin = veil("lineage", f"toyvol@{out['snapshot']}").stdout
    assert out["run_id"] in lin.split("used by")[0] and "mse " in lin
    run = veil("lineage", out["run_id"], "--json").stdout
    tags = json.loads(run)["run"]["tags"]
    assert tags["veil.solution"] == "toy" and tags["veil.data_volume"] == "toyvol"
    assert tags["veil.output_snapshot"] == out["snapshot"] and tags["veil.metric"] == "mse"

    # the second job reads the model the first one wrote, from the snapshot's clone
    veil("volume", "clone", "toyvol", "toyvol-2", "--snapshot", out["snapshot"])
    model = next((root).rglob("runs/toy-*/model.json"))
    p = veil("solutions", "toy", "evaluate", "--volume", "toyvol-2", "--data", "pts",
             "--model", str(model), "--json")
    ev = json.loads(p.stdout)
    assert ev["metrics"]["mse"] == pytest.approx(out["metrics"]["mse"])
    assert "Creating the lineage store" not in p.stderr  # once per home
    r2 = json.loads(veil("lineage", ev["run_id"], "--json").stdout)["run"]["tags"]
    assert r2["veil.data_snapshot"] == out["snapshot"]  # the clone's origin is its lineage

    # `veil train NAME` is the same command
    p = veil("train", "toy", "--volume", "toyvol", "--data", "pts", "--no-track", "--json")
    assert json.loads(p.stdout)["run_id"] is None

    # a user's mistake is one line and a non-zero exit, and nothing is recorded for it
    found[0].write_text(found[0].read_text() + "oops\n")
    bad = veil("solutions", "toy", "check", "pts", "--volume", "toyvol", ok=False)
    assert bad.returncode == 1 and re.search(r"points\.csv:41: not two numbers", bad.stderr)
    bad = veil("solutions", "toy", "train", "--volume", "toyvol", "--data", "pts", ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "points.csv:41" in bad.stderr
    bad = veil("solutions", "toy", "train", "--volume", "nope", "--data", "pts", ok=False)
    assert bad.returncode == 1 and "no volume named 'nope'" in bad.stderr


def test_its_job_exports_into_a_projects_kai_queue(veil, tmp_path):
    kv = pytest.importorskip("kubernetes_validate")
    import yaml

    missing = veil("solutions", "toy", "export", "k8s", "k8s", "--project", "team-a",
                   ok=False)
    assert missing.returncode == 1 and "no project 'team-a'" in missing.stderr
    veil("node", "add", "dgx1-1", "--gpus", "8")
    veil("project", "create", "team-a", "--gpus", "4")
    p = veil("solutions", "toy", "export", "k8s", "k8s", "--project", "team-a", "--ridge", "0.5",
             "--gpus", "1", "--pvc", "toy-pvc")
    assert "toy-train.yaml" in p.stdout
    job = yaml.safe_load((tmp_path / "k8s" / "toy-train.yaml").read_text())
    kv.validate(job, "1.30.0", strict=True)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["kai.scheduler/queue"] == "team-a"
    assert pod["spec"]["schedulerName"] == "kai-scheduler"
    c = pod["spec"]["containers"][0]
    assert c["command"][-2:] == ["--ridge", "0.5"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "toy-pvc"
    # the queue it names is the one `veil export k8s` writes for the project
    veil("export", "k8s", "cluster")
    queues = list(yaml.safe_load_all((tmp_path / "cluster" / "queues.yaml").read_text()))
    assert "team-a" in {q["metadata"]["name"] for q in queues}
    bad = veil("solutions", "toy", "export", "k8s", "k8s", "--namespace", "Bad_NS", ok=False)
    assert bad.returncode == 2 and "not a valid Kubernetes name" in bad.stderr


def test_a_broken_solution_plugin_breaks_nothing_else(veil, tmp_path):
    """A plugin whose registration fails to import is reported, and every other command works."""
    broken = tmp_path / "broken"
    (broken / "veil_broken-0.1.dist-info").mkdir(parents=True)
    (broken / "veil_broken-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: veil-broken\nVersion: 0.1\n")
    (broken / "veil_broken-0.1.dist-info" / "entry_points.txt").write_text(
        "[veil.solutions]\nbroken = veil_broken\n")
    (broken / "veil_broken.py").write_text("import a_dependency_that_is_not_installed\n")
    env = dict(os.environ, VEIL_HOME=str(tmp_path / "home"), VEIL_DRIVER="copy",
               PYTHONPATH=os.pathsep.join([str(broken), str(PLUGINS)]))
    run = [sys.executable, "-m", "veil"]
    p = subprocess.run([*run, "volume", "list"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    p = subprocess.run([*run, "solutions", "list"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and re.search(r"^toy\s+TR-0000", p.stdout, re.M)
    assert "solution 'broken' could not be loaded: veil_broken: ModuleNotFoundError" in p.stderr


def test_a_malformed_registration_is_refused():
    from dataclasses import dataclass

    from veil.solutions import JobSpec, Solution, register

    @dataclass
    class Clashing:
        seed: int = 0  # --seed is a shared option

    with pytest.raises(TypeError, match="seed clash with the shared options"):
        register(Solution("clash", "TR-1", "x", jobs=[JobSpec("train", "x", Clashing, run=id)]))
    with pytest.raises(TypeError, match="may not be named 'export'"):
        register(Solution("clash", "TR-1", "x", jobs=[JobSpec("export", "x", Clashing,
                                                               run=id)]))
    with pytest.raises(TypeError, match="not 'list'"):
        register(Solution("list", "TR-1", "x"))
