"""`veil pool ...`: the loop-backed btrfs pool in the veil home."""

from __future__ import annotations

import typer

from veil import data
from veil.cli._render import console, print_json

app = typer.Typer(help="The loop-backed btrfs pool (root only): show, create, grow, detach.",
                  no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


def _show(info: data.PoolInfo, as_json: bool) -> None:
    if as_json:
        return print_json(info)
    if not info.exists:
        console.print(f"No pool at {info.image}. As root, veil creates one on first use "
                      "(or `veil pool create --size 100Gi`).")
        return
    f = data.format_size
    console.print(f"Pool file:  {info.image} ({f(info.size)}, {f(info.allocated)} on disk)")
    if info.mounted:
        console.print(f"Mounted at: {info.mountpoint} ({info.device})")
        console.print(f"Used:       {f(info.used)}, free {f(info.free)}")
    else:
        console.print("Mounted:    no (the next veil command mounts it again)")


@app.command("show")
def show(as_json: bool = JSON) -> None:
    """Show the pool file, its mount and its use."""
    _show(data.pool_show(), as_json)


@app.command("create")
def create(size: str = typer.Option(None, "--size", help="Pool file size, e.g. 100Gi (sparse)."),
           as_json: bool = JSON) -> None:
    """Create the pool now, with a chosen size (otherwise made on first use)."""
    _show(data.pool_create(data.parse_size(size)), as_json)


@app.command("grow")
def grow(size: str = typer.Option(..., "--size", help="The new, larger size, e.g. 200Gi."),
         as_json: bool = JSON) -> None:
    """Grow the pool file and its filesystem, online."""
    _show(data.pool_grow(data.parse_size(size)), as_json)  # type: ignore[arg-type]


@app.command("detach")
def detach(as_json: bool = JSON) -> None:
    """Unmount the pool; its data stays in the pool file."""
    _show(data.pool_detach(), as_json)
