"""Training configurations: dataclasses saved beside the run, and read from the environment on
Kubernetes (each field from an upper-case variable, or the name in its `env` metadata).

A field's metadata may bound it, checked in one place (`check_fields`) wherever a config is
made: from the command line, from JSON, from the environment. `min` and `max` are inclusive,
`above` is a strict lower bound, `choices` lists the values a text field may take; a number
field must also be finite."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from veil.errors import InvalidArgument
from veil.jsonio import dumps


def ref(obj: Any) -> str:
    """'module:qualname' of a class or function (how a worker finds it again)."""
    return f"{obj.__module__}:{obj.__qualname__}"


def resolve(spec: str) -> Any:
    """The object named 'module:attr' (or 'module.attr')."""
    module, sep, attr = spec.partition(":")
    if not sep:
        module, _, attr = spec.rpartition(".")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise InvalidArgument(f"cannot import {module!r} (named by {spec!r}): {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InvalidArgument(f"{module!r} has no {attr!r} (named by {spec!r})") from None
    return obj


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds both take it


def _shown(v: Any) -> str:
    """`v` as an error message shows it (a whole number of 400 digits is not shown whole)."""
    text = repr(v)
    return f"{text[:12]}... ({len(text)} digits)" if isinstance(v, int) and len(text) > 24 \
        else text


def check_seed(seed: Any, flag: str = "--seed") -> int:
    """`seed` if it is a whole number in [0, 2**32 - 1], else a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"{flag} must be a whole number in [0, {MAX_SEED}], not "
                              f"{_shown(seed)}")
    return seed


def option_name(f: dataclasses.Field) -> str:
    """The command-line option of a config field: --kebab-name."""
    return "--" + f.name.replace("_", "-")


def _bounds(meta: Mapping[str, Any]) -> str:
    def n(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    lo, hi, above = meta.get("min"), meta.get("max"), meta.get("above")
    low = f"[{n(lo)}" if lo is not None else f"({n(above)}" if above is not None else None
    if low is not None and hi is not None:
        return f"in {low}, {n(hi)}]"
    if hi is not None:
        return f"<= {n(hi)}"
    return f">= {n(lo)}" if lo is not None else f"> {n(above)}"


def check_fields(config: Any, name: Any = option_name) -> Any:
    """`config` (a dataclass) if every field holds a value of its type within the bounds of its
    metadata, else a one-line error naming the option (`name(field)`) and the bound."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        v, meta = getattr(config, f.name), f.metadata
        if v is None:
            continue
        tp = field_type(hints[f.name])
        if tp in (int, float):
            whole = tp is int
            if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)):
                raise InvalidArgument(f"{name(f)} must be a {'whole ' if whole else ''}number, "
                                      f"not {v!r}")
            if not whole and not math.isfinite(v):
                raise InvalidArgument(f"{name(f)} must be a finite number, not {v!r}")
            lo, hi, above = meta.get("min"), meta.get("max"), meta.get("above")
            if (lo is not None and v < lo) or (hi is not None and v > hi) or (
                    above is not None and not v > above):
                raise InvalidArgument(f"{name(f)} must be {'a whole number ' if whole else ''}"
                                      f"{_bounds(meta)}, not {_shown(v)}")
        if "choices" in meta and v not in meta["choices"]:
            raise InvalidArgument(f"{name(f)} must be one of {', '.join(meta['choices'])}, not "
                                  f"{v!r}")
    return config


def env_name(f: dataclasses.Field) -> str:
    return f.metadata.get("env", f.name.upper())


def field_type(tp: Any) -> Any:
    """The type a config field holds: int for `int | None`, etc."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _parse(text: str, tp: Any, name: str) -> Any:
    tp = field_type(tp)
    if tp is bool:
        low = text.strip().lower()
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise InvalidArgument(f"{name} must be true or false, not {text!r}")
        return low in ("true", "1", "yes")
    try:
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        raise InvalidArgument(f"{name} must be a number, not {text!r}") from None
    if tp is Path:
        return Path(text)
    return text


def from_env(cls: type, environ: Mapping[str, str] | None = None) -> Any:
    """An instance of dataclass `cls` from environment variables: a field without a default must
    be set; others keep their default when unset."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        name = env_name(f)
        if name in environ:
            kwargs[f.name] = _parse(environ[name], hints[f.name], name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidArgument(f"environment variable {name} is not set")
    return check_fields(cls(**kwargs), env_name)


def to_env(config: Any) -> dict[str, Any]:
    """The environment variables that `from_env` reads back into `config`."""
    return {env_name(f): getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) is not None}


def save(config: Any, path: Path) -> Path:
    """Write `config` as JSON, with its class, so `load` rebuilds it."""
    path.write_text(dumps({"class": ref(type(config)), "fields": config}) + "\n")
    return path


def load(path: Path) -> Any:
    body = json.loads(Path(path).read_text())
    cls = resolve(body["class"])
    hints = typing.get_type_hints(cls)
    fields = {}
    for k, v in body["fields"].items():
        fields[k] = Path(v) if v is not None and field_type(hints.get(k)) is Path else v
    return check_fields(cls(**fields))
