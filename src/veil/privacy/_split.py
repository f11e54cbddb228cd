"""Splitting a model into a trusted head and an untrusted tail, and naming it."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from veil.errors import InvalidArgument


def fingerprint(*modules: nn.Module) -> str:
    """A short hash of the modules' parameters and buffers: names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{i}:{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class SplitModel(nn.Module):
    """A model cut in two: `head` runs in the trusted zone, `tail` may run anywhere.

    The obfuscator, when attached, sits between them (`forward_noise`), as in TR-4928's
    `forward_head` / `forward_noise` / `forward_tail`.
    """

    def __init__(self, head: nn.Module, tail: nn.Module, *, name: str = "model",
                 split: str = "head",
                 obfuscator: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.head = head
        self.tail = tail
        self.name = name
        self.split = split
        self.obfuscator = obfuscator

    @property
    def identity(self) -> dict[str, str]:
        """What an obfuscator records to recognise the model it was fitted for (hashed from the
        current weights on every call, so weights changed later are noticed)."""
        return {"name": self.name, "split": self.split,
                "fingerprint": fingerprint(self.head, self.tail)}

    def forward_head(self, x):
        return self.head(x)

    def forward_noise(self, activation: torch.Tensor) -> torch.Tensor:
        """The obfuscated activation: what leaves the trusted zone (as is without obfuscator)."""
        return activation if self.obfuscator is None else self.obfuscator(activation)

    def forward_tail(self, activation):
        return self.tail(activation)

    def forward(self, x):
        return self.forward_tail(self.forward_noise(self.forward_head(x)))


def _split_sequential(seq: nn.Sequential, path: list[str],
                      full: str) -> tuple[nn.Module, nn.Module]:
    names = [n for n, _ in seq.named_children()]
    if path[0] not in names:
        raise InvalidArgument(f"no layer {full!r}: {'.'.join(path[:1])!r} is not one of "
                              f"{', '.join(names)}")
    i = names.index(path[0])
    children = list(seq.named_children())
    before = nn.Sequential(OrderedDict(children[:i]))
    after = nn.Sequential(OrderedDict(children[i + 1:]))
    layer = children[i][1]
    if len(path) == 1:
        before.add_module(children[i][0], layer)
        return before, after
    if not isinstance(layer, nn.Sequential):
        raise InvalidArgument(f"cannot split inside {children[i][0]!r} ({type(layer).__name__}): "
                              "only nn.Sequential containers can be split by name")
    inner_head, inner_tail = _split_sequential(layer, path[1:], full)
    before.add_module(children[i][0], inner_head)
    tail = nn.Sequential(OrderedDict([(children[i][0], inner_tail), *after.named_children()]))
    return before, tail


def split_at(model: nn.Module, layer: str, *, name: str | None = None) -> SplitModel:
    """Split an `nn.Sequential` after the layer named `layer` (dotted for nested ones).

    Everything up to and including `layer` becomes the head. Models that are not sequential
    can be split by passing their two halves to `SplitModel(head, tail)`.
    """
    if not isinstance(model, nn.Sequential):
        raise InvalidArgument(f"split_at needs an nn.Sequential, not {type(model).__name__}: "
                              "build SplitModel(head, tail) from the model's two halves")
    if not layer:
        raise InvalidArgument("split_at needs a layer name")
    head, tail = _split_sequential(model, layer.split("."), layer)
    if len(tail) == 0:
        raise InvalidArgument(f"splitting after the last layer {layer!r} leaves an empty tail")
    return SplitModel(head, tail, name=name or type(model).__name__, split=layer)
