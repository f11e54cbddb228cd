"""One emitter of Kubernetes objects for every solution and for veil.sched.

Builders return plain dicts (the objects as `kubectl apply` reads them); `write` stores them as
YAML. A job given a veil project lands in that project's KAI-Scheduler queue: the pod template
gets `schedulerName: kai-scheduler` and the `kai.scheduler/queue` label. veil never calls the
Kubernetes API. Depends on nothing else in veil but its errors; PyYAML is a core dependency.
"""

from veil.k8s._objects import (
    DASK_OPERATOR_API,
    QUEUE_LABEL,
    SCHEDULER,
    Target,
    check_folder,
    check_name,
    container,
    daskjob,
    env,
    job,
    pod,
    pod_template,
    pvc_volume,
    pytorchjob,
    queue,
    restore_pvc,
    shm_volume,
    volume_snapshot,
    write,
)

__all__ = [
    "DASK_OPERATOR_API",
    "QUEUE_LABEL",
    "SCHEDULER",
    "Target",
    "check_folder",
    "check_name",
    "container",
    "daskjob",
    "env",
    "job",
    "pod",
    "pod_template",
    "pvc_volume",
    "pytorchjob",
    "queue",
    "restore_pvc",
    "shm_volume",
    "volume_snapshot",
    "write",
]
