"""`veil project|node|submit|list|describe|logs|delete|why|scheduler|report`: fair GPU sharing
(TR-4858), thin wiring over veil.sched."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli._render import console, err_console, print_json

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
project_app = typer.Typer(help="Projects: GPU quotas for teams.", no_args_is_help=True)
node_app = typer.Typer(help="The node inventory the scheduler places jobs on.",
                       no_args_is_help=True)
scheduler_app = typer.Typer(help="The scheduling agent.", no_args_is_help=True)


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


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
) -> None:
    """Create a project with a GPU quota."""
    from veil import sched

    warning = sched.create_project(name, gpus, weight=over_quota_weight, limit=limit,
                                   nodes=node or None,
                                   interactive_time_limit=interactive_time_limit)
    console.print(f"Project '{name}' created with a quota of {gpus:g} GPU(s).", markup=False)
    if warning:
        err_console.print(f"warning: {warning}", markup=False)


@project_app.command("list")
def project_list(as_json: bool = JSON) -> None:
    """Projects with quota, fair share and GPUs allocated now."""
    from veil import sched

    rows = sched.list_projects()
    if as_json:
        return print_json(rows)
    t = Table("PROJECT", "QUOTA", "WEIGHT", "LIMIT", "ALLOCATED", "FAIR SHARE", "RUNNING",
              "PENDING", "NODES", box=None)
    for r in rows:
        t.add_row(r.name, _g(r.quota), _g(r.over_quota_weight), _g(r.limit),
                  f"{r.allocated:g}/{r.quota:g}", _g(r.fair_share), str(r.running),
                  str(r.pending), ",".join(r.nodes) if r.nodes else "any")
    console.print(t)


@project_app.command("delete")
def project_delete(name: str = typer.Argument(...)) -> None:
    """Delete a project without active jobs."""
    from veil import sched

    sched.delete_project(name)
    console.print(f"Project '{name}' deleted.", markup=False)


@node_app.command("add")
def node_add(
    name: str = typer.Argument(..., help="Node name, e.g. dgx1-1."),
    gpus: int = typer.Option(..., "--gpus", "-g", help="GPUs on the node (simulated ones are "
                             "fine on a CPU machine)."),
) -> None:
    """Add a node to the inventory."""
    from veil import sched

    sched.add_node(name, gpus)
    console.print(f"Node '{name}' added with {gpus} GPU(s).", markup=False)


@node_app.command("list")
def node_list(as_json: bool = JSON) -> None:
    """Nodes and their GPUs in use."""
    from veil import sched

    rows = sched.list_nodes()
    if as_json:
        return print_json(rows)
    t = Table("NODE", "GPUS", "ALLOCATED", "PER GPU", box=None)
    for r in rows:
        t.add_row(r["name"], str(r["gpus"]), f"{r['allocated']:g}",
                  " ".join(f"{u:g}" for u in r["per_gpu"]))
    console.print(t)


@node_app.command("delete")
def node_delete(name: str = typer.Argument(...)) -> None:
    """Remove a node no job runs on."""
    from veil import sched

    sched.delete_node(name)
    console.print(f"Node '{name}' deleted.", markup=False)


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
    command: list[str] = typer.Argument(None, help="The command, after --."),
) -> None:
    """Submit a job: train (preemptible, may borrow idle GPUs) or interactive."""
    from veil import sched

    j = sched.submit(name, project, gpus, command or [], interactive=interactive, port=port,
                     processes=processes)
    console.print(f"The job '{j.name}' has been submitted successfully "
                  f"({j.state}: {j.reason}).", markup=False)


def list_(
    project: str = typer.Option(None, "--project", "-p", help="Only this project's jobs."),
    all_states: bool = typer.Option(False, "--all", help="Also finished and deleted jobs."),
    as_json: bool = JSON,
) -> None:
    """Jobs, as `runai list`: status, node, type, project, GPUs, service URL (for Kubernetes:
    veil export k8s)."""
    from veil import sched

    rows = sched.list_jobs(project=project, all_states=all_states)
    if as_json:
        return print_json([{**r.__dict__, "type": r.type, "service_url": r.service_url()}
                           for r in rows])
    if not rows:
        console.print("No jobs.")
        return
    t = Table("NAME", "STATUS", "NODE", "TYPE", "PROJECT", "GPUs", "PREEMPTED", "SERVICE URL",
              box=None)
    for r in rows:
        status = {"running": "Running", "pending": "Pending"}.get(r.state, r.state.title())
        gp = f"{r.gpus:g}" + (f" x {r.processes}" if r.processes > 1 else "")
        t.add_row(r.name, status, r.nodes, r.type, r.project, gp, str(r.preemptions),
                  r.service_url() or "")
    console.print(t)


def describe(name: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """One job in full, with why it is where it is."""
    from veil import sched

    j = sched.get_job(name)
    if as_json:
        return print_json({**j.__dict__, "why": sched.why(name)})
    for k, v in (("Name", j.name), ("Project", j.project), ("Type", j.type),
                 ("GPUs", f"{j.gpus:g} x {j.processes}"), ("Status", j.state),
                 ("Placement", j.placement or "-"), ("Preemptions", j.preemptions),
                 ("Command", " ".join(j.command)), ("PID", j.pid or "-"),
                 ("Exit code", "-" if j.exit_code is None else j.exit_code),
                 ("Service URL", j.service_url() or "-")):
        console.print(f"{k}: {v}", markup=False)
    console.print(f"Why: {sched.why(name)}", markup=False)


def why(name: str = typer.Argument(...)) -> None:
    """Why a job is pending, was preempted, or runs where it does."""
    from veil import sched

    console.print(sched.why(name), markup=False)


def delete(names: list[str] = typer.Argument(..., help="Job names."),
           project: str = typer.Option(None, "--project", "-p", help="The project the jobs "
                                       "must be in (runai's syntax).")) -> None:
    """Delete jobs; running ones are stopped by the agent and their GPUs freed now."""
    from veil import sched

    rows = sched.delete_jobs(names, project=project)
    for r in rows:
        console.print(f"The job '{r.name}' has been deleted.", markup=False)


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


def report(
    plot: Path = typer.Option(None, "--plot", help="Write GPUs allocated per project over time "
                              "as a PNG."),
    as_json: bool = JSON,
) -> None:
    """GPUs allocated per project over time (the seed's analytics view)."""
    from veil import sched

    hist = sched.history()
    if as_json:
        return print_json([{"t": t, "project": p, "gpus": g} for t, p, g in hist])
    if plot is not None:
        from veil.errors import require_extra

        require_extra("matplotlib", "torch", "--plot")
        sched.plot_history(hist, plot)
        console.print(f"wrote {plot}", markup=False)
    rows = sched.list_projects()
    t = Table("PROJECT", "GPUs ALLOCATED", "QUOTA", "CHANGES", box=None)
    for r in rows:
        t.add_row(r.name, f"{r.allocated:g}/{r.quota:g}", f"{r.quota:g}",
                  str(sum(1 for _, p, _ in hist if p == r.name)))
    console.print(t)


@scheduler_app.command("run")
def scheduler_run(
    interval: float = typer.Option(0.5, "--interval", help="Seconds between cycles (0.05 to "
                                   "3600)."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds from SIGTERM to SIGKILL when a "
                                "job is preempted or deleted (0 to 3600)."),
    once: bool = typer.Option(False, "--once", help="One reconciliation, then exit."),
) -> None:
    """The agent: starts allocated jobs as processes, preempts and restarts them (one per
    home)."""
    from veil import sched

    sched.Agent(grace=grace).run(interval=interval, once=once,
                                 log=lambda m: err_console.print(m, markup=False))
