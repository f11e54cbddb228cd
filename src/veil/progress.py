"""One progress protocol and one logging callable for every long operation in veil.

A library function that works long takes ``progress: Progress | None`` and ``log: Log | None``;
the CLI passes a bar and a printer, tests and notebooks pass nothing. On a terminal the bar is
drawn; when stderr is a file or a pipe (a log, `| tee`, CI) each phase is shown as plain lines
instead: one when it starts, one at most every VEIL_PROGRESS_INTERVAL seconds (default 10) while
it runs, one when it ends. Depends on nothing else in veil; tqdm is imported only when a bar is
made.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
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


class _Prefixed:
    def __init__(self, progress: Progress, prefix: str) -> None:
        self.progress, self.prefix = progress, prefix

    def start(self, total: int, description: str) -> None:
        self.progress.start(total, f"{self.prefix}: {description}" if description
                            else self.prefix)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(n)


def prefixed(progress: Progress | None, prefix: str) -> Progress:
    """`progress` with `prefix` before each phase's description ("scoring ALPHA 0.4:
    predicting"), for work that runs another function's phases once per item."""
    return SILENT if progress is None or progress is SILENT else _Prefixed(progress, prefix)


MIB = 1 << 20


class _Mebibytes:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._total = self._bytes = self._shown = 0

    def start(self, total: int, description: str) -> None:
        self._total, self._bytes, self._shown = total, 0, 0
        self.progress.start(-(-total // MIB), f"{description}, MiB")

    def advance(self, n: int = 1) -> None:
        self._bytes += n
        whole = -(-self._bytes // MIB) if self._bytes >= self._total else self._bytes // MIB
        if whole > self._shown:
            self.progress.advance(whole - self._shown)
            self._shown = whole


def mebibytes(progress: Progress | None) -> Progress:
    """`progress` for a data operation that counts bytes (veil.data's snapshots and clones),
    shown in whole MiB: for a job's progress, made for counts of images or batches."""
    return SILENT if progress is None or progress is SILENT else _Mebibytes(progress)


def quiet(log: Log | None) -> Log:
    """`log`, or a callable that drops its lines."""
    return log if log is not None else (lambda _m: None)


def or_silent(progress: Progress | None) -> Progress:
    """`progress`, or one that shows nothing."""
    return progress if progress is not None else SILENT


INTERVAL_ENV = "VEIL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0  # seconds between two lines of one phase, when stderr is not a terminal


def line_interval() -> float:
    """Seconds between progress lines: VEIL_PROGRESS_INTERVAL, or DEFAULT_INTERVAL when it is
    unset or not a number >= 0."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def duration(seconds: float) -> str:
    """45s, 1m05s, 2h03m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LineProgress:
    """Each phase as plain lines on stderr, for logs and pipes, e.g.
    `training inversion decoders: 12/40 (30%), 1m05s elapsed, ETA 2m30s`: one when the phase
    starts, at most one every `interval` seconds (default: line_interval()) while it advances,
    and one when it ends (`..., done in 3m35s`, or where it stopped if it ends short of its
    total). `amount` renders a count (bytes, say). `ends=False` leaves out the first and the
    last line, for a caller that prints its own (a training loop's line per epoch)."""

    def __init__(self, interval: float | None = None, amount: Callable[[int], str] = str, *,
                 ends: bool = True) -> None:
        self.interval = line_interval() if interval is None else interval
        self.amount, self.ends = amount, ends
        self._phase: str | None = None
        self._total = self._n = self._shown = 0
        self._t0 = self._last = 0.0

    def start(self, total: int, description: str) -> None:
        self.close()
        self._phase, self._total, self._n, self._shown = description, total, 0, 0
        self._t0 = self._last = time.monotonic()
        if self.ends:
            self._print(self._line(0.0))

    def advance(self, n: int = 1) -> None:
        if self._phase is None:
            return
        self._n += n
        now = time.monotonic()
        if 0 < self._total <= self._n:
            self.close()
        elif now - self._last >= self.interval:
            self._last = now
            self._print(self._line(now - self._t0))

    def close(self) -> None:
        """End the phase: its last line, unless nothing changed since the one shown."""
        if self._phase is not None and self._n != self._shown and self.ends:
            self._print(self._line(time.monotonic() - self._t0, end=True))
        self._phase = None

    def _line(self, elapsed: float, end: bool = False) -> str:
        done = self.amount(self._n)
        if self._total > 0:
            done += f"/{self.amount(self._total)} ({100 * self._n // self._total}%)"
        if end and self._n >= self._total:
            return f"{self._phase}: {done}, done in {duration(elapsed)}"
        if self._n == 0 and not end:
            return f"{self._phase}: {done}"
        line = f"{self._phase}: {done}, {duration(elapsed)} elapsed"
        if 0 < self._n < self._total and not end:
            line += f", ETA {duration(elapsed * (self._total - self._n) / self._n)}"
        return line

    def _print(self, line: str) -> None:
        self._shown = self._n
        # stderr closed or gone: progress is never worth failing for
        with contextlib.suppress(OSError, ValueError, AttributeError):
            print(line, file=sys.stderr, flush=True)


class TqdmProgress(contextlib.AbstractContextManager):
    """tqdm bars on stderr, one per phase, on a terminal; plain lines (LineProgress) when stderr
    is a file or a pipe, or tqdm is not installed. `keep=True` leaves each finished bar on
    screen; otherwise a bar vanishes when its phase is done."""

    def __init__(self, keep: bool = False, unit: str = "it") -> None:
        self.keep, self.unit = keep, unit
        self._bar: Any = None

    def start(self, total: int, description: str) -> None:
        self.close()
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm comes with veil[torch]; without it, lines
            tqdm = None
        if tqdm is None or not stderr_is_terminal():
            self._bar = LineProgress()
            self._bar.start(total, description)
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
        if isinstance(self._bar, LineProgress):
            return self._bar.advance(n)
        self._bar.update(n)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self.close()
