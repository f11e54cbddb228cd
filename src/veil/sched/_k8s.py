"""The projects and jobs as KAI-Scheduler objects, for a Kubernetes cluster.

- One Queue (scheduling.run.ai/v2) per project, child of a `veil` parent queue (KAI schedules
  only to queues that have a parent): gpu quota, overQuotaWeight and limit (-1: none); CPU and
  memory unlimited.
- One Pod per job process, for `schedulerName: kai-scheduler`, labelled with its queue
  (`kai.scheduler/queue`), with the `gpu-fraction` annotation for fractions and an
  `nvidia.com/gpu` limit for whole GPUs; interactive jobs get KAI's non-preemptible `build`
  priority class, training jobs `train`. Multi-process jobs are written as one pod per rank with
  RANK and WORLD_SIZE; on Kubernetes, gang placement comes from running them as a PyTorchJob or
  MPIJob, which KAI groups itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from veil.errors import InvalidArgument

_K8S = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def queues(projects, capacity: float) -> list[dict]:
    unlimited = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    out = [{"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
            "metadata": {"name": "veil"},
            "spec": {"displayName": "veil projects", "resources": {
                "gpu": {"quota": capacity, "overQuotaWeight": 1, "limit": -1},
                "cpu": dict(unlimited), "memory": dict(unlimited)}}}]
    for p in projects:
        out.append({"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
                    "metadata": {"name": p.name},
                    "spec": {"displayName": p.name, "parentQueue": "veil", "resources": {
                        "gpu": {"quota": p.quota, "overQuotaWeight": p.over_quota_weight,
                                "limit": -1 if p.limit is None else p.limit},
                        "cpu": dict(unlimited), "memory": dict(unlimited)}}})
    return out


def pods(job, *, namespace: str, image: str) -> list[dict]:
    out = []
    for rank in range(job.processes):
        name = job.name if job.processes == 1 else f"{job.name}-{rank}"
        container: dict = {"name": "job", "image": image, "command": list(job.command)}
        meta: dict = {"name": name, "namespace": namespace,
                      "labels": {"kai.scheduler/queue": job.project, "veil/job": job.name}}
        if job.gpus < 1:
            meta["annotations"] = {"gpu-fraction": f"{job.gpus:g}"}
        else:
            container["resources"] = {"limits": {"nvidia.com/gpu": int(job.gpus)}}
        if job.processes > 1:
            container["env"] = [{"name": "RANK", "value": str(rank)},
                                {"name": "WORLD_SIZE", "value": str(job.processes)}]
        if job.port:
            container["ports"] = [{"containerPort": job.port}]
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                    "spec": {"schedulerName": "kai-scheduler",
                             "priorityClassName": "build" if job.interactive else "train",
                             "restartPolicy": "Never", "containers": [container]}})
    return out


def emit(directory: Path, *, jobs: bool = True, namespace: str = "default",
         image: str = "veil:latest", home=None) -> list[Path]:
    """Write queues.yaml and, with `jobs`, pods-<job>.yaml for every active job."""
    import yaml

    from veil.sched import _api

    if not _K8S.fullmatch(namespace):
        raise InvalidArgument(f"{namespace!r} is not a valid Kubernetes namespace")
    with _api.transaction(home) as db:
        projects = list(_api._projects(db).values())
        capacity = float(sum(n.gpus for n in _api._nodes(db)))
    for p in projects:
        if not _K8S.fullmatch(p.name):
            raise InvalidArgument(f"project {p.name!r} is not a valid Kubernetes name")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = [directory / "queues.yaml"]
    files[0].write_text(yaml.safe_dump_all(queues(projects, capacity), sort_keys=False))
    if jobs:
        for j in _api.list_jobs(home=home):
            f = directory / f"pods-{j.name}.yaml"
            f.write_text(yaml.safe_dump_all(pods(j, namespace=namespace, image=image),
                                            sort_keys=False))
            files.append(f)
    return files
