"""`veil job|project|node|scheduler|report`: fair GPU sharing (TR-4858), thin wiring over
veil.sched. `veil submit|list|describe|why|logs|delete` are hidden aliases of the `veil job`
commands, kept for existing scripts."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from veil.cli._render import console, err_console, print_json, when

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
job_app = typer.Typer(help="Jobs: submit, list, describe, why, logs, delete.",
                      no_args_is_help=True)
project_app = typer.Typer(help="Projects: GPU quotas for teams.", no_args_is_help=True)
node_app = typer.Typer(help="The node inventory the scheduler places jobs on.",
                       no_args_is_help=True)
scheduler_app = typer.Typer(help="The scheduling agent.", no_args_is_help=True)


def _g(x: float | None) -> str:
    from veil.sched import gpus_text

    return "-" if x is None else gpus_text(x)


def _at(t: float | None) -> str:
    return "-" if t is None else when(datetime.fromtimestamp(t))


def _status(j) -> str:
    """A job's state as `veil job list` shows it: Running, Pending, Completed, Failed (exit 3),
    Deleted."""
    if j.state == "failed" and j.exit_code is not None:
        return f"Failed (exit {j.exit_code})"
    return j.state.title()


def _job_json(j) -> dict:
    return {**j.__dict__, "type": j.type, "service_url": j.service_url()}


@project_app.command("create")
def project_create(
    name: str = typer.Argument(..., help="Project name, e.g. team-a."),
    gpus: float = typer.Option(..., "--gpus", "-g", help="Guaranteed quota (fractions allowed)."),
    over_quota_weight: float = typer.Option(None, "--over-quota-weight", help="Share of spare "
                                            "GPUs (default: the quota)."),
    limit: float = typer.Option(None, "--limit", help="Most GPUs the project may hold."),
    node: list[str] = typer.Option(None, "--node", help="Node affinity (repeatable)."),
    interactive_time_limit: float = typer.Option(None, "--interactive-time-limit",
                                                 help="Seconds an interactive job may run."),
    as_json: bool = JSON,
) -> None:
    """Create a project with a GPU quota."""
    from veil import sched

    warning = sched.create_project(name, gpus, weight=over_quota_weight, limit=limit,
                                   nodes=node or None,
                                   interactive_time_limit=interactive_time_limit)
    if warning:
        err_console.print(f"warning: {warning}", markup=False)
    if as_json:
        return print_json(sched.get_project(name))
    console.print(f"Project '{name}' created with a quota of {_g(gpus)} GPU(s).", markup=False)


@project_app.command("list")
def project_list(as_json: bool = JSON) -> None:
    """Projects with quota, fair share and GPUs allocated now."""
    from veil import sched

    rows = sched.list_projects()
    if as_json:
        return print_json(rows)
    if not rows:
        console.print("No projects (veil project create NAME --gpus N).", markup=False)
        return
    t = Table("PROJECT", "QUOTA", "WEIGHT", "LIMIT", "ALLOCATED", "FAIR SHARE", "RUNNING",
              "PENDING", "NODES", box=None)
    for r in rows:
        t.add_row(r.name, _g(r.quota), _g(r.over_quota_weight), _g(r.limit),
                  f"{_g(r.allocated)}/{_g(r.quota)}", _g(r.fair_share), str(r.running),
                  str(r.pending), ",".join(r.nodes) if r.nodes else "any")
    console.print(t)


@project_app.command("delete")
def project_delete(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Delete a project without active jobs."""
    from veil import sched

    sched.delete_project(name)
    if as_json:
        return print_json({"deleted": name})
    console.print(f"Project '{name}' deleted.", markup=False)


@node_app.command("add")
def node_add(
    name: str = typer.Argument(..., help="Node name, e.g. dgx1-1."),
    gpus: int = typer.Option(..., "--gpus", "-g", help="GPUs on the node (simulated ones are "
                             "fine on a CPU machine)."),
    as_json: bool = JSON,
) -> None:
    """Add a node to the inventory."""
    from veil import sched

    node = sched.add_node(name, gpus)
    if as_json:
        return print_json(node)
    console.print(f"Node '{name}' added with {gpus} GPU(s).", markup=False)


@node_app.command("list")
def node_list(as_json: bool = JSON) -> None:
    """Nodes and their GPUs in use."""
    from veil import sched

    rows = sched.list_nodes()
    if as_json:
        return print_json(rows)
    if not rows:
        console.print("No nodes (veil node add NAME --gpus N).", markup=False)
        return
    t = Table("NODE", "GPUS", "ALLOCATED", "PER GPU", box=None)
    for r in rows:
        t.add_row(r["name"], str(r["gpus"]), _g(r["allocated"]),
                  " ".join(_g(u) for u in r["per_gpu"]))
    console.print(t)


@node_app.command("delete")
def node_delete(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Remove a node no job runs on."""
    from veil import sched

    sched.delete_node(name)
    if as_json:
        return print_json({"deleted": name})
    console.print(f"Node '{name}' deleted.", markup=False)


@job_app.command("submit", short_help="Submit a job: train (preemptible) or interactive.")
def submit(
    name: str = typer.Argument(..., help="Job name."),
    project: str = typer.Option(..., "--project", "-p", help="The project it counts against."),
    gpus: float = typer.Option(1.0, "--gpus", "-g", help="GPUs per process: a fraction from "
                               "0.01 to 1, or whole GPUs (up to 1024)."),
    interactive: bool = typer.Option(False, "--interactive", help="Non-preemptible; must fit "
                                     "the project's quota."),
    port: int = typer.Option(None, "--port", help="Interactive: the port its service listens "
                             "on (shown as the service URL)."),
    processes: int = typer.Option(1, "--processes", help="Processes, each with --gpus, placed "
                                  "all at once (like runai submit-mpi)."),
    as_json: bool = JSON,
    command: list[str] = typer.Argument(None, help="The command, after --."),
) -> None:
    """Submit a job: train (preemptible, may borrow idle GPUs) or interactive. The agent (veil
    scheduler run) starts it once the policy gives it GPUs."""
    from veil import sched

    j = sched.submit(name, project, gpus, command or [], interactive=interactive, port=port,
                     processes=processes)
    if as_json:
        return print_json(_job_json(j))
    console.print(f"The job '{j.name}' has been submitted successfully "
                  f"({j.state}: {j.reason}).", markup=False)


@job_app.command("list", short_help="Active jobs, and those that ended in the last hour.")
def list_(
    project: str = typer.Option(None, "--project", "-p", help="Only this project's jobs."),
    all_states: bool = typer.Option(False, "--all", help="Every job: also those that ended "
                                    "over an hour ago, and deleted ones."),
    as_json: bool = JSON,
) -> None:
    """Jobs, as `runai list`: running and pending ones, and those that ended in the last hour,
    with status, node, type, project, GPUs and service URL. A last line says how many older or
    deleted jobs are not shown; --all shows them. --json lists the same jobs as the table."""
    from veil import sched

    if all_states:
        rows, hidden = sched.list_jobs(project=project, all_states=True), None
    else:
        recent = sched.recent_jobs(project=project)
        rows, hidden = recent.jobs, recent
    if as_json:
        return print_json([_job_json(r) for r in rows])
    if rows:
        t = Table("NAME", "STATUS", "NODE", "TYPE", "PROJECT", "GPUs", "PREEMPTED",
                  "SERVICE URL", box=None)
        for r in rows:
            gp = _g(r.gpus) + (f" x {r.processes}" if r.processes > 1 else "")
            t.add_row(r.name, _status(r), r.nodes, r.type, r.project, gp, str(r.preemptions),
                      r.service_url() or "")
        console.print(t)
    else:
        console.print("No jobs.")
    if hidden is not None and (hidden.older or hidden.deleted):
        parts = []
        if hidden.older:
            parts.append(f"{hidden.older} that ended over an hour ago")
        if hidden.deleted:
            parts.append(f"{hidden.deleted} deleted")
        console.print(f"Not shown: {' and '.join(parts)} (veil job list --all shows every job).",
                      markup=False)


@job_app.command("describe")
def describe(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """One job in full, with why it is where it is."""
    from veil import sched

    j = sched.get_job(name)
    reason = sched.why(name)
    if as_json:
        return print_json({**_job_json(j), "why": reason})
    for k, v in (("Name", j.name), ("Project", j.project), ("Type", j.type),
                 ("GPUs", f"{_g(j.gpus)} x {j.processes}"), ("Status", _status(j)),
                 ("Placement", j.where), ("Preemptions", j.preemptions),
                 ("Command", shlex.join(j.command)), ("PID", j.pid or "-"),
                 ("Exit code", "-" if j.exit_code is None else j.exit_code),
                 ("Submitted", _at(j.submitted)), ("Started", _at(j.started)),
                 ("Ended", _at(j.ended)), ("Service URL", j.service_url() or "-")):
        console.print(f"{k}: {v}", markup=False)
    console.print(f"Why: {reason}", markup=False)


@job_app.command("why")
def why(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Why a job is pending, was preempted, or runs where it does."""
    from veil import sched

    reason = sched.why(name)
    if as_json:
        return print_json({"name": name, "why": reason})
    console.print(reason, markup=False)


@job_app.command("delete", short_help="Delete jobs; the agent stops running ones.")
def delete(names: list[str] = typer.Argument(None, help="Job names."),
           project: str = typer.Option(None, "--project", "-p", help="The project the jobs "
                                       "must be in (runai's syntax)."),
           all_jobs: bool = typer.Option(False, "--all", help="Every pending or running job "
                                         "(of --project, if given)."),
           as_json: bool = JSON) -> None:
    """Delete jobs; their GPUs are freed now. The agent stops running ones: SIGTERM, then
    SIGKILL after its --grace."""
    from veil import sched

    rows = sched.delete_jobs(names or [], project=project, all_jobs=all_jobs)
    if as_json:
        return print_json({"deleted": [r.name for r in rows]})
    for r in rows:
        console.print(f"The job '{r.name}' has been deleted.", markup=False)
    if not rows:
        console.print("No active jobs to delete.")


@job_app.command("logs")
def logs(name: str = typer.Argument(...),
         lines: int = typer.Option(50, "--tail", "-n", help="Lines from the end (0: none).")
         ) -> None:
    """A job's output (written by the agent)."""
    from veil import sched

    out = sched.job_log(name, lines)
    if out is None:
        console.print(f"(no output yet: {sched.log_path(name)})", markup=False)
        return
    for line in out:
        print(line)


# `veil submit` ... `veil delete`: the `veil job` commands under their first names, hidden
JOB_ALIASES = {"submit": submit, "list": list_, "describe": describe, "why": why,
               "delete": delete, "logs": logs}


def report(
    plot: Path = typer.Option(None, "--plot", help="Write GPUs allocated per project over time "
                              "as a PNG."),
    as_json: bool = JSON,
) -> None:
    """GPUs allocated per project over time (the seed's analytics view)."""
    from veil import sched

    hist = sched.history()
    if plot is not None:
        from veil.errors import require_extra

        require_extra("matplotlib", "torch", "--plot")
        sched.plot_history(hist, plot)
    if as_json:
        return print_json([{"t": t, "project": p, "gpus": g} for t, p, g in hist])
    if plot is not None:
        console.print(f"wrote {plot}", markup=False)
    rows = sched.list_projects()
    t = Table("PROJECT", "GPUs ALLOCATED", "QUOTA", "CHANGES", box=None)
    for r in rows:
        t.add_row(r.name, f"{_g(r.allocated)}/{_g(r.quota)}", _g(r.quota),
                  str(sum(1 for _, p, _ in hist if p == r.name)))
    console.print(t)


@scheduler_app.command("run", short_help="The agent: starts, preempts and restarts jobs.")
def scheduler_run(
    interval: float = typer.Option(0.5, "--interval", help="Seconds between cycles (0.05 to "
                                   "3600)."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds from SIGTERM to SIGKILL when a "
                                "job is preempted or deleted (0 to 3600)."),
    once: bool = typer.Option(False, "--once", help="One reconciliation, then exit."),
) -> None:
    """The agent: starts allocated jobs as processes, preempts and restarts them (one agent per
    home). Stop it with Ctrl-C or kill: it finishes stopping the jobs being deleted or
    preempted, then leaves. Running jobs outlive it: veil job delete --all first stops them."""
    from veil import sched

    sched.Agent(grace=grace).run(interval=interval, once=once,
                                 log=lambda m: err_console.print(m, markup=False))
