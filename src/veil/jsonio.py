"""The one JSON conversion of veil's results: dataclasses, paths, datetimes and numpy values
as plain JSON values. Depends on nothing else in veil."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any


def to_plain(obj: Any) -> Any:
    """`obj` with dataclasses, paths, datetimes, numpy scalars and arrays made JSON-ready;
    infinities and NaN become None (JSON has neither)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat(timespec="seconds")
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars and arrays, tensors
        return to_plain(obj.tolist())
    if isinstance(obj, float) and (math.isinf(obj) or math.isnan(obj)):
        return None
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """`obj` as JSON text (see `to_plain`)."""
    return json.dumps(to_plain(obj), indent=indent)
