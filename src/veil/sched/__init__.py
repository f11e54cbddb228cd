"""Fair GPU sharing (TR-4858): projects with quotas, fractional GPUs, over-quota borrowing and
fair reclaim, decided by the pure policy (`schedule`, `fair_shares`) and kept in SQLite; the
`Agent` runs the jobs as processes. `emit_k8s` writes the projects and jobs as KAI-Scheduler
objects, `plot_history` draws the allocation over time.

Importing this package is cheap: the Kubernetes export and the plot load on first use."""

from importlib import import_module

from veil.sched._agent import Agent, log_path
from veil.sched._api import (
    JobRow,
    ProjectRow,
    RecentJobs,
    add_node,
    create_project,
    delete_jobs,
    delete_node,
    delete_project,
    get_job,
    get_project,
    history,
    job_log,
    list_jobs,
    list_nodes,
    list_projects,
    recent_jobs,
    submit,
    why,
)
from veil.sched._policy import (
    Cluster,
    Cycle,
    Job,
    Node,
    Preemption,
    Project,
    fair_shares,
    gpus_text,
    placement_text,
    schedule,
)

# name -> (module, attribute), imported on first use
_LAZY = {"emit_k8s": ("_k8s", "emit"), "plot_history": ("_report", "plot_history")}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    return getattr(import_module(f"{__name__}.{module}"), attr)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Agent", "Cluster", "Cycle", "Job", "JobRow", "Node", "Preemption", "Project",
           "ProjectRow", "RecentJobs", "add_node", "create_project", "delete_jobs",
           "delete_node", "delete_project", "emit_k8s", "fair_shares", "get_job", "get_project",
           "gpus_text", "history", "job_log", "list_jobs", "list_nodes", "list_projects",
           "log_path", "placement_text", "plot_history", "recent_jobs", "schedule", "submit",
           "why"]
