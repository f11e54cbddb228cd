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
