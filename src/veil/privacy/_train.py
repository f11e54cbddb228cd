"""Training a split model to read through noise at the split, as the obfuscator will add it.

A model meant for obfuscated inference is trained with noise injected where the obfuscator
sits: for a share of the samples, r * s_c * unit noise, with r ~ U[0, noise_max) drawn per sample
and s_c each channel's standard deviation. Without it a frozen tail collapses under fitted noise
(docs/privacy.md). With the head frozen (the default) only the tail learns, so the head's
activation, what an attacker inverts, stays as it was. The shipped shapes and FaceBoxes weights
come from this recipe (scripts/train_shapes.py, scripts/train_faceboxes.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from veil.errors import InvalidArgument
from veil.privacy._obfuscator import MAX_EPOCHS
from veil.privacy._split import SplitModel
from veil.privacy._util import check_float, check_int, model_device, pairs, to_device
from veil.progress import Log, Progress, or_silent, quiet

NOISES = ("gaussian", "laplace")


def _unit_noise(shape: torch.Size, distribution: str, gen: torch.Generator) -> torch.Tensor:
    """Zero-mean, unit-variance Laplace (by inverse CDF) or Gaussian noise."""
    if distribution == "gaussian":
        return torch.randn(shape, generator=gen, device=gen.device)
    u = (torch.rand(shape, generator=gen, device=gen.device) - 0.5).clamp(-0.4999999, 0.4999999)
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2)


def _channel_view(std: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return std.to(a.device, a.dtype).view(1, -1, *([1] * (a.ndim - 2)))


def train_under_noise(model: SplitModel, batches: Iterable, loss_fn: Callable[[Any, Any], Any],
                      *, epochs: int, noise_max: float = 8.0, noisy_share: float = 0.75,
                      distribution: str = "laplace", channel_std: torch.Tensor | None = None,
                      freeze_head: bool = True, lr: float = 2e-3, weight_decay: float = 5e-4,
                      pct_start: float = 0.3, max_grad_norm: float | None = None, seed: int = 0,
                      validate: Callable[[SplitModel], float] | None = None,
                      progress: Progress | None = None, log: Log | None = None) -> list[float]:
    """Train `model` on `batches` with noise at the split; returns the mean loss of each epoch.

    `batches`: re-iterable (inputs, targets) batches with a length (a DataLoader, a list, a
    task's loader), one pass per epoch. `loss_fn(tail_output, targets)` is minimised with AdamW
    under a one-cycle schedule (`lr` at its peak, `pct_start` of the steps rising). For a
    `noisy_share` of the samples the activation gets r * s_c * unit `distribution` noise,
    r ~ U[0, `noise_max`); s_c is `channel_std` (one value per channel) or, when None, each
    channel's standard deviation over the batch. With `freeze_head` (the default) the head runs in
    eval mode without gradients and only the tail learns; otherwise the whole model does.
    `validate(model)`, called in eval mode after each epoch, adds a figure to the epoch's `log`
    line. The model is left in eval mode.
    """
    if not isinstance(model, SplitModel):
        raise InvalidArgument("train_under_noise needs a SplitModel (see veil.privacy.split_at)")
    if distribution not in NOISES:
        raise InvalidArgument(f"distribution must be one of {', '.join(NOISES)}, "
                              f"not {distribution!r}")
    check_int("epochs", epochs, 1, MAX_EPOCHS)
    check_float("noise_max", noise_max, 0.0, 1000.0)
    check_float("noisy_share", noisy_share, 0.0, 1.0)
    check_float("lr", lr, 0.0, 10.0, lo_open=True)
    check_float("weight_decay", weight_decay, 0.0, 10.0)
    if check_float("pct_start", pct_start, 0.0, 1.0, lo_open=True) == 1.0:
        raise InvalidArgument("pct_start must be below 1: the schedule also needs falling steps")
    if max_grad_norm is not None:
        check_float("max_grad_norm", max_grad_norm, 0.0, lo_open=True)
    check_int("seed", seed, 0, 2**64 - 1)
    if channel_std is not None and not (isinstance(channel_std, torch.Tensor)
                                        and channel_std.ndim == 1
                                        and torch.isfinite(channel_std).all()
                                        and (channel_std >= 0).all()):
        raise InvalidArgument("channel_std must be a 1-d tensor of finite values >= 0, one per "
                              "channel")
    try:
        steps = len(batches)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgument("batches must be re-iterable and have a length (a DataLoader, a "
                              "list): the schedule is planned over every step") from None
    if steps < 1:
        raise InvalidArgument("no batches to train on")
    progress, log = or_silent(progress), quiet(log)
    device = model_device(model)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    params = [p for p in (model.tail if freeze_head else model).parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                pct_start=pct_start)
    noisy = noise_max > 0 and noisy_share > 0
    history: list[float] = []
    t0 = time.perf_counter()
    progress.start(epochs * steps, "training under noise" + (" (head frozen)" if freeze_head
                                                              else ""))
    for epoch in range(epochs):
        model.train()
        if freeze_head:
            model.head.eval()  # batch-norm statistics of the head stay as they are
        losses = []
        for x, y in pairs(batches):
            if len(losses) == steps:
                raise InvalidArgument(f"batches yielded more than its length ({steps}) in a pass")
            x, y = to_device(x, device), to_device(y, device)
            with torch.set_grad_enabled(not freeze_head):
                a = model.forward_head(x)
            if noisy:
                std = a.detach().transpose(0, 1).flatten(1).std(1) if channel_std is None \
                    else channel_std
                shape = (len(a),) + (1,) * (a.ndim - 1)
                r = torch.rand(shape, generator=gen, device=device) * noise_max
                r = torch.where(torch.rand(shape, generator=gen, device=device) < noisy_share,
                                r, 0.0)
                a = a + r.to(a.dtype) * _channel_view(std, a) * _unit_noise(
                    a.shape, distribution, gen).to(a.dtype)
            loss = loss_fn(model.forward_tail(a), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            progress.advance(1)
        if not losses:
            raise InvalidArgument(f"batches yielded nothing in pass {epoch + 1}: pass a "
                                  "re-iterable (a DataLoader, a list), not an iterator")
        history.append(sum(losses) / len(losses))
        line = f"epoch {epoch + 1}/{epochs}  loss {history[-1]:.4f}"
        if validate is not None:
            model.eval()
            with torch.no_grad():
                line += f"  validation {validate(model):.4f}"
        log(f"{line}  ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return history
