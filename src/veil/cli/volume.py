"""`veil volume ...`: parse, call veil.data, render."""

from __future__ import annotations

import typer
from rich.table import Table

from veil import data
from veil.cli._render import BarProgress, console, labels, print_json, when

app = typer.Typer(help="Data volumes: create, list, clone, delete.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


def _origin(v: data.Volume) -> str:
    return f"{v.origin_volume}@{v.origin_snapshot}" if v.origin_volume else "-"


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Volume name: a-z, 0-9, '.', '_', '-'."),
    size: str = typer.Option(None, "--size", help="Size limit, e.g. 50Gi (enforced on btrfs)."),
    label: list[str] = typer.Option(None, "--label", help="key=value, repeatable."),
    as_json: bool = JSON,
) -> None:
    """Create an empty volume."""
    v = data.create_volume(name, size=size, labels=label)
    if as_json:
        return print_json(v)
    console.print(f"Volume '{v.name}' created ({v.driver}, size {data.format_size(v.size)}).")
    console.print(f"Path: {v.path}")


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """List volumes."""
    vols = data.list_volumes()
    if as_json:
        return print_json(vols)
    if not vols:
        console.print("No volumes. Create one with `veil volume create NAME`.")
        return
    t = Table("NAME", "DRIVER", "SIZE", "SNAPSHOTS", "ORIGIN", "CREATED", "LABELS", box=None)
    for v in vols:
        t.add_row(v.name, v.driver, data.format_size(v.size), str(len(v.snapshots)), _origin(v),
                  when(v.created), labels(v.labels))
    console.print(t)


@app.command("path")
def path(name: str, as_json: bool = JSON) -> None:
    """Print the directory to read and write (it stays the same across restores)."""
    p = data.volume_path(name)
    if as_json:
        return print_json({"name": name, "path": p})
    print(p)


@app.command("delete")
def delete(
    name: str,
    with_snapshots: bool = typer.Option(False, "--with-snapshots",
                                        help="Also delete the volume's snapshots."),
    force: bool = typer.Option(False, "--force",
                               help="Delete even if clones were made from its snapshots."),
    as_json: bool = JSON,
) -> None:
    """Delete a volume (refused while snapshots or clones depend on it)."""
    data.delete_volume(name, with_snapshots=with_snapshots, force=force)
    if as_json:
        return print_json({"deleted": name})
    console.print(f"Volume '{name}' deleted.")


@app.command("clone")
def clone(
    source: str = typer.Argument(..., help="The volume to clone."),
    new: str = typer.Argument(..., help="The new volume's name."),
    snapshot: str = typer.Option(None, "--snapshot", "-s",
                                 help="Clone this snapshot (latest: the newest; default: "
                                      "snapshot the live volume)."),
    size: str = typer.Option(None, "--size", help="Size limit (default: the source's)."),
    label: list[str] = typer.Option(None, "--label", help="key=value, repeatable."),
    as_json: bool = JSON,
) -> None:
    """Create a writable volume from a volume or one of its snapshots."""
    with BarProgress() as bar:
        v = data.clone_volume(source, new, snapshot, size=size, labels=label, progress=bar)
    if as_json:
        return print_json(v)
    console.print(f"Volume '{v.name}' cloned from {_origin(v)} ({v.driver}).")
    console.print(f"Path: {v.path}")
