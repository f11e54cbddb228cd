"""Rendering shared by the commands: JSON, tables, progress bars, sizes and times."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from veil.jsonio import dumps
from veil.progress import LineProgress

# Piped output is not cut to 80 columns: names in tables stay whole for grep and scripts. No
# emoji codes: "day_15:1234: ..." names a line, it is not :1234: (a keycap emoji).
console = Console(highlight=False, emoji=False, soft_wrap=True,
                  width=None if sys.stdout.isatty() else 400)
err_console = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    print(dumps(obj))


def when(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def labels(d: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"


def size(n: float) -> str:
    """Bytes in binary units, as the bars show them: 512 B, 1.5 KiB, 3.2 GiB."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


class BarProgress:
    """Progress of long data operations on stderr, counted in bytes (implements
    veil.data.Progress): a rich bar on a terminal, plain lines (veil.progress.LineProgress)
    when stderr is a file or a pipe."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
            TransferSpeedColumn(), TimeRemainingColumn(), console=err_console, transient=True,
        )
        self._task = None

        self._live = err_console.is_terminal
        self._lines = None if self._live else LineProgress(amount=size)

    def __enter__(self) -> BarProgress:
        if self._live:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._bar.__exit__(*exc)
        else:
            self._lines.close()

    def start(self, total: int, description: str) -> None:
        if not self._live:
            return self._lines.start(total, description)
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if not self._live:
            self._lines.advance(n)
        elif self._task is not None:
            self._bar.advance(self._task, n)
