"""Mechanisms: what runs at the split besides the noise (issue 17, part 2).

A mechanism is a SplitModel built from a task's network and a small configuration:

- "noise": the network split at its usual layer; the obfuscator's per-channel noise alone
  (the baseline).
- "bottleneck": a learned 1x1 convolution from the activation's channels down to a few, on the
  trusted side, before the noise; a 1x1 convolution back up starts the tail. The two are trained
  with the tail under noise, the head frozen.
- "adversarial": the same shape, with the trusted side (head and bottleneck) trained against an
  adversary (a reconstruction decoder and attribute or identity classifiers) while noise is
  injected (DeepObfuscator / ResSFL style).
- "deep": the network split at a later layer.

A mechanism's weights file holds its configuration and the whole SplitModel's state, so it is
loaded without the base weights; `assemble` builds the architecture from the configuration.
The obfuscator is fitted on each mechanism as on any SplitModel (its fingerprint differs).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veil.errors import InvalidArgument, NotFound
from veil.privacy._split import SplitModel, split_at

MECHANISMS = {
    "noise": "per-channel noise on the head's activation (the baseline)",
    "bottleneck": "a learned 1x1 convolution down to a few channels before the noise",
    "adversarial": "the trusted side trained against reconstruction and attribute adversaries",
    "deep": "the network split at a later layer",
}
MAX_MECHANISM_BYTES = 16 * 2**20  # the budget is 5 MB a file; refuse far larger
FORMAT = "veil-mechanism-1"


def check_mechanism(name: Any, available: dict[str, Any] | None = None) -> str:
    """`name` if it is a mechanism (and, with `available`, one the task ships); else one line."""
    pool = available if available is not None else MECHANISMS
    if not isinstance(name, str) or name not in pool:
        raise InvalidArgument(f"no mechanism {name!r}; choose one of {', '.join(pool)}")
    return name


def with_bottleneck(model: SplitModel, channels: int, in_channels: int) -> SplitModel:
    """`model` with a 1x1 convolution down to `channels` ending the head and one back up to
    `in_channels` (batch norm, ReLU) starting the tail."""
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= 4096:
        raise InvalidArgument(f"a bottleneck needs 1 to 4096 channels, not {channels!r}")
    head = nn.Sequential(OrderedDict(base=model.head,
                                     squeeze=nn.Conv2d(in_channels, channels, 1)))
    tail = nn.Sequential(OrderedDict(
        expand=nn.Sequential(nn.Conv2d(channels, in_channels, 1, bias=False),
                             nn.BatchNorm2d(in_channels), nn.ReLU()),
        base=model.tail))
    return SplitModel(head, tail, name=model.name, split=f"{model.split}+bottleneck{channels}")


def assemble(network: Callable[[], nn.Sequential], config: dict[str, Any], *,
             name: str) -> SplitModel:
    """The mechanism's architecture (untrained): `network()` split after config["split"], with
    a bottleneck of config["channels"] (from config["in_channels"]) when there is one."""
    model = split_at(network(), config["split"], name=name)
    channels = config.get("channels")
    if channels:
        model = with_bottleneck(model, channels, config["in_channels"])
    return model


def save(model: SplitModel, mechanism: str, config: dict[str, Any], path: str | Path,
         **info: Any) -> Path:
    """Write a mechanism's weights file: its configuration and the SplitModel's state (float32),
    with `info` (how it was trained) kept beside them."""
    check_mechanism(mechanism)
    path = Path(path)
    state = {k: (v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "mechanism": mechanism, "config": dict(config),
                "info": dict(info), "state": state}, tmp)
    tmp.replace(path)
    return path


def load(network: Callable[[], nn.Sequential], path: str | Path, *, name: str,
         mechanism: str | None = None, device: str | torch.device = "cpu") -> SplitModel:
    """A mechanism's SplitModel from its weights file, in eval mode. Every refusal is one line
    naming the file: not a mechanism file, another mechanism than asked for, a configuration
    that does not fit the network, or a state with missing, extra, misshapen or non-finite
    tensors."""
    from veil.privacy._util import load_tensors

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no mechanism weights at {path}")
    blob = load_tensors(path, MAX_MECHANISM_BYTES, "a mechanism's weights file")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InvalidArgument(f"{path}: not a veil mechanism weights file ({FORMAT})")
    got = blob.get("mechanism")
    if mechanism is not None and got != mechanism:
        raise InvalidArgument(f"{path}: holds mechanism {got!r}, not {mechanism!r}")
    config = blob.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("split"), str):
        raise InvalidArgument(f"{path}: the configuration names no split layer")
    try:
        model = assemble(network, config, name=name)
    except (InvalidArgument, KeyError, TypeError) as e:
        raise InvalidArgument(f"{path}: its configuration does not fit the network ({e})"
                              ) from None
    state = blob.get("state")
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        missing = sorted(set(expected) - set(state or {}))[:3]
        extra = sorted(set(state or {}) - set(expected))[:3]
        raise InvalidArgument(f"{path}: the weights do not match the mechanism's layers "
                              f"(missing {missing}, extra {extra})")
    for key, want in expected.items():
        t = state[key]
        if not isinstance(t, torch.Tensor) or t.shape != want.shape or t.dtype != want.dtype:
            raise InvalidArgument(f"{path}: {key} is {getattr(t, 'shape', t)}, the layer "
                                  f"needs {tuple(want.shape)} {want.dtype}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise InvalidArgument(f"{path}: {key} holds NaN or infinite values")
    model.load_state_dict(state)
    model.mechanism = got  # type: ignore[attr-defined]
    model.mechanism_info = dict(blob.get("info") or {})  # type: ignore[attr-defined]
    return model.to(device).eval()
