"""`veil serve ...`: Triton Inference Server (PyTriton) on loopback, serving a model repository
kept on a veil volume."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli._render import console, err_console, print_json

app = typer.Typer(help="Serve models from a volume on Triton Inference Server (TR-4928 "
                  "scenario 3).", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


@app.command("start")
def start(
    model_repo: str = typer.Option(..., "--model-repo", help="The veil volume holding the Triton "
                                   "model repository (veil solutions face-privacy export-models "
                                   "writes one)."),
    name: str = typer.Option(None, "--name", "--server-name", help="Server name (default: the "
                             "volume's name)."),
    http_port: int = typer.Option(None, "--http-port", help="HTTP port (default: a free one)."),
    grpc_port: int = typer.Option(None, "--grpc-port", help="gRPC port (default: a free one)."),
    metrics_port: int = typer.Option(None, "--metrics-port", help="Prometheus metrics port "
                                     "(default: a free one)."),
    device: str = typer.Option("cpu", "--device", help="Where the models run: cpu or cuda[:N]."),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds to wait for the server to be "
                                  "ready (at most a day)."),
    as_json: bool = JSON,
) -> None:
    """Start a Triton server in the background on 127.0.0.1 and print its endpoints."""
    import time

    from veil import serve

    t0 = time.monotonic()
    info = serve.start(model_repo, name=name, http_port=http_port, grpc_port=grpc_port,
                       metrics_port=metrics_port, device=device, timeout=timeout,
                       progress=lambda msg: err_console.print(msg, markup=False))
    if as_json:
        return print_json(info.to_json())
    console.print(f"Server '{info.name}' started in {time.monotonic() - t0:.1f} s (pid "
                  f"{info.pid}), serving {', '.join(info.models)}.", markup=False)
    console.print("Server endpoints:")
    console.print(f"http: {info.http}")
    console.print(f"grpc: {info.grpc}")
    console.print(f"metrics: {info.metrics}")


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """List the servers veil started, with their state and endpoints."""
    from veil import serve

    servers = serve.list_servers()
    if as_json:
        return print_json([s.to_json() for s in servers])
    if not servers:
        console.print("No servers. Start one with `veil serve start --model-repo VOLUME`.")
        return
    t = Table("NAME", "STATE", "PID", "HTTP", "GRPC", "METRICS", "MODEL REPO", "MODELS",
              "STARTED", box=None)
    for s in servers:
        t.add_row(s.name, s.state, str(s.pid or "-"), s.http, s.grpc, s.metrics, s.model_repo,
                  ",".join(s.models), s.started)
    console.print(t)


@app.command("stop")
def stop(
    name: str = typer.Argument(..., help="Server name (veil serve list)."),
    grace: float = typer.Option(60.0, "--grace", help="Seconds requests in flight get to finish "
                                "before the server is killed."),
    as_json: bool = JSON,
) -> None:
    """Stop a server: requests in flight finish, then it and everything it started exit."""
    from veil import serve

    res = serve.stop(name, grace=grace,
                     progress=lambda msg: err_console.print(msg, markup=False))
    if as_json:
        return print_json(res.to_json())
    what = f"serving {', '.join(res.models)} from volume '{res.model_repo}'" if res.models \
        else f"on volume '{res.model_repo}'"
    if not res.was_running:
        ended = f"; {res.leftovers} process(es) it left were ended" if res.leftovers else ""
        console.print(f"Server '{name}' ({what}) was not running; its record and leftovers "
                      f"are removed{ended}.", markup=False)
    elif res.killed:
        console.print(f"Server '{name}' (pid {res.pid}, {what}) did not stop within "
                      f"{grace:g} s and was killed.", markup=False)
    else:
        console.print(f"Server '{name}' stopped (pid {res.pid}, {what}, http {res.http}) in "
                      f"{res.seconds:.1f} s.", markup=False)


@app.command("logs")
def logs(
    name: str = typer.Argument(..., help="Server name (veil serve list)."),
    triton: bool = typer.Option(False, "--triton", help="Triton's own log instead of veil's."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines from the end."),
) -> None:
    """Print the end of a server's log."""
    from veil import serve
    from veil.errors import InvalidArgument

    if lines < 0:
        raise InvalidArgument(f"--lines must be >= 0, not {lines}")
    info = serve.get_server(name)
    path = Path(info.log)
    if triton:
        path = path.with_suffix(".triton.log")
    if not path.is_file():
        console.print(f"(no log at {path})", markup=False)
        return
    for line in path.read_text(errors="replace").splitlines()[-lines:] if lines else []:
        print(line)
