"""Where veil keeps its state. Shared by every module; depends on nothing else in veil."""

from __future__ import annotations

import os
from pathlib import Path


def veil_home() -> Path:
    """The veil home: ``$VEIL_HOME`` if set, else ``~/.veil``."""
    env = os.environ.get("VEIL_HOME")
    return Path(env).expanduser().absolute() if env else Path.home() / ".veil"


def home_dir(home: Path | str | None = None) -> Path:
    """`home` (default: the veil home), made private if it does not exist yet: 0700, whichever
    module writes first (parents are made the usual way). An existing folder is left as is;
    the data layer tightens a veil home made by an older veil."""
    path = Path(home) if home else veil_home()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(path, 0o700)  # whatever the umask
    return path
