"""Small helpers shared inside veil.privacy."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veil.progress import SILENT, Progress, TqdmProgress


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Tensors in nested lists, tuples and dicts moved to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def check_device(device: Any) -> torch.device:
    """A torch device this machine has, or a one-line error."""
    from veil.errors import InvalidArgument

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidArgument(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"no CUDA device here (torch {torch.__version__}): use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InvalidArgument(f"no device {device}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter lives (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def pairs(loader: Iterable) -> Iterable[tuple[Any, Any]]:
    """The loader's batches, checked to be (inputs, targets) pairs."""
    from veil.errors import InvalidArgument

    for batch in loader:
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise InvalidArgument("the loader must yield (inputs, targets) pairs")
        yield batch[0], batch[1]


def progress_for(progress: Progress | None, verbose: bool, unit: str = "it") -> Progress:
    """`progress` when given; else tqdm bars on stderr when `verbose`, else nothing."""
    if progress is not None:
        return progress
    return TqdmProgress(unit=unit) if verbose else SILENT


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """`value` as a whole number in [lo, hi] (a bool or a float is not one), or a one-line
    error naming `name` and the bounds."""
    from veil.errors import InvalidArgument

    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InvalidArgument(f"{name} must be a whole number {bounds}, not {value!r}")
    return value


def check_float(name: str, value: Any, lo: float, hi: float | None = None, *,
                lo_open: bool = False) -> float:
    """`value` as a finite float in [lo, hi] (`lo_open`: (lo, hi]), or a one-line error."""
    import math

    from veil.errors import InvalidArgument

    try:
        v = float(value) if not isinstance(value, (bool, str)) else math.nan
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if not math.isfinite(v) or v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
        low = f"({lo:g}" if lo_open else f"[{lo:g}"
        high = "inf)" if hi is None else f"{hi:g}]"
        raise InvalidArgument(f"{name} must be a finite number in {low}, {high}, not {value!r}")
    return v


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, at most 200 characters."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else "")[:200]


def load_tensors(file: str | Path, max_bytes: int, what: str = "a weights file") -> Any:
    """`torch.load(file, weights_only=True)` on CPU, with every refusal in one line naming the
    file: larger than `max_bytes` ("more than WHAT can be"), not torch.save's zip format,
    objects other than tensors (torch's own refusal is many lines), or a damaged archive."""
    from veil.errors import InvalidArgument

    file = Path(file)
    size = file.stat().st_size
    if size > max_bytes:
        raise InvalidArgument(f"{file}: {size} bytes, more than {what} can be ({max_bytes} "
                              f"at most)")
    if not zipfile.is_zipfile(file):
        raise InvalidArgument(f"{file}: not a file written by torch.save (a zip archive)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's safe loading refused it, in many lines
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise InvalidArgument(f"{file}: refused to load: it holds {found.group(1)}, which "
                                  f"is not a tensor (torch.load with weights_only)") from None
        why = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        raise InvalidArgument(f"{file}: not readable by torch.load "
                              f"({why.group(1).strip()[:200] if why else first_line(e)})"
                              ) from None
    except Exception as e:  # a damaged archive: one line, not a traceback
        raise InvalidArgument(f"{file}: not readable by torch.load ({type(e).__name__}: "
                              f"{first_line(e)})") from None
