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

import json
import math
import os
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
from veil.errors import InvalidArgument, NotFound, VeilError
from veil.privacy._split import SplitModel
from veil.privacy._util import check_device, model_device, pairs, progress_for, to_device
from veil.progress import Progress

FORMAT = "veil.obfuscator/1"
DISTRIBUTIONS = ("laplace", "gaussian")
MAX_ALPHA = 0.999


class IncompatibleObfuscator(InvalidArgument):
    """Noise parameters fitted for another model, layer or activation."""


def check_alpha(alpha: Any) -> float:
    """ALPHA as a float in [0, MAX_ALPHA], or a one-line error."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
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
    production: a known seed makes the noise predictable). `verbose`: tqdm bars on stderr while
    fitting, unless `fit` is given a progress.
    """

    def __init__(self, alpha: float = 0.8, distribution: str = "laplace", *, epochs: int = 3,
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

    # ------------------------------------------------------------------ parameters
    def _validate(self) -> None:
        self.alpha = check_alpha(self.alpha)
        if self.distribution not in DISTRIBUTIONS:
            raise InvalidArgument(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                                  f"not {self.distribution!r}")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise InvalidArgument(f"epochs must be a whole number >= 0, not {self.epochs!r}")
        if not (0.0 < float(self.min_share) <= 1.0):
            raise InvalidArgument(f"min_share must be in (0, 1], not {self.min_share!r}")
        if not (float(self.lr) > 0 and float(self.max_mean) >= 0):
            raise InvalidArgument("lr must be > 0 and max_mean >= 0")
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

        `progress` advances once per epoch (default: bars when `verbose`, else nothing)."""
        self._validate()
        if not isinstance(split_model, SplitModel):
            raise InvalidArgument("fit needs a SplitModel (see veil.privacy.split_at)")
        device = torch.device(self.device) if self.device else model_device(split_model)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        self._generators.clear()
        self._cache.clear()
        with _Frozen(split_model) as model:
            stats = self._signal_stats(model, loader, device)
            channels = stats["channels"]
            self.signal_mean_ = stats["mean"]
            self.signal_std_ = stats["std"]
            self.activation_shape_ = stats["shape"]
            self.dtype_ = stats["dtype"]
            self.model_identity_ = dict(split_model.identity)
            self.logits_ = torch.zeros(channels)
            self.mean_logits_ = torch.zeros(channels)
            self.loss_history_: list[float] = []
            if self.alpha > 0 and self.epochs > 0:
                self._train(model, loader, task_loss, device,
                            progress_for(progress, self.verbose, "epoch"))
        self._finish()
        return self

    def _signal_stats(self, model: SplitModel, loader: Iterable, device) -> dict[str, Any]:
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
        if count == 0:
            raise InvalidArgument("the loader yielded no batches: nothing to fit on")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp(min=0.0)
        # A channel that never varies carries no information; give it unit scale so its noise
        # parameters stay finite.
        std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
        return {"channels": shape[0], "mean": mean.float(), "std": std.float(), "shape": shape,
                "dtype": dtype}

    def _train(self, model: SplitModel, loader: Iterable, task_loss: Callable, device,
               progress: Progress) -> None:
        logits = self.logits_.clone().to(device).requires_grad_(True)
        mean_logits = self.mean_logits_.clone().to(device).requires_grad_(True)
        signal_std = self.signal_std_.to(device)
        opt = torch.optim.Adam([logits, mean_logits], lr=self.lr)
        view = (1, -1) + (1,) * (len(self.activation_shape_) - 1)
        progress.start(self.epochs, f"fitting noise (ALPHA {self.alpha:g})")
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
            if not losses:
                raise InvalidArgument("the loader yielded no batches on a second pass: pass a "
                                      "re-iterable loader (a DataLoader, a list), not an iterator")
            self.loss_history_.append(sum(losses) / len(losses))
            progress.advance(1)
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
                f"activation of shape {tuple(activation.shape)} does not fit this obfuscator: "
                f"expected {expect} from model {self.model_identity_['name']!r} split at "
                f"{self.model_identity_['split']!r}")
        if activation.dtype != self.dtype_:
            raise InvalidArgument(f"activation dtype {str(activation.dtype).removeprefix('torch.')}"
                                  f" does not match the fitted "
                                  f"{str(self.dtype_).removeprefix('torch.')}")

    def check_model(self, split_model: SplitModel) -> None:
        """Raise IncompatibleObfuscator unless fitted for exactly this model and split."""
        self._check_fitted()
        have, want = split_model.identity, self.model_identity_
        if have != want:
            raise IncompatibleObfuscator(
                f"noise parameters fitted for model {want['name']!r} split at {want['split']!r} "
                f"(fingerprint {want['fingerprint']}), not for model {have['name']!r} split at "
                f"{have['split']!r} (fingerprint {have['fingerprint']})")

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tensors = {"signal_mean": self.signal_mean_, "signal_std": self.signal_std_,
                       "logits": self.logits_, "mean_logits": self.mean_logits_,
                       "noise_mean": self.noise_mean_, "noise_scale": self.noise_scale_}
            torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                       tmp / "tensors.pt")
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
            if path.exists() and not (path / "config.json").exists():
                raise InvalidArgument(f"{path} exists and is not a saved obfuscator")
            swap_in(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: SplitModel | None = None, *,
             device: str | None = None, random_state: int | None = None) -> Obfuscator:
        """Read an obfuscator saved by `save`; with `model`, fail unless fitted for it.

        The seed is never saved: pass `random_state` only to replay draws in tests."""
        path = Path(path)
        cfg_file, tensor_file = path / "config.json", path / "tensors.pt"
        if not cfg_file.is_file() or not tensor_file.is_file():
            raise NotFound(f"no saved obfuscator at {path} (expected config.json and tensors.pt)")
        try:
            cfg = json.loads(cfg_file.read_text())
            if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
                raise InvalidArgument(f"{path}: not a saved obfuscator of format {FORMAT!r}")
            tensors = torch.load(tensor_file, map_location="cpu", weights_only=True)
            obf = cls(**cfg["params"], device=device, random_state=random_state)
            obf.model_identity_ = {k: str(cfg["model"][k]) for k in ("name", "split",
                                                                      "fingerprint")}
            obf.activation_shape_ = tuple(int(d) for d in cfg["activation"]["shape"])
            obf.dtype_ = getattr(torch, cfg["activation"]["dtype"])
            if not isinstance(obf.dtype_, torch.dtype):
                raise ValueError(f"unknown dtype {cfg['activation']['dtype']!r}")
            obf.loss_history_ = [float(v) for v in cfg["fit"]["loss_history"]]
            for name in ("signal_mean", "signal_std", "logits", "mean_logits", "noise_mean",
                         "noise_scale"):
                t = tensors[name]
                if not isinstance(t, torch.Tensor) or t.shape != (obf.activation_shape_[0],):
                    raise ValueError(f"tensor {name} does not have one value per channel")
                setattr(obf, name + "_", t)
        except VeilError:
            raise
        except Exception as e:  # any damage to either file: one line, not a traceback
            raise InvalidArgument(f"{path}: not a readable saved obfuscator "
                                  f"({type(e).__name__}: {e})") from None
        if model is not None:
            obf.check_model(model)
        return obf

    def __repr__(self) -> str:
        fitted = "" if hasattr(self, "noise_scale_") else ", unfitted"
        return f"Obfuscator(alpha={self.alpha:g}, distribution={self.distribution!r}{fitted})"
