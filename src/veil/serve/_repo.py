"""Triton model repositories: one folder per model with `config.pbtxt` and numbered versions.

veil writes models in the layout and format Triton's PyTorch (LibTorch) backend loads
(`platform: "pytorch_libtorch"`, `<version>/model.pt` TorchScript, inputs and outputs named
`INPUT_<i>` / `OUTPUT__<i>`), so the same repository works on a Triton deployment with that
backend. Locally, veil's server runs these models through PyTriton (whose bundled Triton has only
the Python backend): it reads the same configs with Triton's own protobuf schema.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil._newdir import swap_in
from veil.errors import AlreadyExists, InvalidArgument, NotFound, require_extra

CONFIG = "config.pbtxt"
PLATFORM = "pytorch_libtorch"
MODEL_FILE = "model.pt"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Triton's data types and the numpy dtype names they carry on the wire
DTYPES = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_FP64": "float64",
          "TYPE_INT64": "int64", "TYPE_INT32": "int32", "TYPE_INT8": "int8", "TYPE_UINT8": "uint8",
          "TYPE_BOOL": "bool"}
WIRE = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64",
        "int32": "INT32", "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    dims: tuple[int, ...]  # without the batch dimension when the model batches

    @property
    def wire_type(self) -> str:
        return WIRE[self.dtype]


@dataclass
class ModelSpec:
    name: str
    path: Path
    version: int
    max_batch_size: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dynamic_batching: bool = False
    max_queue_delay_us: int = 0
    instances: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_file(self) -> Path:
        return self.path / str(self.version) / MODEL_FILE

    def shape(self, t: TensorSpec) -> list[int]:
        """The shape Triton reports for `t`: -1 for the batch when the model batches."""
        return ([-1] if self.max_batch_size > 0 else []) + list(t.dims)


def _pb():
    require_extra("tritonclient.grpc", "serve", "reading Triton model configs")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format, model_config_pb2


def parse_config(path: Path) -> ModelSpec:
    """One model's config.pbtxt, parsed with Triton's schema; errors name the file and line."""
    text_format, pb = _pb()
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise NotFound(f"model {path.name!r}: no {CONFIG} in {path}")
    try:
        cfg = text_format.Parse(cfg_file.read_text(), pb.ModelConfig())
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        msg = str(e).split(" : ", 1)[-1]
        raise InvalidArgument(f"{cfg_file}:{line}:{col}: {msg}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"{cfg_file}: not a text file") from None
    name = cfg.name or path.name
    if name != path.name:
        raise InvalidArgument(f"{cfg_file}: name {name!r} differs from its folder {path.name!r} "
                              "(Triton refuses that)")
    platform = cfg.platform or cfg.backend
    if platform not in (PLATFORM, "pytorch"):
        raise InvalidArgument(f"{cfg_file}: platform {platform or '(none)'!r} is not served by "
                              f"veil's local server; it runs {PLATFORM!r} (TorchScript) models")
    if cfg.max_batch_size < 0:
        raise InvalidArgument(f"{cfg_file}: max_batch_size must be >= 0")

    def tensors(items, what: str) -> list[TensorSpec]:
        out = []
        for t in items:
            dtype = pb.DataType.Name(t.data_type)
            if dtype not in DTYPES:
                raise InvalidArgument(f"{cfg_file}: {what} {t.name!r} has data type {dtype}; "
                                      f"veil serves {', '.join(DTYPES)}")
            if not t.dims or any(d == 0 or d < -1 for d in t.dims):
                raise InvalidArgument(f"{cfg_file}: {what} {t.name!r} needs dims of positive "
                                      "sizes (or -1 for a variable one)")
            out.append(TensorSpec(t.name, DTYPES[dtype], tuple(int(d) for d in t.dims)))
        if not out:
            raise InvalidArgument(f"{cfg_file}: the model declares no {what}")
        return out

    inputs, outputs = tensors(cfg.input, "input"), tensors(cfg.output, "output")
    versions = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise NotFound(f"model {name!r}: no version folder (e.g. {path / '1'})")
    version = versions[-1]  # Triton's default policy: the latest version
    instances = sum(g.count or 1 for g in cfg.instance_group) or 1
    spec = ModelSpec(name, path, version, cfg.max_batch_size, inputs, outputs,
                     dynamic_batching=cfg.HasField("dynamic_batching"),
                     max_queue_delay_us=cfg.dynamic_batching.max_queue_delay_microseconds,
                     instances=instances)
    if not spec.model_file.is_file():
        raise NotFound(f"model {name!r}: no {MODEL_FILE} in {path / str(version)}")
    return spec


def read_repository(root: Path) -> list[ModelSpec]:
    """Every model in the repository `root` (each sub-folder with a config), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise NotFound(f"no model repository at {root}")
    models = [parse_config(p) for p in sorted(root.iterdir())
              if p.is_dir() and not p.name.startswith(".")]
    if not models:
        raise NotFound(f"the model repository {root} holds no models (veil solutions "
                       "face-privacy export-models writes the face detector's)")
    return models


def config_text(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                max_batch_size: int, dynamic_batching: bool = True,
                max_queue_delay_us: int = 500) -> str:
    """config.pbtxt for a TorchScript model, in Triton's text format."""
    text_format, pb = _pb()
    cfg = pb.ModelConfig(name=name, platform=PLATFORM, max_batch_size=max_batch_size)
    rev = {v: k for k, v in DTYPES.items()}
    for group, specs in ((cfg.input, inputs), (cfg.output, outputs)):
        for t in specs:
            group.add(name=t.name, data_type=pb.DataType.Value(rev[t.dtype]), dims=list(t.dims))
    if dynamic_batching and max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    cfg.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_AUTO)
    return text_format.MessageToString(cfg)


def _jit():
    """torch.jit, which Triton's LibTorch backend needs (TorchScript), without torch's notice that
    the API is deprecated in favour of torch.export: Triton does not load exported programs."""
    import torch

    return torch.jit


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated",
                            category=DeprecationWarning)
    return ctx


def load_torchscript(path: Path, device: str = "cpu"):
    ctx = _quiet()
    try:
        return _jit().load(str(path), map_location=device).eval()
    except RuntimeError as e:
        raise InvalidArgument(f"{path}: not a TorchScript model ({str(e).splitlines()[0]})"
                              ) from None
    finally:
        ctx.__exit__(None, None, None)


def write_model(root: Path, name: str, module, example: Any, *, input_names: list[str],
                output_names: list[str], max_batch_size: int = 8, dynamic_batching: bool = True,
                replace: bool = False) -> Path:
    """Trace `module` on `example` (a batch) and write it as model `name` version 1 under `root`,
    with its config. The folder appears whole or not at all; an existing model is kept unless
    `replace`."""
    import torch

    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"{name!r} is not a valid model name (letters, digits, _ . -)")
    if max_batch_size < 0:
        raise InvalidArgument(f"max_batch_size must be >= 0, not {max_batch_size}")
    root = Path(root)
    target = root / name
    if target.exists() and not replace:
        raise AlreadyExists(f"model {name!r} already exists in {root} (replace it explicitly; "
                            "snapshot the volume first to keep the old one)")
    examples = example if isinstance(example, tuple) else (example,)
    module = module.eval()
    with torch.no_grad():
        out = module(*examples)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if len(outs) != len(output_names) or len(examples) != len(input_names):
        raise InvalidArgument(f"model {name!r}: {len(examples)} inputs / {len(outs)} outputs, "
                              f"but {len(input_names)} / {len(output_names)} names")
    batched = max_batch_size > 0

    def spec(n: str, t) -> TensorSpec:
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in WIRE:
            raise InvalidArgument(f"model {name!r}: {n} has dtype {dtype}, not servable")
        dims = tuple(t.shape[1:] if batched else t.shape)
        return TensorSpec(n, dtype, dims)

    inputs = [spec(n, t) for n, t in zip(input_names, examples, strict=True)]
    outputs = [spec(n, t) for n, t in zip(output_names, outs, strict=True)]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        (tmp / "1").mkdir()
        ctx = _quiet()
        try:
            # torch's own check_trace traces a second time and runs the model three more
            # times (18 of the 29 s an export took); comparing the traced model's outputs with
            # the module's is the check that matters, at the cost of one forward pass
            traced = _jit().trace(module, examples if len(examples) > 1 else examples[0],
                                  check_trace=False)
            with torch.no_grad():
                got = traced(*examples)
            got = got if isinstance(got, (tuple, list)) else (got,)
            if not all(torch.allclose(g, w, rtol=1e-4, atol=1e-5)
                       for g, w in zip(got, outs, strict=True)):
                raise InvalidArgument(f"model {name!r}: the traced model's outputs differ from "
                                      "the module's (control flow that depends on the input?)")
            _jit().save(traced, str(tmp / "1" / MODEL_FILE))
        finally:
            ctx.__exit__(None, None, None)
        (tmp / CONFIG).write_text(config_text(name, inputs, outputs,
                                              max_batch_size=max_batch_size,
                                              dynamic_batching=dynamic_batching))
        swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
