"""The server process behind `veil serve start`: `python -m veil.serve._daemon --name NAME`, with
its configuration (JSON) on standard input.

It detaches (`veil.process.detach`: the launcher prints the server's pid and exits, so the server
is nobody's child and `start` knows its pid from the first moment), loads the
TorchScript models of the repository, binds them into PyTriton's Triton Inference Server on
loopback, records itself as ready in the veil home and serves until SIGTERM or SIGINT. On either
it stops taking requests, lets Triton finish the ones in flight, and exits."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class ServerStopping(RuntimeError):
    """Raised for requests that arrive after the server was told to stop."""


class _Gate:
    """Counts inferences running in this process; once closed, refuses new ones, so stopping
    waits only for what is already running (a steady stream of requests cannot hold it open)."""

    def __init__(self) -> None:
        import threading

        self.closing, self.active = False, 0
        self.cond = threading.Condition()

    def __enter__(self):
        with self.cond:
            if self.closing:
                raise ServerStopping("the server is stopping: request refused")
            self.active += 1

    def __exit__(self, *exc) -> None:
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def close(self, timeout: float) -> bool:
        with self.cond:
            self.closing = True
            return self.cond.wait_for(lambda: self.active == 0, timeout)


GATE = _Gate()
# On SIGTERM: up to DRAIN_TIMEOUT s for the inferences running here, then up to EXIT_TIMEOUT s
# for Triton to stop; together within `veil serve stop`'s default grace of 60 s.
DRAIN_TIMEOUT = 25.0
EXIT_TIMEOUT = 25


def _infer_fn(spec, module, device: str):
    import numpy as np
    import torch

    in_names = [t.name for t in spec.inputs]
    out_names = [t.name for t in spec.outputs]

    def run(**inputs):
        with GATE, torch.inference_mode():
            xs = []
            for n in in_names:
                a = inputs[n]
                if not a.flags.writeable:
                    a = np.array(a)
                xs.append(torch.from_numpy(a).to(device))
            out = module(*xs)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            return {n: o.detach().cpu().numpy() for n, o in zip(out_names, outs, strict=True)}

    if spec.max_batch_size > 0:
        from pytriton.decorators import batch

        return batch(run)

    def unbatched(requests):
        return [run(**{n: r[n] for n in in_names}) for r in requests]

    return unbatched


# Triton's arguments that carry the access token; they reach Triton through veil.serve._launch
# and never appear on a command line. A placeholder has no ":", so Triton refuses it as a value.
_SECRET_ARGS = ("http-restricted-api", "grpc-restricted-protocol")


def _private_triton():
    """PyTriton's `Triton`, but starting `tritonserver` through `veil.serve._launch`, with the
    access token out of every command line (`/proc/PID/cmdline` is world-readable)."""
    import shlex

    from pytriton.triton import Triton

    class PrivateTriton(Triton):
        def _prepare_triton_config(self, workspace) -> None:
            super()._prepare_triton_config(workspace)
            cfg, self.secrets = self._triton_server_config, {}
            for key in _SECRET_ARGS:
                value = cfg[key]
                if value:
                    placeholder = f"veil-hidden-{key}"
                    self.secrets[placeholder] = str(value)
                    cfg[key] = placeholder
            if not self.secrets:  # PyTriton changed: refuse rather than expose a token
                raise RuntimeError("PyTriton set no access restriction to hide; veil needs "
                                   "nvidia-pytriton 0.7")
            # the shared memory Triton makes for its model stubs is named from this prefix:
            # note it before Triton starts, so a cleanup after a kill while starting finds the
            # regions of stubs it made but did not start, or that no process names any more
            from veil.serve._server import write_outside

            self.shm_prefix = self._python_backend_config["shm-region-prefix-name"]
            write_outside(Path(os.environ["TMPDIR"]), [], self.shm_prefix)

        def _prepare_triton_inference_server(self):
            path = super()._prepare_triton_inference_server()
            binary = path / "bin" / "tritonserver"
            real = binary.with_name("tritonserver-real")
            binary.rename(real)
            binary.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m "
                              f"veil.serve._launch {shlex.quote(str(real))} \"$@\"\n")
            binary.chmod(0o700)
            return path

        def run(self) -> None:
            from veil.serve._launch import SECRETS_ENV, selftest

            selftest()
            os.environ[SECRETS_ENV] = json.dumps(self.secrets)  # read by the launcher only
            try:
                super().run()
            finally:
                os.environ.pop(SECRETS_ENV, None)
            # Triton's Python backend makes its shared memory (the tensors to and from the
            # model stubs) 0644 whatever the umask; make it its owner's before any request
            for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
                region.chmod(0o600)
            self.record_outside(self.shm_prefix)

        def record_outside(self, prefix: str) -> None:
            """Note in the scratch folder what this server uses outside it (the stubs' folders
            in /tmp, the shared memory), so a `stop` after a SIGKILL of all of it can remove
            them (veil.serve._server.clean_leftovers)."""
            from veil.process import descendants
            from veil.serve._server import _cmdline, _stub_files, write_outside

            procs = [(p, None, _cmdline(p)) for p in descendants(os.getpid())]
            write_outside(Path(os.environ["TMPDIR"]), _stub_files(procs), prefix)

    return PrivateTriton


def _serve(info, home: Path):
    import numpy as np
    import torch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import (
        DEFAULT_PROTECTED_ENDPOINTS,
        TritonConfig,
        TritonSecurityConfig,
    )

    from veil.serve._repo import load_torchscript, read_repository
    from veil.serve._server import workspace_dir

    if info.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {info.device}: CUDA is not available on this machine")
    specs = read_repository(Path(info.repo_path))
    config = TritonConfig(
        http_address=info.host, http_port=info.http_port, grpc_address=info.host,
        grpc_port=info.grpc_port, metrics_port=info.metrics_port, metrics_address=info.host,
        log_file=Path(info.log).with_suffix(".triton.log"), exit_timeout_secs=EXIT_TIMEOUT)
    # PyTriton guards some endpoints with a random token. The seed's client reads the inference
    # statistics without one, so those (counts and timings, no data) stay open; model control,
    # shared memory, tracing and logging stay closed.
    security = TritonSecurityConfig(restricted_endpoints=[
        e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    # PyTriton's workspace (a copy of Triton, model stubs, the sockets to them): private
    # (0700), known from this server's scratch folder, so it is removed even after a SIGKILL
    triton = _private_triton()(config=config, security_config=security,
                               workspace=workspace_dir(home, info.name) / "w")
    try:
        for spec in specs:
            module = load_torchscript(spec.model_file, info.device)
            fns = [_infer_fn(spec, module, info.device) for _ in range(spec.instances)]
            if spec.max_batch_size > 0:
                batcher = DynamicBatcher(max_queue_delay_microseconds=spec.max_queue_delay_us) \
                    if spec.dynamic_batching else None
                mc = ModelConfig(max_batch_size=spec.max_batch_size, batcher=batcher) \
                    if batcher else ModelConfig(max_batch_size=spec.max_batch_size)
            else:
                mc = ModelConfig(batching=False)
            triton.bind(
                model_name=spec.name, infer_func=fns if len(fns) > 1 else fns[0],
                inputs=[Tensor(name=t.name, dtype=np.dtype(t.dtype), shape=t.dims)
                        for t in spec.inputs],
                outputs=[Tensor(name=t.name, dtype=np.dtype(t.dtype), shape=t.dims)
                         for t in spec.outputs],
                config=mc, strict=True)
            print(f"model {spec.name} version {spec.version}: {spec.model_file}", flush=True)
        triton.run()
    except BaseException:
        triton.stop()
        raise
    return triton


def run(cfg: dict) -> int:
    import signal
    import tempfile
    import threading

    from veil.serve._server import ServerInfo, remove_scratch, scratch_dir

    home = Path(cfg["home"])
    info = ServerInfo(**cfg["info"])
    stop, starting = threading.Event(), threading.Event()
    starting.set()

    def on_signal(signum, _frame):
        print(f"signal {signal.Signals(signum).name}: stopping", flush=True)
        first = not stop.is_set()
        stop.set()
        if first and starting.is_set():  # `start` gave up or was interrupted: stop right here
            raise ServerStopping(f"stopped by {signal.Signals(signum).name} while starting")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # what this server and Triton create (logs, PyTriton's sockets, the shared memory Triton
    # exchanges tensors with its model stubs through) is for its owner alone
    os.umask(0o077)
    try:
        # PyTriton and Triton's Python backend write temporary model folders; keep them in a
        # folder of this server's own, removed when it exits, so no stop leaves any in /tmp.
        scratch = scratch_dir(home, info.name)
        remove_scratch(home, info.name)
        scratch.mkdir(parents=True, mode=0o700)
        # Unix sockets need paths under 108 bytes, which a home's path may not leave:
        # PyTriton's workspace is a private folder in /tmp, linked from the scratch folder
        short = "/tmp" if os.access("/tmp", os.W_OK | os.X_OK) else None
        workspace = tempfile.mkdtemp(prefix="veil-serve-", dir=short)
        (scratch / "workspace").symlink_to(workspace)
        print(f"veil serve: workspace {workspace}", flush=True)
        os.environ["TMPDIR"] = str(scratch)
        tempfile.tempdir = None
        return _run(home, info, stop, starting)
    except ServerStopping as e:
        print(f"error: {e}", flush=True)
        return 1
    finally:
        starting.clear()  # a signal no longer interrupts: the cleanup below runs whole
        remove_scratch(home, info.name)
        # the name is free only now that nothing of this server is left
        from veil.serve._server import _entry, _read, remove_entry_if

        mine = _read(_entry(info.name, home))
        if mine is not None and mine.state != "failed":
            remove_entry_if(info.name, home, info.pid, info.proc_start)


def _run(home: Path, info, stop, starting) -> int:
    import traceback

    from veil.process import proc_start_time
    from veil.serve._server import write_entry

    info.pid, info.claimed_by = os.getpid(), None
    info.proc_start = proc_start_time(info.pid)
    write_entry(info, home)
    print(f"veil serve: server {info.name!r} (pid {info.pid}) starting", flush=True)
    triton = None
    try:
        triton = _serve(info, home)
        starting.clear()
    except ServerStopping:
        if triton is not None:  # the signal came between the two lines above
            triton.stop()
        raise
    except BaseException as e:
        starting.clear()
        traceback.print_exc()
        info.state, info.error = "failed", _one_line(e)
        print(f"error: {info.error}", flush=True)
        write_entry(info, home)
        return 1
    info.state = "ready"
    write_entry(info, home)
    print(f"ready: http {info.http}, grpc {info.grpc}, metrics {info.metrics}", flush=True)
    while not stop.wait(0.5):
        pass
    info.state = "stopping"
    write_entry(info, home)
    drained = GATE.close(DRAIN_TIMEOUT)
    print(f"in-flight inferences {'finished' if drained else 'still running after the grace'}",
          flush=True)
    triton.stop()
    print("stopped", flush=True)
    return 0


def main() -> None:
    from veil.process import detach

    cfg = json.loads(sys.stdin.read())  # not on the command line: ps stays readable
    detach()  # the launcher tells `start` the server's pid and returns; output goes to the log
    sys.exit(run(cfg))


if __name__ == "__main__":
    main()
