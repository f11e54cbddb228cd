"""Learned noise on a split model's activation (after Shredder, ASPLOS 2020, and Cloak, WWW 2021).

ALPHA fixes a leakage budget; fitting decides where the noise goes. With per-channel signal
standard deviation s_c and noise standard deviation sigma_c, each element of channel c is a
Gaussian channel with capacity 0.5 * log2(1 + s_c^2 / sigma_c^2) bits. ALPHA sets the mean over
channels of log2(1 + s_c^2 / sigma_c^2) to log2(1 / ALPHA): with noise spread evenly, ALPHA is
the noise's share of each element's power. Fitting minimises the task loss of the frozen tail
over how that budget is shared between channels (bounded, so every channel keeps noise) and over
a per-channel noise mean. docs/privacy.md has the derivation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veil import __version__
from veil._newdir import swap_in
from veil.errors import InvalidArgument, NotFound
from veil.privacy._split import SplitModel
from veil.privacy._util import (
    check_device,
    check_float,
    check_int,
    load_tensors,
    model_device,
    pairs,
    progress_for,
    to_device,
)
from veil.progress import Progress

FORMAT = "veil.obfuscator/1"
DISTRIBUTIONS = ("gaussian", "laplace")
MAX_ALPHA = 0.999
MAX_EPOCHS = 1000  # passes over the fit split; the default is 3
PARAMS = ("alpha", "distribution", "epochs", "lr", "min_share", "max_mean")
TENSORS = ("signal_mean", "signal_std", "logits", "mean_logits", "noise_mean", "noise_scale")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}
# A saved obfuscator holds six float32 values per channel and a short JSON file: anything far
# larger is not one, and is refused before it is read.
MAX_CONFIG_BYTES = 1 << 20
MAX_TENSORS_BYTES = 256 << 20


class IncompatibleObfuscator(InvalidArgument):
    """Noise parameters fitted for another model, layer or activation."""


def check_alpha(alpha: Any) -> float:
    """ALPHA as a float in [0, MAX_ALPHA], or a one-line error."""
    try:
        if isinstance(alpha, bool):
            raise TypeError
        a = float(alpha)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(
            f"ALPHA must be a number in [0, {MAX_ALPHA}], not {alpha!r}") from None
    if not (0.0 <= a <= MAX_ALPHA) or math.isnan(a):
        raise InvalidArgument(f"ALPHA must be in [0, {MAX_ALPHA}] (0 is clean), not {alpha}")
    return a


class _Frozen:
    """Eval mode and no parameter gradients for the model while noise is fitted; restored after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.training = self.model.training
        self.grads = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in self.grads:
            p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc):
        for p, flag in self.grads:
            p.requires_grad_(flag)
        self.model.train(self.training)


class Obfuscator:
    """Per-channel learned noise added to an activation before it leaves the trusted zone.

    `alpha` in [0, 0.999]: 0 is clean (transform returns its input), larger is more noise.
    `distribution`: "laplace" or "gaussian" (unit-variance samples, scaled per channel).
    `min_share`: every channel keeps at least this fraction of the mean leakage budget, which
    bounds its noise scale. `max_mean`: bound on the noise mean, in channel standard deviations.
    `random_state`: seed for fitting and sampling; None draws from the OS (never set it in
    production: a known seed makes the noise predictable). `verbose`: progress on stderr while
    fitting (veil.progress.TqdmProgress), unless `fit` is given a progress.
    """

    def __init__(self, alpha: float = 0.8, distribution: str = "gaussian", *, epochs: int = 3,
                 lr: float = 0.01, min_share: float = 0.1, max_mean: float = 3.0,
                 random_state: int | None = None, device: str | None = None,
                 verbose: bool = False):
        self.alpha = alpha
        self.distribution = distribution
        self.epochs = epochs
        self.lr = lr
        self.min_share = min_share
        self.max_mean = max_mean
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self._validate()
        self._generators: dict[str, torch.Generator] = {}
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._local = threading.local()
        self._source = ""  # the folder it was loaded from, named in errors about its use

    # ------------------------------------------------------------------ parameters
    def _validate(self) -> None:
        self.alpha = check_alpha(self.alpha)
        if not isinstance(self.distribution, str) or self.distribution not in DISTRIBUTIONS:
            raise InvalidArgument(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                                  f"not {self.distribution!r}")
        check_int("epochs", self.epochs, 0, MAX_EPOCHS)
        check_float("lr", self.lr, 0.0, 10.0, lo_open=True)
        check_float("min_share", self.min_share, 0.0, 1.0, lo_open=True)
        check_float("max_mean", self.max_mean, 0.0, 100.0)
        if self.random_state is not None:
            check_int("random_state", self.random_state, 0, 2**64 - 1)
        if self.device is not None:
            check_device(self.device)

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("alpha", "distribution", "epochs", "lr", "min_share",
                                              "max_mean", "random_state", "device", "verbose")}

    @property
    def budget_bits(self) -> float:
        """Mean over channels of the per-element Gaussian-channel capacity, in bits (inf at 0)."""
        return math.inf if self.alpha == 0 else 0.5 * math.log2(1.0 / self.alpha)

    def _noise_params(self, logits: torch.Tensor, mean_logits: torch.Tensor,
                      signal_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the noise per channel from the free parameters; differentiable."""
        n = logits.numel()
        share = self.min_share + (1.0 - self.min_share) * n * torch.softmax(logits, 0)
        g = math.log2(1.0 / self.alpha) * share  # log2(1 + SNR_c), mean over channels fixed
        x = g * math.log(2.0)
        rho = torch.exp(-x / 2) * torch.rsqrt(-torch.expm1(-x))  # 1/sqrt(2^g - 1), no overflow
        return self.max_mean * torch.tanh(mean_logits) * signal_std, rho * signal_std

    def _generator(self, device: torch.device) -> torch.Generator:
        """The generator for `device`: seeded once from `random_state` when one is set, else
        reseeded from the OS on every call, so no two calls (or forked processes) share a
        stream and recovering one call's generator state predicts nothing else."""
        key = str(device)
        g = self._generators.get(key)
        if g is None:
            g = self._generators[key] = torch.Generator(device=device)
            if self.random_state is not None:
                g.manual_seed(self.random_state)
        if self.random_state is None:
            g.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
        return g

    def _sample(self, like: torch.Tensor) -> torch.Tensor:
        """Unit-variance noise shaped like `like`, fresh on every call."""
        g = self._generator(like.device)
        if self.distribution == "gaussian":
            return torch.randn(like.shape, generator=g, device=like.device, dtype=like.dtype)
        # Laplace by inverse CDF: |v| uniform in (0, 1], sign(v) a fair coin; -log|v| ~ Exp(1).
        v = torch.empty_like(like).uniform_(-1.0, 1.0, generator=g)
        e = v.abs().clamp_(min=torch.finfo(like.dtype).tiny).log_()
        # Laplace(0, 1) has variance 2
        return torch.copysign(e, v, out=e).mul_(1.0 / math.sqrt(2.0))

    # ------------------------------------------------------------------ fit
    def fit(self, split_model: SplitModel, loader: Iterable, task_loss: Callable, *,
            progress: Progress | None = None) -> Obfuscator:
        """Learn the noise parameters on `loader` with the model frozen; returns self.

        `progress` (default: bars when `verbose`, else nothing) gets one phase: a pass that
        measures the activation, then the epochs, advancing once per batch (once per pass
        when the loader has no length)."""
        self._validate()
        if not isinstance(split_model, SplitModel):
            raise InvalidArgument("fit needs a SplitModel (see veil.privacy.split_at)")
        device = torch.device(self.device) if self.device else model_device(split_model)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        self._generators.clear()
        self._cache.clear()
        progress = progress_for(progress, self.verbose, "batch")
        epochs = self.epochs if self.alpha > 0 else 0
        try:
            per_pass: int | None = len(loader)  # type: ignore[arg-type]
        except TypeError:
            per_pass = None
        progress.start((per_pass or 1) * (1 + epochs), f"fitting noise (ALPHA {self.alpha:g})")
        tick = lambda: progress.advance(1)  # noqa: E731
        batch_done, pass_done = (tick, lambda: None) if per_pass else (lambda: None, tick)
        with _Frozen(split_model) as model:
            stats = self._signal_stats(model, loader, device, batch_done)
            pass_done()
            channels = stats["channels"]
            self.signal_mean_ = stats["mean"]
            self.signal_std_ = stats["std"]
            self.activation_shape_ = stats["shape"]
            self.dtype_ = stats["dtype"]
            self.model_identity_ = dict(split_model.identity)
            self.logits_ = torch.zeros(channels)
            self.mean_logits_ = torch.zeros(channels)
            self.loss_history_: list[float] = []
            if epochs > 0:
                self._train(model, loader, task_loss, device, batch_done, pass_done)
        self._finish()
        return self

    def _signal_stats(self, model: SplitModel, loader: Iterable, device,
                      batch_done: Callable[[], None]) -> dict[str, Any]:
        total = total_sq = None
        count = 0
        shape = dtype = None
        with torch.no_grad():
            for x, _ in pairs(loader):
                a = model.forward_head(to_device(x, device))
                if not isinstance(a, torch.Tensor) or a.ndim < 2 or not a.is_floating_point():
                    raise InvalidArgument("the head must return a floating tensor shaped "
                                          "(batch, channels, ...)")
                if shape is None:
                    shape, dtype = tuple(a.shape[1:]), a.dtype
                elif a.shape[1] != shape[0] or a.ndim != len(shape) + 1:
                    raise InvalidArgument(f"the head returned activations of shape "
                                          f"{tuple(a.shape)} after {(-1, *shape)}")
                dims = [0, *range(2, a.ndim)]
                a64 = a.detach().double()
                s, sq = a64.sum(dims).cpu(), (a64 * a64).sum(dims).cpu()
                total = s if total is None else total + s
                total_sq = sq if total_sq is None else total_sq + sq
                count += a.numel() // a.shape[1]
                batch_done()
        if count == 0:
            raise InvalidArgument("the loader yielded no batches: nothing to fit on")
        if not (torch.isfinite(total).all() and torch.isfinite(total_sq).all()):
            raise InvalidArgument("the head's activations are not finite (nan or inf): check the "
                                  "model's weights and the data")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp(min=0.0)
        # A channel that never varies carries no information; give it unit scale so its noise
        # parameters stay finite.
        std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
        return {"channels": shape[0], "mean": mean.float(), "std": std.float(), "shape": shape,
                "dtype": dtype}

    def _train(self, model: SplitModel, loader: Iterable, task_loss: Callable, device,
               batch_done: Callable[[], None], pass_done: Callable[[], None]) -> None:
        logits = self.logits_.clone().to(device).requires_grad_(True)
        mean_logits = self.mean_logits_.clone().to(device).requires_grad_(True)
        signal_std = self.signal_std_.to(device)
        opt = torch.optim.Adam([logits, mean_logits], lr=self.lr)
        view = (1, -1) + (1,) * (len(self.activation_shape_) - 1)
        for _ in range(self.epochs):
            losses = []
            for x, y in pairs(loader):
                with torch.no_grad():
                    a = model.forward_head(to_device(x, device))
                mean, std = self._noise_params(logits, mean_logits, signal_std)
                noise = std.view(view).to(a.dtype) * self._sample(a)
                noisy = a + mean.view(view).to(a.dtype) + noise
                loss = task_loss(model.forward_tail(noisy), to_device(y, device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                batch_done()
            if not losses:
                raise InvalidArgument("the loader yielded no batches on a second pass: pass a "
                                      "re-iterable loader (a DataLoader, a list), not an iterator")
            self.loss_history_.append(sum(losses) / len(losses))
            if not math.isfinite(self.loss_history_[-1]):
                raise InvalidArgument(f"fitting diverged in epoch {len(self.loss_history_)}: "
                                      f"the task loss is {self.loss_history_[-1]}")
            pass_done()
        self.logits_ = logits.detach().cpu()
        self.mean_logits_ = mean_logits.detach().cpu()

    def _finish(self) -> None:
        if self.alpha == 0:
            self.noise_mean_ = torch.zeros_like(self.signal_std_)
            self.noise_scale_ = torch.zeros_like(self.signal_std_)
        else:
            with torch.no_grad():
                m, s = self._noise_params(self.logits_, self.mean_logits_, self.signal_std_)
            self.noise_mean_, self.noise_scale_ = m.float(), s.float()
            if not (torch.isfinite(self.noise_mean_).all()
                    and torch.isfinite(self.noise_scale_).all()):
                raise InvalidArgument("fitting gave noise parameters that are not finite")
        self._cache.clear()

    # ------------------------------------------------------------------ transform
    def _check_fitted(self) -> None:
        if not hasattr(self, "noise_scale_"):
            raise InvalidArgument("this Obfuscator is not fitted yet: call fit() or load()")

    def check_activation(self, activation: Any) -> None:
        """One clear error when `activation` is not what the obfuscator was fitted on."""
        self._check_fitted()
        if not isinstance(activation, torch.Tensor):
            raise InvalidArgument(f"the activation must be a torch.Tensor, not "
                                  f"{type(activation).__name__}")
        want = (-1, *self.activation_shape_)
        expect = "(N, " + ", ".join([str(self.activation_shape_[0])] + ["*"] *
                                     (len(self.activation_shape_) - 1)) + ")"
        if activation.ndim != len(want) or activation.shape[1] != self.activation_shape_[0]:
            raise InvalidArgument(
                f"{self._where()}activation of shape {tuple(activation.shape)} does not fit this "
                f"obfuscator: "
                f"expected {expect} from model {self.model_identity_['name']!r} split at "
                f"{self.model_identity_['split']!r}")
        if activation.dtype != self.dtype_:
            raise InvalidArgument(f"{self._where()}activation dtype "
                                  f"{str(activation.dtype).removeprefix('torch.')}"
                                  f" does not match the fitted "
                                  f"{str(self.dtype_).removeprefix('torch.')}")

    def _where(self) -> str:
        """"FOLDER: " for an obfuscator loaded from one, so errors about its use name it."""
        source = getattr(self, "_source", "")
        return f"{source}: " if source else ""

    def check_model(self, split_model: SplitModel) -> None:
        """Raise IncompatibleObfuscator unless fitted for exactly this model and split."""
        self._check_fitted()
        have, want = split_model.identity, self.model_identity_
        if have != want:
            raise IncompatibleObfuscator(
                f"{self._where()}noise parameters fitted for model {want['name']!r} split at "
                f"{want['split']!r} (fingerprint {want['fingerprint']}), not for model "
                f"{have['name']!r} split at {have['split']!r} (fingerprint "
                f"{have['fingerprint']})")

    def _params_for(self, activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (activation.device, activation.dtype, activation.ndim)
        if key not in self._cache:
            view = (1, -1) + (1,) * (activation.ndim - 2)
            unit = 1.0 if self.distribution == "gaussian" else 1.0 / math.sqrt(2.0)
            self._cache[key] = tuple(  # type: ignore[assignment]
                t.to(activation.device, activation.dtype).view(view)
                for t in (self.noise_mean_, self.noise_scale_ * unit))
        return self._cache[key]

    def transform(self, activation: torch.Tensor) -> torch.Tensor:
        """The obfuscated activation, with fresh noise on every call (ALPHA 0: the input itself)."""
        self.check_activation(activation)
        if self.alpha == 0:
            return activation
        mean, scale = self._params_for(activation)
        g = self._generator(activation.device)
        with torch.no_grad():
            # Few passes over memory and one new buffer (the result): this runs on every frame.
            if self.distribution == "gaussian":
                out = torch.randn(activation.shape, generator=g, device=activation.device,
                                  dtype=activation.dtype)
            else:
                v = self._scratch(activation).uniform_(-1.0, 1.0, generator=g)
                out = torch.abs(v).clamp_min_(torch.finfo(activation.dtype).tiny).log_()
                torch.copysign(out, v, out=out)  # Laplace(0, 1): variance 2, folded into scale
            torch.addcmul(activation, out, scale, out=out)
            return out.add_(mean)

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A per-thread buffer for uniform draws, reused across calls of the same shape."""
        local = self._local.__dict__
        buf = local.get("buf")
        if buf is None or buf.shape != like.shape or buf.device != like.device \
                or buf.dtype != like.dtype \
                or buf.is_inference() != torch.is_inference_mode_enabled():
            buf = local["buf"] = torch.empty_like(like)
        return buf

    __call__ = transform

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        self._check_fitted()
        params = self.get_params()
        for private in ("verbose", "device", "random_state"):  # a saved seed would replay noise
            params.pop(private)
        return {
            "format": FORMAT,
            "veil_version": __version__,
            "params": params,
            "model": self.model_identity_,
            "activation": {"shape": list(self.activation_shape_),
                           "dtype": str(self.dtype_).removeprefix("torch."),
                           "parameterization": "per-channel (any spatial size)"},
            "budget_bits_per_element": None if self.alpha == 0 else self.budget_bits,
            "fit": {"loss_history": self.loss_history_},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write config.json and tensors.pt into the directory `path` (replaced atomically)."""
        cfg = self.config()
        path = Path(path)
        check_save_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tensors = {"signal_mean": self.signal_mean_, "signal_std": self.signal_std_,
                       "logits": self.logits_, "mean_logits": self.mean_logits_,
                       "noise_mean": self.noise_mean_, "noise_scale": self.noise_scale_}
            torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                       tmp / "tensors.pt")
            cfg["tensors_sha256"] = _sha256(tmp / "tensors.pt")
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
            check_save_path(path)
            swap_in(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: SplitModel | None = None, *,
             device: str | None = None, random_state: int | None = None) -> Obfuscator:
        """Read an obfuscator saved by `save`; with `model`, fail unless fitted for it.

        Both files are checked before use (docs/privacy.md, "Saved form"): a damaged or edited
        save is refused in one line naming the file. The seed is never saved: pass
        `random_state` only to replay draws in tests."""
        path = Path(path)
        cfg_file, tensor_file = path / "config.json", path / "tensors.pt"
        if not path.is_dir():
            raise NotFound(f"no saved obfuscator at {path} (expected a folder with config.json "
                           f"and tensors.pt)")
        missing = [f.name for f in (cfg_file, tensor_file) if not f.is_file()]
        if missing:
            raise NotFound(f"no saved obfuscator at {path}: {' and '.join(missing)} missing")
        obf = cls._from_config(_read_config(cfg_file), cfg_file)
        obf.device, obf.random_state = device, random_state
        obf._validate()
        obf._load_tensors(tensor_file)
        obf._source = str(path)
        if model is not None:
            obf.check_model(model)
        return obf

    @classmethod
    def _from_config(cls, cfg: dict, file: Path) -> Obfuscator:
        """An unfitted obfuscator from a saved config, every field checked."""

        def get(*keys: str, kind: type = dict) -> Any:
            obj: Any = cfg
            for i, k in enumerate(keys):
                if not isinstance(obj, dict) or k not in obj:
                    raise InvalidArgument(f"{file}: {'.'.join(keys[:i + 1])} is missing")
                obj = obj[k]
            if not isinstance(obj, kind):
                raise InvalidArgument(f"{file}: {'.'.join(keys)} has the wrong type "
                                      f"({type(obj).__name__})")
            return obj

        params = get("params")
        unknown = sorted(str(k) for k in params if k not in PARAMS)
        if unknown:
            raise InvalidArgument(f"{file}: unknown params {', '.join(unknown)}")
        absent = [k for k in PARAMS if k not in params]
        if absent:
            raise InvalidArgument(f"{file}: params.{absent[0]} is missing")
        try:
            obf = cls(**params)
        except InvalidArgument as e:
            raise InvalidArgument(f"{file}: params: {e}") from None
        model = {k: get("model", k, kind=str) for k in ("name", "split", "fingerprint")}
        if not re.fullmatch(r"[0-9a-f]{16}", model["fingerprint"]):
            raise InvalidArgument(f"{file}: model.fingerprint must be 16 hex digits, not "
                                  f"{model['fingerprint'][:40]!r}")
        obf.model_identity_ = model
        shape = get("activation", "shape", kind=list)
        if not 1 <= len(shape) <= 8 or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d < 2**31 for d in shape):
            raise InvalidArgument(f"{file}: activation.shape must be 1 to 8 whole numbers >= 1, "
                                  f"not {str(shape)[:60]}")
        obf.activation_shape_ = tuple(shape)
        dtype = get("activation", "dtype", kind=str)
        if dtype not in DTYPES:
            raise InvalidArgument(f"{file}: activation.dtype must be one of "
                                  f"{', '.join(DTYPES)}, not {dtype[:40]!r}")
        obf.dtype_ = DTYPES[dtype]
        history = get("fit", "loss_history", kind=list)
        if not all(_finite_number(v) for v in history):
            raise InvalidArgument(f"{file}: fit.loss_history must hold finite numbers")
        fitted = obf.epochs if obf.alpha > 0 else 0
        if len(history) != fitted:
            raise InvalidArgument(f"{file}: fit.loss_history has {len(history)} values, but "
                                  f"ALPHA {obf.alpha:g} fitted for {obf.epochs} epochs has "
                                  f"{fitted}")
        obf.loss_history_ = [float(v) for v in history]
        if "budget_bits_per_element" in cfg:
            budget = cfg["budget_bits_per_element"]
            want = None if obf.alpha == 0 else obf.budget_bits
            same = budget is None if want is None else (
                _finite_number(budget) and math.isclose(budget, want, rel_tol=1e-9))
            if not same:
                raise InvalidArgument(f"{file}: budget_bits_per_element is {budget!r}, but ALPHA "
                                      f"{obf.alpha:g} allows {want}")
        sha = cfg.get("tensors_sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise InvalidArgument(f"{file}: tensors_sha256 must be 64 hex digits")
        obf._saved_sha256 = sha
        return obf

    def _load_tensors(self, file: Path) -> None:
        """Read tensors.pt: six float32 values per channel, finite, consistent with the config."""
        tensors = load_tensors(file, MAX_TENSORS_BYTES, "a saved obfuscator")
        channels = self.activation_shape_[0]
        if not isinstance(tensors, dict) or set(tensors) != set(TENSORS):
            have = sorted(map(str, tensors)) if isinstance(tensors, dict) else []
            raise InvalidArgument(f"{file}: holds {', '.join(have) or type(tensors).__name__}, "
                                  f"not the tensors {', '.join(TENSORS)}")
        for name in TENSORS:
            t = tensors[name]
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided \
                    or t.dtype != torch.float32 or tuple(t.shape) != (channels,):
                got = (f"{str(t.dtype).removeprefix('torch.')} of shape {tuple(t.shape)}"
                       if isinstance(t, torch.Tensor) else type(t).__name__)
                raise InvalidArgument(f"{file}: {name} must be float32 with one value per channel "
                                      f"({channels},), not {got}")
            _refuse_where(file, name, ~torch.isfinite(t), t, "must be finite")
            setattr(self, name + "_", t.clone())
        _refuse_where(file, "signal_std", self.signal_std_ <= 0, self.signal_std_,
                      "must be > 0")
        _refuse_where(file, "noise_scale", self.noise_scale_ < 0, self.noise_scale_,
                      "must be >= 0")
        if self.alpha == 0:
            for name in ("noise_mean", "noise_scale"):
                t = getattr(self, name + "_")
                _refuse_where(file, name, t != 0, t, "must be 0 at ALPHA 0 (clean)")
        else:
            with torch.no_grad():
                mean, scale = self._noise_params(self.logits_, self.mean_logits_,
                                                 self.signal_std_)
            for name, want in (("noise_scale", scale.float()), ("noise_mean", mean.float())):
                have = getattr(self, name + "_")
                off = (have - want).abs() > 1e-4 * want.abs() + 1e-6 * self.signal_std_
                if off.any():
                    i = int(off.nonzero()[0])
                    raise InvalidArgument(
                        f"{file}: {name} is {have[i].item():.4g} in channel {i}, but ALPHA "
                        f"{self.alpha:g} with the saved signal_std, logits and mean_logits gives "
                        f"{want[i].item():.4g}: the file was changed after fitting")
        if self._saved_sha256 is not None and _sha256(file) != self._saved_sha256:
            raise InvalidArgument(f"{file}: its SHA-256 differs from tensors_sha256 in "
                                  f"config.json: one of the two was changed after saving")
        self._cache.clear()

    def __repr__(self) -> str:
        fitted = "" if hasattr(self, "noise_scale_") else ", unfitted"
        return f"Obfuscator(alpha={self.alpha:g}, distribution={self.distribution!r}{fitted})"


def check_save_path(path: Path) -> None:
    """Refuse, before any work, to save over something that is not a saved obfuscator."""
    if path.exists() and not (path.is_dir() and (path / "config.json").exists()):
        raise InvalidArgument(f"{path} exists and is not a saved obfuscator")


def _read_config(file: Path) -> dict:
    size = file.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise InvalidArgument(f"{file}: {size} bytes, more than a saved obfuscator can be "
                              f"({MAX_CONFIG_BYTES} at most)")
    try:
        cfg = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument(f"{file}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"{file}, line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise InvalidArgument(f"{file}: nested too deeply to be a saved obfuscator") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise InvalidArgument(f"{file}: not a saved obfuscator of format {FORMAT!r}")
    return cfg


def _refuse_where(file: Path, name: str, bad: torch.Tensor, t: torch.Tensor, rule: str) -> None:
    """One line naming the first channel where `bad` holds, and how many more there are."""
    if bad.any():
        where = bad.nonzero().flatten()
        i = int(where[0])
        more = f" (and {len(where) - 1} more channels)" if len(where) > 1 else ""
        raise InvalidArgument(f"{file}: {name} {rule}, but is {t[i].item():.4g} in channel "
                              f"{i}{more}")


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
