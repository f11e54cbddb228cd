"""Leakage measures that mean something on any data (issue 17).

- **The ladder**: a reconstruction's PSNR against data-free and low-information baselines: the
  mean image, k x k colour grids of the true image (k = 1, 2, 4, 8, 16), and the best guess given
  the task's public output. "As much as a 4x4 colour grid" reads the same on any data set.
- **Regions**: reconstructions scored on fixed-size crops at given boxes (faces), against the
  mean crop, by a decoder that reads only the activation window around the box.
- **Probes**: classifiers trained directly on obfuscated activations (or windows of them) for
  attributes the generators know, and for identity: accuracy against majority and chance.
- **The two-input bound**: for Gaussian noise of per-channel standard deviation s, the best
  possible test between two inputs A and B (seen once each, equal priors) has accuracy
  Phi(D / 2), D = ||(f(A) - f(B)) / s|| (Gaussian differential privacy; docs/privacy.md derives
  it). For Laplace noise the optimal (likelihood-ratio) test is estimated by Monte Carlo.

Everything here works on tensors; `veil.privacy._report` runs it on a task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from veil.errors import InvalidArgument
from veil.privacy._metrics import psnr
from veil.progress import Progress, or_silent

Transform = Callable[[torch.Tensor], torch.Tensor]
GRID_SIZES = (1, 2, 4, 8, 16)


def _check_images(name: str, t, ndim: int = 4) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != ndim or not t.is_floating_point():
        raise InvalidArgument(f"{name} must be a float tensor of {ndim} dimensions "
                              f"(N, C, H, W), not {_describe(t)}")
    if not len(t):
        raise InvalidArgument(f"{name} is empty")
    if not torch.isfinite(t).all():
        raise InvalidArgument(f"{name} holds NaN or infinite values")
    return t


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"a {t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise InvalidArgument(f"{what}: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")


# ---------------------------------------------------------------------- the ladder
def colour_grid(images: torch.Tensor, k: int) -> torch.Tensor:
    """Each image replaced by its k x k grid of mean colours (nearest-neighbour upsampled)."""
    _check_images("images", images)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(images.shape[-2:]):
        raise InvalidArgument(f"a colour grid needs k from 1 to the image's side "
                              f"{min(images.shape[-2:])}, not {k!r}")
    small = F.adaptive_avg_pool2d(images.float(), k)
    return F.interpolate(small, size=images.shape[-2:], mode="nearest")


@dataclass
class Rung:
    name: str  # "mean image", "1x1 colour grid", ..., "best guess given the class"
    psnr: float
    gain: float  # the attack's PSNR minus this rung's


@dataclass
class Ladder:
    attack_psnr: float
    rungs: list[Rung]  # by PSNR, lowest first
    place: str  # "as much as a 2x2 colour grid (less than a 4x4 colour grid)"

    @property
    def gain_over_mean(self) -> float:
        return next(r.gain for r in self.rungs if r.name == "mean image")

    def gain_over(self, name: str) -> float:
        for r in self.rungs:
            if r.name == name:
                return r.gain
        raise KeyError(name)


def place_on(attack_psnr: float, rungs: Sequence[tuple[str, float]]) -> str:
    """Where a PSNR falls among named baselines: the best one it reaches and the next."""
    ordered = sorted(rungs, key=lambda r: r[1])
    below = [r for r in ordered if r[1] <= attack_psnr]
    above = [r for r in ordered if r[1] > attack_psnr]
    if not below:
        return f"less than the {ordered[0][0]}"
    if not above:
        return f"more than the {below[-1][0]}"
    return f"as much as the {below[-1][0]} (less than the {above[0][0]})"


def ladder(recon: torch.Tensor, images: torch.Tensor, mean_image: torch.Tensor, *,
           public_guess: torch.Tensor | None = None, public_name: str = "public output",
           grids: Sequence[int] = GRID_SIZES) -> Ladder:
    """Score `recon` against `images` and every baseline; `mean_image` (C, H, W) is a data-free
    guess (the attacker's own images' mean), `public_guess` (N, C, H, W) the best guess given
    the task's public output. Every baseline is computed from the images, never a constant."""
    _check_images("reconstructions", recon)
    _check_images("images", images)
    _same_shape(recon, images, "reconstructions and images")
    if not isinstance(mean_image, torch.Tensor) or mean_image.shape != images.shape[1:]:
        raise InvalidArgument(f"the mean image must be one image of shape "
                              f"{tuple(images.shape[1:])}, not {_describe(mean_image)}")
    attack = float(psnr(recon, images).mean())
    named = [("mean image", float(psnr(mean_image.expand_as(images), images).mean()))]
    for k in grids:
        if k <= min(images.shape[-2:]):
            named.append((f"{k}x{k} colour grid",
                          float(psnr(colour_grid(images, k), images).mean())))
    if public_guess is not None:
        _check_images("the public-output guess", public_guess)
        _same_shape(public_guess, images, "the public-output guess and images")
        named.append((f"best guess given the {public_name}",
                      float(psnr(public_guess, images).mean())))
    rungs = sorted((Rung(n, p, attack - p) for n, p in named), key=lambda r: r.psnr)
    return Ladder(attack, rungs, place_on(attack, named))


def class_mean_guess(att_images: torch.Tensor, att_labels: torch.Tensor,
                     test_labels: torch.Tensor) -> torch.Tensor:
    """The best PSNR guess given a public class: the attacker's mean image of that class (the
    overall mean for a class it has no image of)."""
    overall = att_images.mean(0)
    means = {int(c): att_images[att_labels == c].mean(0) for c in att_labels.unique()}
    return torch.stack([means.get(int(c), overall) for c in test_labels])


def boxes_guess(att_images: torch.Tensor, mean_crop: torch.Tensor,
                test_boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """The best simple guess given public boxes: the mean image with the mean face (a crop,
    C x s x s) pasted, resized, into every box."""
    h, w = att_images.shape[-2:]
    out = att_images.mean(0, keepdim=True).repeat(len(test_boxes), 1, 1, 1)
    for i, boxes in enumerate(test_boxes):
        for x0, y0, x1, y1 in boxes.tolist():
            c0, r0 = max(0, round(x0 * w)), max(0, round(y0 * h))
            c1, r1 = min(w, round(x1 * w)), min(h, round(y1 * h))
            if c1 > c0 and r1 > r0:
                out[i, :, r0:r1, c0:c1] = F.interpolate(
                    mean_crop[None], size=(r1 - r0, c1 - c0), mode="bilinear",
                    align_corners=False)[0]
    return out


# ---------------------------------------------------------------------- regions
def _check_boxes(boxes, n: int) -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor) or boxes.shape != (n, 4) \
            or not boxes.is_floating_point() or not torch.isfinite(boxes).all():
        raise InvalidArgument(f"boxes must be a float tensor of shape ({n}, 4): normalised "
                              f"x0, y0, x1, y1; got {_describe(boxes)}")
    if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
        raise InvalidArgument("a box has no area (x1 <= x0 or y1 <= y0)")
    return boxes


def crop(images: torch.Tensor, boxes: torch.Tensor, size: int = 32,
         margin: float = 0.0) -> torch.Tensor:
    """Bilinear `size` x `size` crops of `images` (N, C, H, W) at `boxes` (N, 4), normalised
    x0, y0, x1, y1, each grown by `margin` of its width and height on every side."""
    _check_images("images", images)
    boxes = _check_boxes(boxes, len(images)).to(images)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1024:
        raise InvalidArgument(f"the crop size must be 1 to 1024, not {size!r}")
    if not math.isfinite(margin) or not 0 <= margin <= 4:
        raise InvalidArgument(f"the margin must be 0 to 4, not {margin!r}")
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    bw, bh = (boxes[:, 2] - boxes[:, 0]) * (1 + 2 * margin), \
        (boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin)
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = bw, 2 * cx - 1
    theta[:, 1, 1], theta[:, 1, 2] = bh, 2 * cy - 1
    grid = F.affine_grid(theta, [len(images), images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


class WindowDecoder(nn.Module):
    """An activation window (C, s, s) back to an image crop (3, s * scale, s * scale)."""

    def __init__(self, in_channels: int, scale: int, width: int = 96):
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise InvalidArgument(f"the decoder upsamples by powers of two, not {scale}")
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels, affine=False)]
        w = in_channels
        for _ in range(2):
            layers += [nn.Conv2d(w, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            w = width
        for _ in range(int(math.log2(scale))):
            nxt = max(w // 2, 16)
            layers += [nn.Conv2d(w, 4 * nxt, 3, padding=1), nn.PixelShuffle(2),
                       nn.BatchNorm2d(nxt), nn.ReLU()]
            w = nxt
        layers += [nn.Conv2d(w, 3, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)


# ---------------------------------------------------------------------- units and probes
@dataclass
class Units:
    """What probes and region decoders learn from: clean activations of whole images, and
    per unit (a whole image, or a box in one) its image index, its box and its labels."""

    activations: torch.Tensor  # (N, C, h, w): clean head outputs, one per image
    index: torch.Tensor  # (U,) the image each unit is in
    boxes: torch.Tensor | None  # (U, 4) normalised boxes, or None: each unit is its image
    labels: dict[str, torch.Tensor]  # name -> (U,) class indices
    crops: torch.Tensor | None = None  # (U, 3, s, s) image crops at the boxes, for decoders

    def __post_init__(self):
        u = len(self.index)
        for name, y in self.labels.items():
            if y.shape != (u,):
                raise InvalidArgument(f"labels {name!r}: {tuple(y.shape)} for {u} units")
        if self.boxes is None and not torch.equal(self.index, torch.arange(len(self.activations))):
            raise InvalidArgument("units without boxes must be the images, in order")

    def __len__(self) -> int:
        return len(self.index)


def windows(units: Units, idx: torch.Tensor, transform: Transform | None, *, size: int = 6,
            margin: float = 0.5, k: int = 1) -> torch.Tensor:
    """What an attacker reads for units `idx`: the (mean of `k`) obfuscated activation of each
    unit's image, cut to the window around its box (the whole activation without boxes).

    The noise is drawn on the whole activation and the window cut afterwards, as an attacker
    holding the sent activation would."""
    from veil.privacy._attack import observe

    seen = observe(transform, units.activations[units.index[idx]], k)
    if units.boxes is None:
        return seen
    return crop(seen, units.boxes[idx].to(seen), size=size, margin=margin)


class Probe(nn.Module):
    """A classifier on activations or windows of them: standardisation, two 3x3 convolutions
    (the second of stride 2 on inputs of side >= 8), and a linear layer on the flattened map,
    so position is kept."""

    def __init__(self, in_channels: int, side: tuple[int, int], classes: int, width: int = 64):
        super().__init__()
        stride = 2 if min(side) >= 8 else 1
        self.features = nn.Sequential(
            nn.BatchNorm2d(in_channels, affine=False),
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Flatten(), nn.Dropout(0.3))
        h, w = (math.ceil(s / stride) for s in side)
        self.head = nn.Linear(width * h * w, classes)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(a))


@dataclass
class ProbeScore:
    name: str
    classes: int
    accuracy: float
    majority: float  # accuracy of always answering the training units' commonest class
    chance: float  # 1 / classes
    test_units: int

    @property
    def over_majority(self) -> float:
        return self.accuracy - self.majority

    @property
    def over_chance(self) -> float:
        return self.accuracy - self.chance


def _batches(n: int, batch_size: int, gen: torch.Generator | None):
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train_probe(train: Units, test: Units, name: str, classes: int,
                transform: Transform | None, *, epochs: int = 20, width: int = 64,
                batch_size: int = 64, lr: float = 3e-3, size: int = 6, margin: float = 0.5,
                seed: int = 0, device="cpu", progress: Progress | None = None) -> ProbeScore:
    """Train a Probe from scratch on fresh obfuscations of `train`'s units (new noise every
    batch) to predict label `name`; score it on one obfuscation of each of `test`'s units.
    `progress` advances once per epoch."""
    progress = or_silent(progress)
    for units, which in ((train, "training"), (test, "test")):
        if name not in units.labels:
            raise InvalidArgument(f"the {which} units have no label {name!r}")
        if not len(units):
            raise InvalidArgument(f"no {which} units to probe {name!r} with")
    y_train, y_test = train.labels[name], test.labels[name]
    for y in (y_train, y_test):
        if y.min() < 0 or y.max() >= classes:
            raise InvalidArgument(f"labels {name!r} outside 0..{classes - 1}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    probe_in = windows(train, torch.arange(min(2, len(train))), None, size=size, margin=margin)
    net = Probe(probe_in.shape[1], tuple(probe_in.shape[-2:]), classes, width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    net.train()
    for _ in range(epochs):
        for idx in _batches(len(train), batch_size, gen):
            if len(idx) < 2:
                continue  # batch norm needs two
            with torch.no_grad():
                x = windows(train, idx, transform, size=size, margin=margin).to(device)
            loss = F.cross_entropy(net(x), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress.advance(1)
    net.eval()
    correct = 0
    with torch.no_grad():
        for idx in _batches(len(test), 256, None):
            x = windows(test, idx, transform, size=size, margin=margin).to(device)
            correct += int((net(x).argmax(1).cpu() == y_test[idx]).sum())
    common = int(torch.bincount(y_train, minlength=classes).argmax())
    return ProbeScore(name, classes, correct / len(test), float((y_test == common).float().mean()),
                      1.0 / classes, len(test))


@dataclass
class RegionScore:
    attack_psnr: float  # the per-window decoder's crops
    prior_psnr: float  # the mean crop of the attacker's own units
    test_units: int
    size: int

    @property
    def gain(self) -> float:
        return self.attack_psnr - self.prior_psnr


def train_region_decoder(train: Units, test: Units, transform: Transform | None, *,
                         epochs: int = 30, width: int = 96, batch_size: int = 64,
                         lr: float = 3e-3, size: int = 6, margin: float = 0.5, seed: int = 0,
                         device="cpu", progress: Progress | None = None
                         ) -> tuple[WindowDecoder, torch.Tensor]:
    """A WindowDecoder from scratch on fresh obfuscations of `train`'s windows to its crops;
    returns it and its reconstructions of `test`'s crops (one obfuscation each)."""
    progress = or_silent(progress)
    for units, which in ((train, "training"), (test, "test")):
        if units.crops is None or units.boxes is None:
            raise InvalidArgument(f"the {which} units have no boxes and crops to decode")
    side = train.crops.shape[-1]
    scale = side // size
    if scale * size != side or scale & (scale - 1):
        raise InvalidArgument(f"crops of {side} pixels are not a power-of-two multiple of "
                              f"windows of {size}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dec = WindowDecoder(train.activations.shape[1], scale, width).to(device)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    dec.train()
    for _ in range(epochs):
        for idx in _batches(len(train), batch_size, gen):
            if len(idx) < 2:
                continue
            with torch.no_grad():
                x = windows(train, idx, transform, size=size, margin=margin).to(device)
            loss = F.mse_loss(dec(x), train.crops[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress.advance(1)
    dec.eval()
    out = []
    with torch.no_grad():
        for idx in _batches(len(test), 256, None):
            out.append(dec(windows(test, idx, transform, size=size, margin=margin)
                           .to(device)).cpu())
    return dec, torch.cat(out)


def region_score(recon: torch.Tensor, crops: torch.Tensor, prior: torch.Tensor) -> RegionScore:
    """PSNR of reconstructed crops and of the prior crop (C, s, s) against the true crops."""
    _check_images("reconstructed crops", recon)
    _check_images("crops", crops)
    _same_shape(recon, crops, "reconstructed and true crops")
    return RegionScore(float(psnr(recon, crops).mean()),
                       float(psnr(prior.expand_as(crops), crops).mean()), len(crops),
                       crops.shape[-1])


# ---------------------------------------------------------------------- the two-input bound
def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def _check_noise(delta: torch.Tensor, noise_std: torch.Tensor) -> torch.Tensor:
    if not isinstance(delta, torch.Tensor) or delta.ndim < 2 or not delta.is_floating_point():
        raise InvalidArgument(f"activation differences must be a float tensor (N, C, ...), "
                              f"not {_describe(delta)}")
    if not isinstance(noise_std, torch.Tensor) or noise_std.shape != (delta.shape[1],):
        raise InvalidArgument(f"the noise needs one standard deviation per channel "
                              f"({delta.shape[1]}), not {_describe(noise_std)}")
    if not torch.isfinite(delta).all() or not torch.isfinite(noise_std).all():
        raise InvalidArgument("activation differences and noise must be finite")
    if (noise_std < 0).any():
        raise InvalidArgument("a noise standard deviation is negative")
    return noise_std.double().view((1, -1) + (1,) * (delta.ndim - 2))


def gaussian_distance(delta: torch.Tensor, noise_std: torch.Tensor, k: int = 1) -> torch.Tensor:
    """D = ||delta / s|| per pair for noise of standard deviation s / sqrt(k) (the mean of k
    obfuscations); infinite where a channel without noise differs."""
    s = _check_noise(delta, noise_std) / math.sqrt(k)
    d = delta.double()
    z = torch.where(s > 0, d / s.clamp(min=1e-300), torch.where(d != 0, math.inf, 0.0))
    return z.flatten(1).pow(2).sum(1).sqrt()


def two_input_bound(delta: torch.Tensor, noise_std: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per pair, the accuracy of the best possible test telling A from B (equal priors) from one
    obfuscated activation with Gaussian noise: Phi(D / 2). No attacker, however trained, does
    better."""
    return _normal_cdf(gaussian_distance(delta, noise_std, k) / 2)


def laplace_optimal_test(delta: torch.Tensor, noise_std: torch.Tensor, *, samples: int = 4000,
                         seed: int = 0) -> torch.Tensor:
    """Per pair, a Monte-Carlo estimate of the optimal test's accuracy for Laplace noise of
    standard deviation s (scale b = s / sqrt(2)): the likelihood-ratio test, whose accuracy
    with equal priors is P_A(LLR > 0) + P_A(LLR = 0) / 2 by symmetry."""
    s = _check_noise(delta, noise_std)
    b = (s / math.sqrt(2.0)).flatten()
    d = delta.double().flatten(2) if delta.ndim > 2 else delta.double()[..., None]
    keep = b > 0
    gen = torch.Generator().manual_seed(seed)
    out = []
    for pair in d:  # (C, E)
        if (pair[~keep] != 0).any():
            out.append(1.0)
            continue
        x, bb = pair[keep], b[keep][:, None]
        wins, drawn = 0.0, 0
        while drawn < samples:
            m = min(500, samples - drawn)
            drawn += m
            u = torch.rand((m, *x.shape), generator=gen, dtype=torch.float64) - 0.5
            n = -bb * torch.sign(u) * torch.log1p(-2 * u.abs())  # Laplace(0, b)
            # observation y = f(A) + n; LLR = (|y - f(B)| - |y - f(A)|) / b, with f(A) - f(B) = x
            llr = ((n + x).abs() - n.abs()) / bb
            total = llr.flatten(1).sum(1)
            wins += float((total > 0).double().sum() + 0.5 * (total == 0).double().sum())
        out.append(wins / samples)
    return torch.tensor(out, dtype=torch.float64)


def monte_carlo_gaussian_test(delta: torch.Tensor, noise_std: torch.Tensor, *,
                              samples: int = 20000, seed: int = 0) -> torch.Tensor:
    """Per pair, the likelihood-ratio test's accuracy for Gaussian noise, by sampling: what
    two_input_bound computes in closed form (the tests check one against the other)."""
    s = _check_noise(delta, noise_std)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for pair in delta.double():
        z = torch.randn((samples, *pair.shape), generator=gen, dtype=torch.float64)
        n = z * s[0]
        # y = f(A) + n; decide A when ||y - f(A)||_S < ||y - f(B)||_S
        w = 1.0 / s[0].pow(2).clamp(min=1e-300)
        llr = (((n + pair) ** 2 - n ** 2) * w).flatten(1).sum(1) / 2
        out.append(float((llr > 0).double().mean() + 0.5 * (llr == 0).double().mean()))
    return torch.tensor(out, dtype=torch.float64)
