"""Errors a user can cause. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class VeilError(Exception):
    """Base class for errors caused by input or state the user controls."""

    exit_code = 1


class InvalidArgument(VeilError):
    """A value that does not parse or is out of range (name, size, label, ...)."""

    exit_code = 2


class NotFound(VeilError):
    """A named object (volume, snapshot, ...) that does not exist."""


class AlreadyExists(VeilError):
    """A name that is already taken."""


class InUse(VeilError):
    """An object that others depend on (snapshots of a volume, clones of a snapshot)."""


class BackendError(VeilError):
    """The storage underneath refused an operation (pool cannot be created, quota, ...)."""


def require_extra(module: str, extra: str, what: str = "this") -> None:
    """Import `module` or fail in one line naming the extra that installs it, e.g.
    ``require_extra("torch", "torch", "veil train")``."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise VeilError(f"{what} needs {module}: pip install 'veil[{extra}]'") from None
