"""The row every reliability_AREA.py script counts its trials in (benchmarks/reliability.py
reads them from each script's last line)."""

from __future__ import annotations

from collections.abc import Callable


class Row:
    def __init__(self, check: str):
        self.check, self.tried, self.held, self.failures = check, 0, 0, []
        self.notes: list[str] = []

    def trial(self, fn: Callable[..., object], *args, **kwargs) -> None:
        """Run one trial now: ``fn(*args, **kwargs)`` holds unless it raises."""
        self.tried += 1
        try:
            fn(*args, **kwargs)
            self.held += 1
        except Exception as e:  # a trial that did not hold is reported, not hidden
            self.failures.append(f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")

    def as_dict(self) -> dict:
        notes = list(self.notes)
        if self.failures:
            notes.append(f"{len(self.failures)} did not hold, first: {self.failures[0]}")
        return {"check": self.check, "tried": self.tried, "held": self.held,
                "notes": "; ".join(notes)}


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)
