"""Fair GPU sharing (TR-4858): projects with quotas, fractional GPUs, over-quota borrowing and
fair reclaim, decided by `_policy` and kept in SQLite by `_api`; the agent (`_agent`) runs the
jobs as processes. Imports nothing heavy."""

from veil.sched._api import (
    JobRow,
    ProjectRow,
    add_node,
    create_project,
    delete_jobs,
    delete_node,
    delete_project,
    get_job,
    history,
    list_jobs,
    list_nodes,
    list_projects,
    submit,
    why,
)
from veil.sched._policy import Job, Node, Project, fair_shares, schedule

__all__ = ["Job", "JobRow", "Node", "Project", "ProjectRow", "add_node", "create_project",
           "delete_jobs", "delete_node", "delete_project", "fair_shares", "get_job", "history",
           "list_jobs", "list_nodes", "list_projects", "schedule", "submit", "why"]
