"""Small helpers shared inside veil.privacy."""

from __future__ import annotations

from typing import Any

import torch


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


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def bar(verbose: bool, total: int, desc: str, unit: str = "it"):
    """A tqdm bar on stderr when `verbose` and stderr is a terminal; otherwise nothing."""
    if not verbose:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None)
