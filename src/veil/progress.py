"""One progress protocol and one logging callable for every long operation in veil.

A library function that works long takes ``progress: Progress | None`` and ``log: Log | None``;
the CLI passes a bar and a printer, tests and notebooks pass nothing. Depends on nothing else in
veil; tqdm is imported only when a bar is made.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any, Protocol

Log = Callable[[str], None]
"""Receives one human-readable line (no trailing newline)."""


class Progress(Protocol):
    """Receives the amount of work of a phase, then its advance. Each `start` begins a new
    phase (and ends the one before)."""

    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...


SILENT: Progress = _Silent()
"""A progress that shows nothing (the default of library functions)."""


def quiet(log: Log | None) -> Log:
    """`log`, or a callable that drops its lines."""
    return log if log is not None else (lambda _m: None)


def or_silent(progress: Progress | None) -> Progress:
    """`progress`, or one that shows nothing."""
    return progress if progress is not None else SILENT


class TqdmProgress(contextlib.AbstractContextManager):
    """tqdm bars on stderr, one per phase. `keep=True` leaves each finished bar on screen (as
    the seed's job logs do, also when stderr is a file); otherwise bars show only on a terminal
    and vanish when done. Without tqdm installed it shows nothing."""

    def __init__(self, keep: bool = False, unit: str = "it") -> None:
        self.keep, self.unit = keep, unit
        self._bar: Any = None

    def start(self, total: int, description: str) -> None:
        self.close()
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm comes with veil[torch]; without it, no bar
            return
        if self.keep:
            self._bar = tqdm(total=total, desc=description, file=sys.stderr, mininterval=1.0,
                             dynamic_ncols=True, unit=self.unit)
        else:
            self._bar = tqdm(total=total, desc=description, unit=self.unit, leave=False,
                             disable=None)

    def advance(self, n: int = 1) -> None:
        if self._bar is None:
            return
        self._bar.update(n)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self.close()
