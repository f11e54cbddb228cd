"""`veil lineage SNAPSHOT|RUN`: which run produced or used which snapshot."""

from __future__ import annotations

import re

import typer

from veil.cli._render import console, print_json


def _run_line(r) -> str:
    head = r.headline
    score = f", {head[0]} {head[1]:.4f}" if head else ""
    return (f"  run {r.run_id} ({r.name}, {r.status.lower()}, {r.start}{score}): data "
            f"{r.data_volume or '-'}:{r.data_path or '-'}")


def lineage(
    subject: str = typer.Argument(..., help="A snapshot (NAME, VOLUME@NAME, or VOLUME@latest "
                                  "for the volume's newest) or an MLflow run id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show which run produced a snapshot and which runs trained on it (through a clone), or,
    for a run, its data volume, the snapshot that data came from and the snapshot it made.
    VOLUME@latest names the volume's newest snapshot."""
    from veil import track

    if re.fullmatch(r"[0-9a-f]{32}", subject):
        lin = track.run_lineage(subject)
        r = lin.run
        if as_json:
            return print_json(lin)
        console.print(f"run {r.run_id} ({r.name}, {r.experiment}, {r.status.lower()}, "
                      f"{r.start})", markup=False)
        console.print(f"  data: volume {r.data_volume or '-'}, path {r.data_path or '-'}",
                      markup=False)
        console.print(f"  data came from snapshot: {r.data_snapshot or '-'}", markup=False)
        console.print(f"  produced snapshot: {r.output_snapshot or '-'}", markup=False)
        if r.metrics:
            console.print("  " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.metrics.items())),
                          markup=False)
        return
    from veil import data
    from veil.errors import NotFound

    volume, _, name = subject.rpartition("@")
    if volume:  # VOLUME@latest is its newest snapshot, as everywhere in veil.data
        snaps = [data.get_snapshot(volume, name)]
        name = snaps[0].name
    else:
        snaps = [s for s in data.list_snapshots() if s.name == name]
    if not snaps:
        raise NotFound(f"no snapshot named {subject!r} and no run id (32 hex digits)")
    if len(snaps) > 1:
        from veil.errors import InvalidArgument

        raise InvalidArgument(f"volumes {', '.join(s.volume for s in snaps)} each have a "
                              f"snapshot {name!r}: say which, as VOLUME@{name}")
    lin = track.snapshot_lineage(name, snaps[0].volume)
    if as_json:
        return print_json({"snapshot": snaps[0], "produced_by": lin.produced_by,
                           "used_by": lin.used_by})
    s = snaps[0]
    console.print(f"snapshot {s.name} of volume {s.volume} ({s.created:%Y-%m-%d %H:%M:%S})",
                  markup=False)
    console.print("produced by:" if lin.produced_by else "produced by: no recorded run",
                  markup=False)
    for r in lin.produced_by:
        console.print(_run_line(r), markup=False)
    console.print("used by (trained on a clone or restore of it):" if lin.used_by
                  else "used by: no recorded run", markup=False)
    for r in lin.used_by:
        console.print(_run_line(r), markup=False)
