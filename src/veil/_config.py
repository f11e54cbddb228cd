"""Where veil keeps its state. Shared by every module; depends on nothing else in veil."""

from __future__ import annotations

import os
from pathlib import Path


def veil_home() -> Path:
    """The veil home: ``$VEIL_HOME`` if set, else ``~/.veil``."""
    env = os.environ.get("VEIL_HOME")
    return Path(env).expanduser().absolute() if env else Path.home() / ".veil"
