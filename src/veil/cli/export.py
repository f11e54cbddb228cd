"""`veil export k8s DIR`: veil's projects and jobs as KAI-Scheduler objects for a cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._render import console, print_json

app = typer.Typer(help="Write veil's state for other engines (Kubernetes).",
                  no_args_is_help=True)


@app.command("k8s")
def k8s(
    directory: Path = typer.Argument(..., help="Folder to write the manifests into."),
    jobs: bool = typer.Option(True, "--jobs/--no-jobs", help="Also a Pod per process of every "
                              "active job (else only the Queues)."),
    namespace: str = typer.Option("default", "--namespace", help="For the Pods."),
    image: str = typer.Option("veil:latest", "--image", help="Container image of the Pods."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: the files written."),
) -> None:
    """KAI-Scheduler Queues for the projects (quota, overQuotaWeight, limit) and Pods for the
    active jobs. A solution's own jobs: veil solutions NAME export k8s DIR --project P."""
    from veil.k8s import Target, check_folder
    from veil.sched import emit_k8s

    Target(namespace=namespace, image=image).check()  # refused before anything is written
    check_folder(directory)
    files = emit_k8s(directory, jobs=jobs, namespace=namespace, image=image)
    if as_json:
        return print_json({"files": [str(f) for f in files]})
    for f in files:
        console.print(f"wrote {f}", markup=False)
