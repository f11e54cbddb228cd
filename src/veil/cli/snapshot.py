"""`veil snapshot ...`: parse, call veil.data, render."""

from __future__ import annotations

import typer
from rich.table import Table

from veil import data
from veil.cli._render import BarProgress, console, labels, print_json, when

app = typer.Typer(help="Snapshots: create, list, restore, delete.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


@app.command("create")
def create(
    volume: str,
    name: str = typer.Option(None, "--name", "-n",
                             help="Snapshot name (default: snap-YYYY-MM-DD-HH-MM-SS)."),
    label: list[str] = typer.Option(None, "--label", help="key=value, repeatable."),
    as_json: bool = JSON,
) -> None:
    """Take a read-only snapshot of a volume."""
    with BarProgress() as bar:
        s = data.create_snapshot(volume, name, labels=label, progress=bar)
    if as_json:
        return print_json(s)
    console.print(f"Snapshot '{s.name}' of volume '{s.volume}' created.")


@app.command("list")
def list_(volume: str = typer.Argument(None, help="Only this volume's snapshots."),
          as_json: bool = JSON) -> None:
    """List snapshots, oldest first."""
    snaps = data.list_snapshots(volume)
    if as_json:
        return print_json(snaps)
    if not snaps:
        console.print("No snapshots.")
        return
    t = Table("VOLUME", "SNAPSHOT", "CREATED", "CLONES", "LABELS", box=None)
    for s in snaps:
        t.add_row(s.volume, s.name, when(s.created), ",".join(s.clones) or "-", labels(s.labels))
    console.print(t)


@app.command("delete")
def delete(
    volume: str,
    snapshot: str,
    force: bool = typer.Option(False, "--force", help="Delete even if clones were made from it."),
    as_json: bool = JSON,
) -> None:
    """Delete a snapshot (refused while clones made from it exist)."""
    data.delete_snapshot(volume, snapshot, force=force)
    if as_json:
        return print_json({"deleted": f"{volume}@{snapshot}"})
    console.print(f"Snapshot '{snapshot}' of volume '{volume}' deleted.")


@app.command("restore")
def restore(volume: str,
            snapshot: str = typer.Argument(..., help="Its name, or latest for the newest."),
            as_json: bool = JSON) -> None:
    """Make a volume's content that of its snapshot (the snapshot stays)."""
    with BarProgress() as bar:
        v = data.restore_snapshot(volume, snapshot, progress=bar)
    if as_json:
        return print_json(v)
    console.print(f"Volume '{volume}' restored from snapshot '{v.restored_from or snapshot}'.")
