"""The CTR job exported for the Dask Kubernetes operator: a DaskJob from the shared emitter,
valid against the operator's own CRD schema (from its wheel, fetched by scripts/setup.sh), whose
runner pod reads its options back from the environment."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from veil import k8s
from veil.train import from_env

ROOT = Path(__file__).resolve().parents[1]
WHEEL = ROOT / ".venv/share/veil/dask_kubernetes-2026.3.0-py3-none-any.whl"
CRDS = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds/"


def crd_schema(kind: str) -> dict:
    """The openAPIV3Schema of the operator's CRD for `kind` (daskjob, daskcluster)."""
    assert WHEEL.is_file(), f"{WHEEL} is missing: run scripts/setup.sh"
    with zipfile.ZipFile(WHEEL) as z:
        crd = yaml.safe_load(z.read(CRDS + f"{kind}.yaml"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert crd["spec"]["group"] + "/v1" == k8s.DASK_OPERATOR_API
    return version["schema"]["openAPIV3Schema"]


def validate(doc: dict, kind: str) -> None:
    import jsonschema

    jsonschema.Draft7Validator(crd_schema(kind)).validate(doc)


def export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "veil", "solutions", "ctr", "export", "k8s",
                           str(tmp_path), *args], capture_output=True, text=True, timeout=120)


def test_the_exported_daskjob_is_valid_against_the_operators_crd(tmp_path):
    p = export(tmp_path, "--data", "criteo/day15", "--engine", "dask-lightgbm", "--workers",
               "3", "--trees", "50")
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "daskjob.yaml").read_text()
    assert "&id" not in text  # each pod's spec written out, no YAML anchors
    doc = yaml.safe_load(text)
    validate(doc, "daskjob")
    assert doc["kind"] == "DaskJob" and doc["metadata"]["namespace"] == "dask"
    cluster = doc["spec"]["cluster"]["spec"]
    assert cluster["worker"]["replicas"] == 3
    (worker,) = cluster["worker"]["spec"]["containers"]
    assert worker["command"][:2] == ["dask", "worker"]
    assert {"name": "data", "mountPath": "/data"} in worker["volumeMounts"]
    # the Service selects the scheduler of the cluster the operator makes for this job
    service = cluster["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == doc["metadata"]["name"] + "-cluster"
    # the runner pod trains with the options given, read back from its environment; the
    # scheduler's address is the operator's to give (DASK_SCHEDULER_ADDRESS), not ours
    (job,) = doc["spec"]["job"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in job["env"]}
    assert "DASK_SCHEDULER_ADDRESS" not in env
    from veil.solutions.ctr._config import TrainConfig

    cfg = from_env(TrainConfig, {**env, "DASK_SCHEDULER_ADDRESS": "tcp://sched:8786"})
    assert (cfg.engine, cfg.workers, cfg.trees) == ("dask-lightgbm", 3, 50)
    assert cfg.data == "/data/criteo/day15" and cfg.scheduler == "tcp://sched:8786"
    assert job["command"][:3] == ["python", "-m", "veil.train"]


def test_a_project_queues_every_pod_of_the_daskjob_with_kai():
    c = k8s.container("job", "veil:1", ["true"])
    doc = k8s.daskjob("ctr", "ml", c, image="veil:1", workers=2, project="team-a")
    validate(doc, "daskjob")
    pods = [doc["spec"]["job"], doc["spec"]["cluster"]["spec"]["worker"],
            doc["spec"]["cluster"]["spec"]["scheduler"]]
    for pod in pods:
        assert pod["metadata"]["labels"] == {k8s.QUEUE_LABEL: "team-a"}
        assert pod["spec"]["schedulerName"] == k8s.SCHEDULER
    plain = k8s.daskjob("ctr", "ml", c, image="veil:1", workers=2)
    assert "metadata" not in plain["spec"]["job"]


def test_the_crd_check_catches_a_malformed_daskjob():
    import jsonschema

    c = k8s.container("job", "veil:1", ["true"])
    doc = k8s.daskjob("ctr", "ml", c, image="veil:1", workers=2)
    del doc["spec"]["cluster"]["spec"]["scheduler"]["service"]
    with pytest.raises(jsonschema.ValidationError, match="service"):
        validate(doc, "daskjob")
    doc = k8s.daskjob("ctr", "ml", c, image="veil:1", workers=2)
    doc["spec"]["cluster"]["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, "daskjob")


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "--workers must be"),
    (["--engine", "xgb"], "--engine must be one of"),
    (["--engine", "dask-rf", "--categorical", "target"], "needs --engine dask-lightgbm"),
    (["--job-name", "Bad_Name"], "not a valid Kubernetes name"),
    (["--data", "../etc"], "leads outside the data PVC"),
])
def test_bad_export_options_end_in_one_line(tmp_path, args, message):
    p = export(tmp_path / "out", *args)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "out").exists()
