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

from pathlib import Path

from veil import k8s


def queues(projects, capacity: float) -> list[dict]:
    out = [k8s.queue("veil", quota=capacity, display_name="veil projects")]
    for p in projects:
        out.append(k8s.queue(k8s.check_name(p.name, f"project {p.name!r}"), quota=p.quota,
                             over_quota_weight=p.over_quota_weight, limit=p.limit,
                             parent="veil"))
    return out


def pods(job, *, namespace: str, image: str) -> list[dict]:
    out = []
    for rank in range(job.processes):
        name = job.name if job.processes == 1 else f"{job.name}-{rank}"
        env = {"RANK": rank, "WORLD_SIZE": job.processes} if job.processes > 1 else None
        c = k8s.container("job", image, list(job.command), env_vars=env,
                          gpus=job.gpus if job.gpus >= 1 else 0,
                          ports=[job.port] if job.port else ())
        out.append(k8s.pod(name, namespace, c, project=job.project, gpus=job.gpus,
                           interactive=job.interactive, labels={"veil/job": job.name}))
    return out


def emit(directory: Path, *, jobs: bool = True, namespace: str = "default",
         image: str = "veil:latest", home=None) -> list[Path]:
    """Write queues.yaml and, with `jobs`, pods-<job>.yaml for every active job."""
    from veil.sched import _api

    k8s.check_name(namespace, "namespace")
    with _api.transaction(home) as db:
        projects = list(_api._projects(db).values())
        capacity = float(sum(n.gpus for n in _api._nodes(db)))
    docs: dict = {"queues.yaml": queues(projects, capacity)}
    if jobs:
        for j in _api.list_jobs(home=home):
            docs[f"pods-{j.name}.yaml"] = pods(j, namespace=namespace, image=image)
    return k8s.write(directory, docs)
