"""Clients of a Triton server that runs the tail of a split model (TR-4928 scenario 3).

`Client` sends the head's activation as it is, like the seed's step 5. `PrivateClient` obfuscates
it first, like step 6: the input and the clean activation stay on this machine; only the
obfuscated activation crosses the network. Both speak KServe v2 through `tritonclient`, over HTTP
(binary tensors by default, JSON as in the seed with `binary=False`) or gRPC.

A client holds one connection and belongs to the thread that made it (the HTTP transport is
gevent's): make one client per thread.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import InvalidArgument, NotFound, VeilError, require_extra

PROTOCOLS = ("http", "grpc")
_WIRE_DTYPES = {"FP32": "float32", "FP16": "float16", "FP64": "float64", "INT64": "int64",
                "INT32": "int32", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


_TRANSPORTS = {"gevent", "geventhttpclient", "grpc", "socket", "ssl", "http", "urllib3"}
_GOING = ("unload", "not ready", "stub process", "is stopping", "shutting down")


class ServerUnavailable(VeilError):
    """The server does not answer: not running, wrong address, or too slow."""


def resolve_url(server: str, protocol: str, *, home: Path | None = None) -> str:
    """`server` as host:port: a veil server name is looked up, an address is taken as is."""
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"protocol must be http or grpc, not {protocol!r}")
    for prefix in ("http://", "https://", "grpc://"):
        if server.startswith(prefix):
            return server[len(prefix):].rstrip("/")
    if ":" in server:
        return server
    from veil.serve._server import get_server

    info = get_server(server, home=home)
    if info.state != "ready":
        raise ServerUnavailable(f"server {server!r} is {info.state}, not ready (veil serve "
                                f"start --model-repo {info.model_repo} --name {server})")
    return info.http if protocol == "http" else info.grpc


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join("N" if i == 0 and d == -1 else ("*" if d == -1 else str(d))
                           for i, d in enumerate(shape)) + "]"


def _message(e: BaseException) -> str:
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    lines = [ln.strip() for ln in (msg or type(e).__name__).strip().splitlines() if ln.strip()]
    if any("Traceback (most recent call last)" in ln for ln in lines):
        # a server-side Python error arrives with its tracebacks: the last "Name: text" line
        # is the error itself
        raised = [ln for ln in lines if re.fullmatch(r"[A-Za-z_][\w.]*: .+", ln)]
        if raised:
            return raised[-1]
    msg = lines[0]
    return msg.removeprefix("[StatusCode.").split("] ", 1)[-1] if msg.startswith(
        "[StatusCode.") else msg


class Client:
    """Runs `split_model`'s head here and the tail on the server as model `model`.

    `server`: a veil server name (veil serve list) or host:port. `preprocess` turns one item
    (an image, ...) into the model's input tensor; `postprocess(outputs, items)` turns the
    server's output arrays into per-item results (detections, ...). `input_shape` (without the
    batch) makes the client check inputs before running the head.
    """

    private = False

    def __init__(self, server: str, model: str, split_model: Any = None, *,
                 protocol: str = "http", preprocess: Callable | None = None,
                 postprocess: Callable | None = None, input_shape: Sequence[int] | None = None,
                 timeout: float = 30.0, binary: bool = True, home: Path | None = None):
        from veil.serve._server import seconds

        seconds(timeout, "timeout")
        self.url = resolve_url(server, protocol, home=home)
        self.protocol, self.model, self.split_model = protocol, model, split_model
        self.preprocess, self.postprocess = preprocess, postprocess
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.timeout, self.binary = float(timeout), binary
        self.last_timing: dict[str, float] = {}
        self.last_sent: dict[str, Any] = {}  # what the last send() put on the wire
        self._thread = threading.get_ident()
        self._connected = False
        require_extra(f"tritonclient.{protocol}", "serve", "a veil.serve client")
        try:
            if protocol == "http":
                import tritonclient.http as tc
                self._tc = tc
                self._client = tc.InferenceServerClient(
                    self.url, connection_timeout=self.timeout, network_timeout=self.timeout)
            else:
                import tritonclient.grpc as tc
                self._tc = tc
                self._client = tc.InferenceServerClient(self.url)
        except Exception as e:  # a malformed address
            raise InvalidArgument(f"cannot use {self.url!r} as a {protocol} address: "
                                  f"{_message(e)}") from None
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ connection
    def _call(self, method: str, *args, **kwargs):
        """One request to the server; whatever goes wrong becomes one clear line."""
        from tritonclient.utils import InferenceServerException

        if self._client is None:
            raise InvalidArgument(f"{self!r} is closed")
        if threading.get_ident() != self._thread:
            raise InvalidArgument("a veil.serve client belongs to the thread that made it; make "
                                  "one client per thread")
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except InferenceServerException as e:
            status = (e.status() or "") if hasattr(e, "status") else ""
            msg = _message(e)
            if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status \
                    or "Deadline Exceeded" in msg or "failed to connect" in msg.lower() \
                    or "ServerStopping" in msg:
                raise ServerUnavailable(f"no answer from a Triton server at {self.url} "
                                        f"({self.protocol}): {msg}") from None
            gone = "unknown model" in msg.lower() or "NOT_FOUND" in status
            if gone and not self._connected:
                raise NotFound(f"the server at {self.url} has no model {self.model!r}") from None
            if gone or any(w in msg.lower() for w in _GOING):  # a model unloading under us
                raise ServerUnavailable(f"the server at {self.url} no longer serves "
                                        f"{self.model!r} (stopping?): {msg}") from None
            raise VeilError(f"server at {self.url}: {msg}") from None
        except (ConnectionError, TimeoutError, OSError) as e:
            why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or _message(e))
            raise ServerUnavailable(f"no answer from a Triton server at {self.url} "
                                    f"({self.protocol}): {why}") from None
        except Exception as e:  # gevent's timeouts and other transport failures
            if type(e).__module__.split(".")[0] not in _TRANSPORTS:
                raise  # not the network: a bug, which should show as one
            if type(e).__name__ in ("Timeout", "timeout", "ConnectionTimeout"):
                raise ServerUnavailable(f"no answer from a Triton server at {self.url} "
                                        f"({self.protocol}): timed out after "
                                        f"{self.timeout:g} s") from None
            raise ServerUnavailable(f"talking to {self.url} ({self.protocol}) failed: "
                                    f"{type(e).__name__}: {_message(e)}") from None

    def _connect(self) -> None:
        as_json = {"as_json": True} if self.protocol == "grpc" else {}
        if not self._call("is_server_live"):
            raise ServerUnavailable(f"the Triton server at {self.url} is not live")
        meta = self._call("get_model_metadata", self.model, **as_json)
        config = self._call("get_model_config", self.model, **as_json)
        config = config.get("config", config)
        if len(meta["inputs"]) != 1:
            raise InvalidArgument(f"model {self.model!r} takes {len(meta['inputs'])} inputs; "
                                  "veil's clients send one activation")
        self.input_name = meta["inputs"][0]["name"]
        self.input_wire = meta["inputs"][0]["datatype"]
        self.input_dtype = np.dtype(_WIRE_DTYPES.get(self.input_wire, "float32"))
        self.activation_shape = [int(d) for d in meta["inputs"][0]["shape"]]
        self.output_names = [o["name"] for o in meta["outputs"]]
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        self._connected = True

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):  # closing a connection that never opened
                client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a client dropped without close() still lets go of its connection
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ requests
    def _expected(self) -> str:
        cap = f" (at most {self.max_batch_size} per request)" if self.max_batch_size else ""
        return f"{self.input_wire} {_shape(self.activation_shape)}{cap}"

    def check_activation(self, activation: Any) -> np.ndarray:
        """`activation` as the array the server takes, or one error naming the expected shape."""
        if hasattr(activation, "detach"):
            activation = activation.detach().cpu().numpy()
        if not isinstance(activation, np.ndarray):
            raise InvalidArgument(f"model {self.model!r} takes {self.input_name} as "
                                  f"{self._expected()}; got a {type(activation).__name__}")
        want = self.activation_shape
        ok = activation.ndim == len(want) and all(
            w == -1 or w == g for w, g in zip(want, activation.shape, strict=True)) \
            and (not want or want[0] != -1 or activation.shape[0] >= 1)
        if activation.dtype != self.input_dtype or not ok:
            got = f"{activation.dtype} {list(activation.shape)}"
            raise InvalidArgument(f"model {self.model!r} takes {self.input_name} as "
                                  f"{self._expected()}; got {got}")
        return np.ascontiguousarray(activation)

    def _request(self, arr: np.ndarray) -> list[np.ndarray]:
        tc = self._tc
        inp = tc.InferInput(self.input_name, list(arr.shape), self.input_wire)
        outs = [tc.InferRequestedOutput(n, binary_data=self.binary) if self.protocol == "http"
                else tc.InferRequestedOutput(n) for n in self.output_names]
        if self.protocol == "http":
            inp.set_data_from_numpy(arr, binary_data=self.binary)
        else:
            inp.set_data_from_numpy(arr)
        result = self._call("infer", self.model, [inp], outputs=outs)
        return [result.as_numpy(n) for n in self.output_names]

    def send(self, activation: Any) -> tuple[np.ndarray, ...]:
        """Send an activation as it is and return the model's outputs (in the metadata's order).
        Batches larger than the model's max_batch_size go as several requests."""
        arr = self.check_activation(activation)
        t0 = time.perf_counter()
        step = self.max_batch_size if self.max_batch_size and self.activation_shape \
            and self.activation_shape[0] == -1 else len(arr)
        parts = [self._request(arr[i:i + step]) for i in range(0, len(arr), max(step, 1))]
        self.last_timing["network"] = time.perf_counter() - t0
        self.last_sent = {"input": self.input_name, "datatype": self.input_wire,
                          "shape": list(arr.shape), "bytes": int(arr.nbytes),
                          "requests": len(parts), "protocol": self.protocol,
                          "encoding": "binary" if self.binary or self.protocol == "grpc"
                          else "json"}
        if len(parts) == 1:
            return tuple(parts[0])
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))

    def _check_input(self, x):
        import torch

        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise InvalidArgument(f"the model input must be a tensor, not {type(x).__name__}")
        if self.input_shape is not None and (tuple(x.shape[1:]) != self.input_shape
                                             or x.ndim != len(self.input_shape) + 1):
            raise InvalidArgument(f"the model takes input of shape "
                                  f"[N, {', '.join(map(str, self.input_shape))}]; got "
                                  f"{list(x.shape)}")
        if not x.is_floating_point():
            raise InvalidArgument(f"the model takes floating-point input; got {x.dtype}")
        return x

    def activation(self, x) -> Any:
        """What this client sends for the model input `x`: here, the head's activation."""
        if self.split_model is None:
            raise InvalidArgument("this client has no split model: use send(activation)")
        import torch

        with torch.inference_mode():
            t0 = time.perf_counter()
            a = self.split_model.forward_head(x)
            self.last_timing["head"] = time.perf_counter() - t0
            self.last_timing["obfuscation"] = 0.0
            return a

    def infer(self, x) -> tuple[np.ndarray, ...]:
        """Run the head on the model input `x` (a batch) here, the tail on the server."""
        x = self._check_input(x)
        if self.split_model is not None:
            p = next(self.split_model.parameters())
            if x.dtype != p.dtype or x.device != p.device:
                x = x.to(device=p.device, dtype=p.dtype)
        return self.send(self.activation(x))

    def predict(self, items: Sequence[Any]) -> list[Any]:
        """End to end for a list of items: preprocess, head (and obfuscation) here, tail on the
        server, postprocess here."""
        if self.preprocess is None or self.postprocess is None:
            raise InvalidArgument("predict() needs a client made with preprocess and postprocess")
        import torch

        items = list(items)
        if not items:
            return []
        t0 = time.perf_counter()
        x = torch.stack([self.preprocess(it) for it in items])
        self.last_timing = {"preprocess": time.perf_counter() - t0}
        outputs = self.infer(x)
        t1 = time.perf_counter()
        result = self.postprocess(outputs, items)
        self.last_timing["postprocess"] = time.perf_counter() - t1
        return result

    def statistics(self) -> dict:
        """The server's inference statistics for this model, as the seed's code reads them
        (`stats["model_stats"]` has one entry per version)."""
        kw = {"as_json": True} if self.protocol == "grpc" else {}
        stats = self._call("get_inference_statistics", model_name=self.model, **kw)
        for m in stats.get("model_stats", []):  # gRPC's JSON has 64-bit counts as strings
            for k in ("inference_count", "execution_count"):
                if k in m:
                    m[k] = int(m[k])
        return stats

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r} at {self.protocol}://{self.url})"


class PrivateClient(Client):
    """A `Client` that obfuscates the activation before it leaves: head and obfuscator run
    here, and only `obfuscator(head(x))` is sent (TR-4928 step 6's single additional line)."""

    private = True

    def __init__(self, server: str, model: str, split_model: Any, obfuscator: Any, **kwargs):
        if split_model is None or obfuscator is None:
            raise InvalidArgument("a PrivateClient needs the split model (its head runs here) and "
                                  "a fitted obfuscator")
        if getattr(obfuscator, "alpha", None) == 0:
            raise InvalidArgument("an obfuscator at ALPHA 0 adds no noise: the clean activation "
                                  "would leave this machine (use Client for a clean baseline)")
        check = getattr(obfuscator, "check_model", None)
        if check is not None:
            check(split_model)
        self.obfuscator = obfuscator
        super().__init__(server, model, split_model, **kwargs)

    def activation(self, x) -> Any:
        import torch

        a = super().activation(x)
        with torch.inference_mode():
            t0 = time.perf_counter()
            noisy = self.obfuscator(a)
            self.last_timing["obfuscation"] = time.perf_counter() - t0
        return noisy
