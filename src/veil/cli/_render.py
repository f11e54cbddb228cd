"""Rendering shared by the commands: JSON, tables, progress bars, sizes and times."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from datetime import datetime
from pathlib import Path
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

# Piped output is not cut to 80 columns: names in tables stay whole for grep and scripts.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def to_plain(obj: Any) -> Any:
    """Dataclasses, paths and datetimes as JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat(timespec="seconds")
    if isinstance(obj, float) and (math.isinf(obj) or math.isnan(obj)):
        return None  # JSON has no infinity
    return obj


def print_json(obj: Any) -> None:
    print(json.dumps(to_plain(obj), indent=2))


def when(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def labels(d: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"


class BarProgress:
    """A rich progress bar on stderr for long data operations (implements veil.data.Progress)."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
            TransferSpeedColumn(), TimeRemainingColumn(), console=err_console, transient=True,
        )
        self._task = None

        self._live = err_console.is_terminal  # no bar when stderr is a file or a pipe

    def __enter__(self) -> BarProgress:
        if self._live:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._bar.__exit__(*exc)

    def start(self, total: int, description: str) -> None:
        if not self._live:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self._live and self._task is not None:
            self._bar.advance(self._task, n)
