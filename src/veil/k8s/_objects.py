"""The Kubernetes objects veil writes: Job, PyTorchJob, DaskJob, Pod, VolumeSnapshot, the restore
PVC and KAI-Scheduler Queues, with the container, volume and GPU pieces they share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.errors import InvalidArgument

SCHEDULER = "kai-scheduler"
QUEUE_LABEL = "kai.scheduler/queue"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123 label
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_name(value: str | None, what: str, *, subdomain: bool = False) -> str:
    """`value` if it is a valid Kubernetes name, else a one-line error naming `what`: an
    RFC 1123 label (at most 63 characters: namespaces, jobs, pods, label values), or with
    `subdomain` an RFC 1123 subdomain (at most 253: PVCs, snapshots, classes)."""
    most = 253 if subdomain else 63
    pattern = _DNS_SUBDOMAIN if subdomain else _DNS_LABEL
    if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > most:
        raise InvalidArgument(f"{value!r} is not a valid Kubernetes name for the {what} "
                              f"(lower-case letters, digits and '-', at most {most})")
    return value


@dataclass(frozen=True)
class Target:
    """Where and how a solution's job runs on a cluster: the namespace, the container image,
    GPUs per process, and the veil project whose KAI queue schedules it (None: the default
    scheduler)."""

    namespace: str = "default"
    image: str = "veil:latest"
    gpus: int = 0
    project: str | None = None

    def check(self) -> Target:
        check_name(self.namespace, "namespace")
        if self.project is not None:
            check_name(self.project, "project (its KAI queue)")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise InvalidArgument(f"--gpus must be a whole number >= 0, not {self.gpus!r}")
        if not self.image or any(c.isspace() for c in self.image):
            raise InvalidArgument(f"{self.image!r} is not a container image reference")
        return self


def env(values: Mapping[str, Any]) -> list[dict]:
    """Environment variables as a container's `env` list (values as strings; bools lower-case,
    as the seed's USE_WORKERS=true)."""
    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return [{"name": k, "value": text(v)} for k, v in values.items() if v is not None]


def pvc_volume(name: str, claim: str) -> dict:
    claim = check_name(claim, "PVC", subdomain=True)
    return {"name": name, "persistentVolumeClaim": {"claimName": claim}}


def shm_volume(name: str = "dshm") -> dict:
    """A memory-backed /dev/shm (PyTorch's loader workers need more than the default 64 MiB)."""
    return {"name": name, "emptyDir": {"medium": "Memory"}}


def container(name: str, image: str, command: Sequence[str], *, env_vars: Mapping[str, Any]
              | None = None, mounts: Mapping[str, str] | None = None, gpus: float = 0,
              ports: Iterable[int] = ()) -> dict:
    """A container running `command`, with `mounts` (volume name -> path) and `gpus` whole
    GPUs as an nvidia.com/gpu limit (fractions are an annotation of the pod: see `pod`)."""
    c: dict = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
               "command": [str(a) for a in command]}
    if env_vars:
        c["env"] = env(env_vars)
    if gpus >= 1:
        c["resources"] = {"limits": {"nvidia.com/gpu": int(gpus)}}
    if ports:
        c["ports"] = [{"containerPort": int(p)} for p in ports]
    if mounts:
        c["volumeMounts"] = [{"name": n, "mountPath": p} for n, p in mounts.items()]
    return c


def pod_template(containers: Sequence[dict], volumes: Sequence[dict] = (), *,
                 project: str | None = None, labels: Mapping[str, str] | None = None,
                 restart_policy: str = "Never") -> dict:
    """A pod template; with `project`, scheduled by KAI into that project's queue."""
    meta: dict = {"labels": dict(labels or {})}
    spec: dict = {}
    if project is not None:
        meta["labels"][QUEUE_LABEL] = check_name(project, "project (its KAI queue)")
        spec["schedulerName"] = SCHEDULER
    spec["restartPolicy"] = restart_policy
    spec["containers"] = [dict(c) for c in containers]
    if volumes:
        spec["volumes"] = [dict(v) for v in volumes]
    out: dict = {"spec": spec}
    if meta["labels"]:
        out = {"metadata": meta, **out}
    return out


def job(name: str, namespace: str, template: dict, *, backoff_limit: int = 5,
        project: str | None = None) -> dict:
    """A batch/v1 Job running `template` (see `pod_template`)."""
    meta: dict = {"name": check_name(name, "job"), "namespace": check_name(namespace,
                                                                          "namespace")}
    if project is not None:
        meta["labels"] = {QUEUE_LABEL: project}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": backoff_limit, "template": template}}


def pytorchjob(name: str, namespace: str, template: dict, processes: int, *,
               project: str | None = None) -> dict:
    """A Kubeflow PyTorchJob: a Master and processes-1 Workers from one template, each
    restartPolicy Never (a replica that dies fails the job clearly, as locally)."""
    if not isinstance(processes, int) or processes < 1:
        raise InvalidArgument(f"--processes must be a whole number >= 1, not {processes!r}")
    import copy

    specs = {"Master": {"replicas": 1, "restartPolicy": "Never",
                        "template": copy.deepcopy(template)}}
    if processes > 1:
        specs["Worker"] = {"replicas": processes - 1, "restartPolicy": "Never",
                           "template": copy.deepcopy(template)}
    meta: dict = {"name": check_name(name, "job"), "namespace": check_name(namespace,
                                                                          "namespace")}
    if project is not None:
        meta["labels"] = {QUEUE_LABEL: project}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta,
            "spec": {"pytorchReplicaSpecs": specs}}


DASK_OPERATOR_API = "kubernetes.dask.org/v1"
DASK_SCHEDULER_PORT, DASK_DASHBOARD_PORT = 8786, 8787  # the Dask scheduler's own defaults


def daskjob(name: str, namespace: str, job_container: dict, *, image: str, workers: int,
            worker_threads: int = 1, worker_memory: str | None = None,
            volumes: Sequence[dict] = (), mounts: Mapping[str, str] | None = None,
            gpus: int = 0, project: str | None = None) -> dict:
    """A DaskJob of the Dask Kubernetes operator: `job_container` runs once its DaskCluster (a
    scheduler with its Service, and `workers` worker pods) is up; the operator gives it
    DASK_SCHEDULER_ADDRESS and deletes the cluster when the job ends. `volumes` are mounted
    (`mounts`: volume name -> path) in the job and every worker, which read the data
    themselves. With `project`, every pod is scheduled by KAI into that project's queue."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"--workers must be a whole number >= 1, not {workers!r}")
    if isinstance(worker_threads, bool) or not isinstance(worker_threads, int) or \
            worker_threads < 1:
        raise InvalidArgument(f"worker threads must be a whole number >= 1, not "
                              f"{worker_threads!r}")
    name = check_name(name, "Dask job")
    namespace = check_name(namespace, "namespace")
    cluster = f"{name}-cluster"  # the operator names the job's DaskCluster so
    if len(cluster) > 63:
        raise InvalidArgument(f"the Dask job's name {name!r} is too long: its cluster "
                              f"{cluster!r} must be at most 63 characters")

    def pod(containers: list[dict], restart: str) -> dict:
        import copy

        t = copy.deepcopy(pod_template(containers, volumes, project=project,
                                       restart_policy=restart))  # no YAML anchors
        return t if "metadata" in t else {"spec": t["spec"]}

    worker_args = ["dask", "worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads",
                   str(worker_threads), "--dashboard", "--dashboard-address", "8788"]
    if worker_memory is not None:
        worker_args += ["--memory-limit", worker_memory]
    worker = container("worker", image, worker_args, mounts=mounts, gpus=gpus, ports=[8788])
    scheduler = container("scheduler", image, ["dask", "scheduler"],
                          ports=[DASK_SCHEDULER_PORT, DASK_DASHBOARD_PORT])
    scheduler["ports"] = [{"name": "tcp-comm", "containerPort": DASK_SCHEDULER_PORT,
                           "protocol": "TCP"},
                          {"name": "http-dashboard", "containerPort": DASK_DASHBOARD_PORT,
                           "protocol": "TCP"}]
    for probe, delay, period in (("readinessProbe", 5, 10), ("livenessProbe", 15, 20)):
        scheduler[probe] = {"httpGet": {"port": "http-dashboard", "path": "/health"},
                            "initialDelaySeconds": delay, "periodSeconds": period}
    service = {"type": "ClusterIP",
               "selector": {"dask.org/cluster-name": cluster,
                            "dask.org/component": "scheduler"},
               "ports": [{"name": "tcp-comm", "protocol": "TCP", "port": DASK_SCHEDULER_PORT,
                          "targetPort": "tcp-comm"},
                         {"name": "http-dashboard", "protocol": "TCP",
                          "port": DASK_DASHBOARD_PORT, "targetPort": "http-dashboard"}]}
    meta: dict = {"name": name, "namespace": namespace}
    if project is not None:
        meta["labels"] = {QUEUE_LABEL: project}
    return {"apiVersion": DASK_OPERATOR_API, "kind": "DaskJob", "metadata": meta,
            "spec": {"job": pod([dict(job_container, name="job")], "Never"),
                     "cluster": {"spec": {
                         "worker": {"replicas": workers, **pod([worker], "Always")},
                         "scheduler": {**pod([scheduler], "Always"), "service": service}}}}}


def pod(name: str, namespace: str, container_spec: dict, *, project: str, gpus: float,
        interactive: bool, labels: Mapping[str, str] | None = None) -> dict:
    """A bare Pod for KAI: a fraction of a GPU is the `gpu-fraction` annotation, interactive
    pods get KAI's non-preemptible `build` priority class, others `train`."""
    meta: dict = {"name": check_name(name, "pod"), "namespace": check_name(namespace,
                                                                          "namespace"),
                  "labels": {QUEUE_LABEL: project, **(labels or {})}}
    if 0 < gpus < 1:
        meta["annotations"] = {"gpu-fraction": f"{gpus:g}"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"schedulerName": SCHEDULER,
                     "priorityClassName": "build" if interactive else "train",
                     "restartPolicy": "Never", "containers": [container_spec]}}


def queue(name: str, *, quota: float, over_quota_weight: float = 1, limit: float | None = None,
          parent: str | None = None, display_name: str | None = None) -> dict:
    """A KAI-Scheduler Queue (scheduling.run.ai/v2) with a GPU quota, overQuotaWeight and limit
    (-1: none); CPU and memory unlimited."""
    unlimited = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    spec: dict = {"displayName": display_name or name}
    if parent is not None:
        spec["parentQueue"] = parent
    spec["resources"] = {"gpu": {"quota": quota, "overQuotaWeight": over_quota_weight,
                                 "limit": -1 if limit is None else limit},
                         "cpu": dict(unlimited), "memory": dict(unlimited)}
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
            "metadata": {"name": check_name(name, "queue")}, "spec": spec}


def volume_snapshot(name: str, namespace: str, *, pvc: str, snapshot_class: str) -> dict:
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": check_name(name, "volume snapshot", subdomain=True),
                         "namespace": check_name(namespace, "namespace")},
            "spec": {"volumeSnapshotClassName": check_name(snapshot_class, "snapshot class",
                                                           subdomain=True),
                     "source": {"persistentVolumeClaimName": check_name(pvc, "PVC",
                                                                        subdomain=True)}}}


def restore_pvc(name: str, namespace: str, *, snapshot: str, storage_class: str,
                size: str = "100Gi") -> dict:
    """A PVC whose content is restored from VolumeSnapshot `snapshot`."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": check_name(name, "restored PVC", subdomain=True),
                         "namespace": check_name(namespace, "namespace")},
            "spec": {"storageClassName": check_name(storage_class, "storage class",
                                                    subdomain=True),
                     "dataSource": {"name": snapshot, "kind": "VolumeSnapshot",
                                    "apiGroup": "snapshot.storage.k8s.io"},
                     "accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": size}}}}


def check_folder(directory: str | Path) -> Path:
    """`directory` as a Path if manifests can be written there (a folder, or nothing yet)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InvalidArgument(f"{directory} is not a folder: name a folder for the manifests")
    return directory


def write(directory: str | Path, documents: Mapping[str, dict | Sequence[dict]]) -> list[Path]:
    """Write each file name -> object (or list of objects, as a multi-document YAML) into
    `directory`; returns the files in order."""
    import yaml

    directory = check_folder(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for name, docs in documents.items():
        f = directory / name
        if isinstance(docs, Mapping):
            text = yaml.safe_dump(dict(docs), sort_keys=False, width=100)
        else:
            text = yaml.safe_dump_all(list(docs), sort_keys=False, width=100)
        tmp = f.with_name(f".{f.name}.tmp")
        tmp.write_text(text)
        tmp.replace(f)
        files.append(f)
    return files
