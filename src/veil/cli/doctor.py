"""`veil doctor`: which data driver is in use, why, and what would enable a faster one."""

from __future__ import annotations

import typer

from veil import data
from veil.cli._render import console, print_json


def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")):
    """Which data driver is in use and why, and what would enable a faster one."""
    r = data.doctor()
    if as_json:
        return print_json(r)
    console.print(f"veil home:    {r.home}")
    console.print(f"data driver:  [bold]{r.driver}[/bold]"
                  + ("" if r.saved else " (will be used on first write)"))
    console.print(f"why:          {r.reason}")
    console.print(f"cost:         {r.cost}")
    console.print(f"sizes:        {r.sizes}")
    console.print()
    for c in r.checks:
        mark = "[green]ok[/green]  " if c.ok else "[yellow]no[/yellow]  "
        console.print(f"  {mark}{c.name}: {c.detail}")
    if r.hints:
        console.print()
        for h in r.hints:
            console.print(f"hint: {h}")
