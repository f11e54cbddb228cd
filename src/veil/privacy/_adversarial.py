"""Adversarial training of the trusted side (issue 17, part 2: the "adversarial" mechanism).

The trusted side (a SplitModel's head, usually the base head and a bottleneck) and the tail are
trained while Gaussian noise is injected at the split at a fixed level relative to each
channel's standard deviation (over the batch), as the obfuscator adds it. Each batch alternates:

(a) adversary steps: an inversion decoder (MSE to the image) and one attribute classifier per
    named attribute (cross-entropy) learn from the noisy activation, the model frozen;
(b) a model step: the task's cross-entropy, plus `lambda_attr` times each classifier's
    cross-entropy to the uniform distribution (a max-entropy target: stabler than maximising
    the classifiers' loss), minus `lambda_rec` times the decoder's MSE capped at the mean image's
    (no reward for a decoder worse than the mean image), plus, when moved pairs are given,
    `lambda_pair` times the mean squared distance between the two images' activations in units
    of the injected noise (the two-input test's D^2 / elements), so that moving the shape
    changes little of what is sent.

DeepObfuscator and ResSFL train this way; here the noise stays on through both steps so the
head learns what the noise cannot hide. Gradients are clipped; the adversaries restart from
their current state, never from scratch, so a fresh attacker after training (the leakage
measures in veil.privacy._leakage) is the real test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from veil.errors import InvalidArgument
from veil.privacy._attack import InversionDecoder
from veil.privacy._leakage import Probe
from veil.privacy._split import SplitModel
from veil.progress import Log, quiet


@dataclass
class AdversarialConfig:
    """How `train_adversarial` trains. The shipped shapes mechanism's settings are in its weights
    file's info (the command: scripts/train_shapes_mechanisms.py)."""

    epochs: int = 4
    batch_size: int = 128
    noise: float = 2.0  # injected noise, x each channel's standard deviation over the batch
    lambda_rec: float = 1.0  # weight of the decoder's (capped) MSE, subtracted
    lambda_attr: float = 0.3  # weight of each classifier's cross-entropy to uniform
    lambda_pair: float = 0.0  # weight of the moved pairs' distance in noise units
    lr: float = 1e-3  # the model (head and tail), AdamW, cosine decay
    adversary_lr: float = 2e-3
    adversary_steps: int = 1  # adversary steps per model step
    clip: float = 5.0  # gradient norm clip, model and adversaries
    decoder_width: int = 48
    probe_width: int = 48
    seed: int = 0
    attributes: dict[str, int] = field(default_factory=dict)  # name -> number of classes


def _relative_noise(a: torch.Tensor, level: float, gen: torch.Generator) -> torch.Tensor:
    """`a` + level * s_c * N(0, 1), s_c each channel's standard deviation over the batch (kept
    in the graph: the noise scales with the signal, as the obfuscator's does)."""
    std = a.transpose(0, 1).flatten(1).std(1).view(1, -1, *([1] * (a.ndim - 2)))
    eps = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
    return a + level * std * eps


def _uniform_ce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the predicted distribution to the uniform one (log K at its minimum)."""
    return -F.log_softmax(logits, 1).mean(1).mean()


class Adversaries(nn.Module):
    """An inversion decoder and one attribute classifier per attribute, on a (C, h, w)
    activation of images of side `image_side`."""

    def __init__(self, channels: int, side: tuple[int, int], image_side: int,
                 attributes: dict[str, int], decoder_width: int, probe_width: int):
        super().__init__()
        self.decoder = InversionDecoder(channels, image_side // side[0], decoder_width)
        self.probes = nn.ModuleDict({name: Probe(channels, side, k, probe_width)
                                     for name, k in attributes.items()})

    def losses(self, a: torch.Tensor, x: torch.Tensor, labels: dict[str, torch.Tensor]
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(decoder MSE, {attribute: classifier logits})."""
        return (F.mse_loss(self.decoder(a), x),
                {name: probe(a) for name, probe in self.probes.items()})


def train_adversarial(model: SplitModel, images: torch.Tensor, targets: torch.Tensor,
                      attributes: dict[str, torch.Tensor], config: AdversarialConfig, *,
                      pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
                      validate: Callable[[SplitModel], float] | None = None,
                      log: Log | None = None) -> list[dict[str, float]]:
    """Train `model` (head and tail) against adversaries on `images` (N, 3, H, W) in [0, 1]
    with class `targets` (N,) and attribute labels (name -> (N,), classes in
    `config.attributes`); returns each epoch's mean figures. `pairs` (A, B), images of the same
    scene with the shape moved, feed the pair term when `config.lambda_pair` > 0. Every parameter
    of the model with requires_grad learns; the model is left in eval mode."""
    if not isinstance(model, SplitModel):
        raise InvalidArgument("train_adversarial needs a SplitModel")
    if images.ndim != 4 or len(images) != len(targets) or len(images) < 2:
        raise InvalidArgument(f"images (N, 3, H, W) with N >= 2 and one target each, not "
                              f"{tuple(images.shape)} and {tuple(targets.shape)}")
    missing = set(config.attributes) - set(attributes)
    if missing:
        raise InvalidArgument(f"no labels for attribute(s) {', '.join(sorted(missing))}")
    if config.lambda_pair > 0 and pairs is None:
        raise InvalidArgument("lambda_pair > 0 needs moved pairs")
    log = quiet(log)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model.eval()
    with torch.no_grad():
        probe_a = model.forward_head(images[:2])
    adv = Adversaries(probe_a.shape[1], tuple(probe_a.shape[-2:]), images.shape[-1],
                      config.attributes, config.decoder_width, config.probe_width)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidArgument("the model has nothing to train (every parameter is frozen)")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)
    adv_opt = torch.optim.AdamW(adv.parameters(), lr=config.adversary_lr, weight_decay=1e-4)
    per_epoch = math.ceil(len(images) / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * per_epoch)
    mean_image = images.mean(0, keepdim=True)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        sums: dict[str, float] = {}
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            if len(idx) < 2:
                continue
            x, y = images[idx], targets[idx]
            labels = {name: attributes[name][idx] for name in config.attributes}
            prior_mse = F.mse_loss(mean_image.expand_as(x), x).detach()
            # (a) the adversaries, on the noisy activation of the frozen model
            model.eval()
            adv.train()
            with torch.no_grad():
                a = model.forward_head(x)
            for _ in range(config.adversary_steps):
                seen = _relative_noise(a, config.noise, gen)
                mse, logits = adv.losses(seen, x, labels)
                adv_loss = mse + sum((F.cross_entropy(lg, labels[n]) for n, lg in logits.items()),
                                     torch.zeros(()))
                adv_opt.zero_grad(set_to_none=True)
                adv_loss.backward()
                nn.utils.clip_grad_norm_(adv.parameters(), config.clip)
                adv_opt.step()
            # (b) the model: the task, against the adversaries as they are now
            model.train()
            adv.eval()
            a = model.forward_head(x)
            seen = _relative_noise(a, config.noise, gen)
            task = F.cross_entropy(model.forward_tail(seen), y)
            mse, logits = adv.losses(seen, x, labels)
            rec = torch.minimum(mse, prior_mse)
            attr = sum((_uniform_ce(lg) for lg in logits.values()), torch.zeros(()))
            loss = task - config.lambda_rec * rec + config.lambda_attr * attr
            figures = {"task": task.item(), "rec_mse": mse.item(), "prior_mse": prior_mse.item()}
            for n, lg in logits.items():
                figures[f"{n}_acc"] = (lg.argmax(1) == labels[n]).float().mean().item()
            if config.lambda_pair > 0 and pairs is not None:
                j = torch.randint(len(pairs[0]), (min(len(idx), 64),), generator=gen)
                both = model.forward_head(torch.cat([pairs[0][j], pairs[1][j]]))
                std = a.transpose(0, 1).flatten(1).std(1).view(1, -1, 1, 1)
                fa, fb = both.chunk(2)
                pair = ((fa - fb) / (config.noise * std + 1e-6)).pow(2).flatten(1).mean()
                loss = loss + config.lambda_pair * pair
                figures["pair"] = pair.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, config.clip)
            opt.step()
            sched.step()
            for k, v in figures.items():
                sums[k] = sums.get(k, 0.0) + v
        steps = per_epoch
        mean = {k: v / steps for k, v in sums.items()}
        history.append(mean)
        line = f"epoch {epoch + 1}/{config.epochs}  " + "  ".join(
            f"{k} {v:.4f}" for k, v in mean.items())
        if validate is not None:
            model.eval()
            with torch.no_grad():
                line += f"  validation {validate(model):.4f}"
        log(f"{line}  ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return history
