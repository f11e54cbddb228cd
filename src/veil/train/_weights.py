"""Model weights read safely: torch's weights-only loading (no pickled code runs) of a file no
larger than the model can explain, then the file checked against the model (every tensor there,
of the model's shape and kind, finite) before any of it is copied in. A damaged, foreign or
hand-edited file is one line naming it, and the model is left as it was."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from veil.errors import InvalidArgument, NotFound

# what torch's weights-only unpickler names when it refuses a file (torch 2.4 ... 2.13)
_REFUSED = re.compile(r"(unsupported GLOBAL [\w.]+|Unsupported global: GLOBAL [\w.]+|"
                      r"Unsupported operand \d+)", re.I)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split("\n")[0].split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def read_weights(path: str | Path, what: str = "weights", max_bytes: int | None = None) -> Any:
    """What a torch file holds, loaded with weights_only=True; a file torch refuses to load
    safely, cannot read, or (with `max_bytes`) larger than that, is one line naming it."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no {what} file at {path}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InvalidArgument(f"{path}: {size} bytes, more than {what} can be ({max_bytes} at "
                              "most)")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a pickle
        what_it_is = "an empty file" if not head else "neither a zip archive nor a pickle"
        raise InvalidArgument(f"{path} is not a torch {what} file ({what_it_is})")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = _REFUSED.search(str(e))
        if "weights only" in str(e).lower():
            why = m.group(1) if m else "it holds more than tensors"
            raise InvalidArgument(f"{path}: torch's safe loading refused it ({why}); veil loads "
                                  f"{what} only as plain tensors, never pickled code") from None
        raise InvalidArgument(f"{path} is not a torch {what} file ({_first_line(e)})") from None
    except Exception as e:  # a truncated, empty or foreign file: torch raises many kinds
        raise InvalidArgument(f"{path} is not a torch {what} file ({_first_line(e)})") from None


def state_dict_of(obj: Any, path: Path, what: str, *, checkpoint_key: str | None) -> dict:
    """`obj` as a state dict (or, with `checkpoint_key`, the state dict a checkpoint holds under
    that key)."""
    if checkpoint_key and isinstance(obj, Mapping) and isinstance(obj.get(checkpoint_key),
                                                                   Mapping):
        obj = obj[checkpoint_key]
    import torch

    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        kind = type(obj).__name__
        raise InvalidArgument(f"{path} is not a state dict of the {what} (a {kind}, not a "
                              "mapping from parameter names to tensors)")
    return dict(obj)


def _kind(t) -> str:
    import torch

    if t.dtype.is_floating_point:
        return "floating"
    if t.dtype.is_complex:
        return "complex"
    return "bool" if t.dtype == torch.bool else "integer"


def check_state_dict(model, state: Mapping[str, Any], path: Path, what: str) -> None:
    """The tensors of `state` against `model`'s: same names, shapes and kinds (a float16 file
    may load into float32 parameters, an integer one may not), every value finite."""
    import torch

    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} not in the model (first: {extra[0]})")
        raise InvalidArgument(f"{path} does not fit the {what}: tensors "
                              f"{' and '.join(parts)}")
    for k, ref in own.items():
        t = state[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise InvalidArgument(f"{path}: {k} has shape {tuple(t.shape)}, the {what} needs "
                                  f"{tuple(ref.shape)}")
        if _kind(t) != _kind(ref):
            raise InvalidArgument(f"{path}: {k} holds {t.dtype}, the {what} needs {ref.dtype}")
        if (t.dtype.is_floating_point or t.dtype.is_complex) and not bool(
                torch.isfinite(t).all()):
            raise InvalidArgument(f"{path}: {k} holds NaN or infinite values")


def load_weights(model, path: str | Path, what: str = "weights", *,
                 checkpoint_key: str | None = None):
    """Load the weights file `path` into `model` (returned), safely and checked (see the
    module's docstring); with `checkpoint_key`, a checkpoint holding the state dict under that
    key is accepted too."""
    path = Path(path)
    # the model's own bytes, four times over (float64 copies, a checkpoint's optimizer state)
    room = 4 * sum(t.numel() * t.element_size() for t in model.state_dict().values()) + 2**20
    state = state_dict_of(read_weights(path, what, room), path, what,
                          checkpoint_key=checkpoint_key)
    check_state_dict(model, state, path, what)
    model.load_state_dict(state)
    return model
