"""Serving through Triton Inference Server (PyTriton) on loopback, with clients that keep the
input on this machine: `Client` sends the head's activation, `PrivateClient` only an obfuscated
one (TR-4928 scenario 3).

Importing this package imports neither torch nor tritonclient; they load on first use."""

from importlib import import_module

_LAZY = {
    "start": "_server", "stop": "_server", "list_servers": "_server", "get_server": "_server",
    "ServerInfo": "_server", "StopResult": "_server",
    "Client": "_client", "PrivateClient": "_client", "ServerUnavailable": "_client",
    "resolve_url": "_client",
    "ModelSpec": "_repo", "TensorSpec": "_repo", "read_repository": "_repo",
    "write_model": "_repo",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
