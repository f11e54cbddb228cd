"""veil.k8s, the one emitter: names, containers, GPU limits, the KAI queue from a project, and
every object valid against the Kubernetes 1.30 schemas."""

from __future__ import annotations

import pytest
import yaml

from veil import k8s
from veil.errors import InvalidArgument


def test_names_follow_kubernetes_rules():
    assert k8s.check_name("team-a", "project") == "team-a"
    for bad in ("Team", "-a", "a_b", "a" * 64, "", None):
        with pytest.raises(InvalidArgument, match="not a valid Kubernetes name for the x"):
            k8s.check_name(bad, "x")
    long_snapshot = "snap-" + "a" * 80
    assert k8s.check_name(long_snapshot, "snapshot", subdomain=True) == long_snapshot
    with pytest.raises(InvalidArgument):
        k8s.Target(namespace="ns", project="Bad").check()
    with pytest.raises(InvalidArgument, match="--gpus"):
        k8s.Target(gpus=-1).check()


def test_a_project_puts_a_job_in_its_kai_queue_and_everything_validates(tmp_path):
    kv = pytest.importorskip("kubernetes_validate")
    c = k8s.container("main", "veil:1", ["veil", "--version"], env_vars={"USE_VAL": False,
                      "N": 3, "SKIP": None}, mounts={"data": "/data", "dshm": "/dev/shm"},
                      gpus=2, ports=[8888])
    assert c["env"] == [{"name": "USE_VAL", "value": "false"}, {"name": "N", "value": "3"}]
    assert c["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    vols = [k8s.pvc_volume("data", "my-pvc"), k8s.shm_volume()]
    queued = k8s.pod_template([c], vols, project="team-a")
    plain = k8s.pod_template([c], vols)
    assert queued["metadata"]["labels"] == {k8s.QUEUE_LABEL: "team-a"}
    assert queued["spec"]["schedulerName"] == k8s.SCHEDULER and "schedulerName" not in \
        plain["spec"]
    docs = {
        "job.yaml": k8s.job("train-1", "ml", queued, project="team-a"),
        "plain.yaml": k8s.job("train-2", "ml", plain),
        "pod.yaml": k8s.pod("p-0", "ml", c, project="team-b", gpus=0.5, interactive=True),
        "snap.yaml": k8s.volume_snapshot("snap-my-pvc-1", "ml", pvc="my-pvc",
                                         snapshot_class="csi-snapclass"),
        "pvc.yaml": k8s.restore_pvc("restored", "ml", snapshot="snap-my-pvc-1",
                                    storage_class="fast"),
    }
    files = k8s.write(tmp_path, docs)
    assert [f.name for f in files] == list(docs)
    for f in files:
        if f.name != "snap.yaml":  # a CRD: kubernetes-validate has no schema for it
            kv.validate(yaml.safe_load(f.read_text()), "1.30.0", strict=True)
    pod = docs["pod.yaml"]
    assert pod["metadata"]["annotations"] == {"gpu-fraction": "0.5"}
    assert pod["spec"]["priorityClassName"] == "build"
    ptj = k8s.pytorchjob("dist", "ml", queued, 3, project="team-a")
    specs = ptj["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    assert specs["Master"]["template"] is not specs["Worker"]["template"]  # no YAML anchors
    assert "&id" not in yaml.safe_dump(ptj)
    with pytest.raises(InvalidArgument, match="--processes"):
        k8s.pytorchjob("dist", "ml", queued, 0)
    q = k8s.queue("team-a", quota=4, over_quota_weight=2, parent="veil")
    assert q["spec"]["resources"]["gpu"] == {"quota": 4, "overQuotaWeight": 2, "limit": -1}
