"""Utility and leakage side by side: the ALPHA sweep, the reconstruction attack, the speed bench."""

from __future__ import annotations

import inspect
import json
import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch

from veil.errors import InvalidArgument, VeilError
from veil.privacy import _attack, _leakage
from veil.privacy._metrics import information_bound
from veil.privacy._obfuscator import MAX_EPOCHS, Obfuscator, check_alpha, check_save_path
from veil.privacy._split import SplitModel
from veil.privacy._tasks import PrivacyTask, get_task
from veil.privacy._util import check_device, check_int, pairs, progress_for, to_device
from veil.progress import Log, Progress, prefixed

# TR-4928, "Inferencing accuracy comparison"
SEED_ALPHAS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
# The averaging attack's default ALPHA: the smallest whose reconstruction is no better than
# this rung of the ladder (SSIM thresholds meant nothing on smooth images: issue 17).
OPERATING_RUNG = "2x2 colour grid"
# `veil privacy attack --preset`: quick finishes in a few minutes on 2 cores (the README's
# quickstart); full is the attackers' strength the benchmarks use.
ATTACK_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"alphas": (0.4, 0.8, 0.95), "attack_epochs": 8, "width": 32, "ks": (1, 8)},
    "full": {"alphas": SEED_ALPHAS, "attack_epochs": 40, "width": 96, "ks": (1, 8, 64)},
}
# Bounds on counts a user gives, each far above its default, so that a typo is refused before
# hours of work or an allocation that cannot succeed (docs/privacy.md, "Command line").
MAX_SWEEP = 100  # ALPHAs in one sweep: one fitted obfuscator each
MAX_BATCH = 65536
MAX_DRAWS = 1000
MAX_K = 1024  # obfuscations averaged by the averaging attack (default 1, 8, 64)
MAX_WIDTH = 1024  # decoder channels (default 96)
MAX_REPEATS = 100_000
MAX_BENCH_ELEMENTS = 2**26  # one bench input: 1920 x 1080 x 3 is 6.2 million


def parse_alphas(values: Iterable[Any] | str) -> list[float]:
    """Sorted ALPHAs in (0, 0.999], from numbers or comma-separated text ("0.4,0.9").

    0 is refused (it is the clean baseline every report includes), and so are a repeated
    ALPHA, an empty value and more than MAX_SWEEP of them."""
    if isinstance(values, str):
        if not values.strip():
            raise InvalidArgument("no ALPHA values given")
        values = values.split(",")
    out: list[float] = []
    for v in values:
        if isinstance(v, str) and not v.strip():
            raise InvalidArgument("an empty ALPHA in the list (two commas in a row, or one at "
                                  "an end)")
        a = check_alpha(v.strip() if isinstance(v, str) else v)
        if a == 0:
            raise InvalidArgument("ALPHA 0 is the clean baseline, which is always included")
        if a in out:
            raise InvalidArgument(f"ALPHA {a:g} is given twice")
        out.append(a)
        if len(out) > MAX_SWEEP:
            raise InvalidArgument(f"more than {MAX_SWEEP} ALPHAs in one sweep")
    if not out:
        raise InvalidArgument("no ALPHA values given")
    return sorted(out)


def _parse_ks(ks: Iterable[Any] | str) -> list[int]:
    """The averaging attack's k values, sorted: distinct whole numbers in [1, MAX_K]."""
    items = ks.split(",") if isinstance(ks, str) else list(ks)
    out: list[int] = []
    for k in items:
        if isinstance(k, str):
            try:
                k = int(k.strip())
            except ValueError:
                raise InvalidArgument(f"ks must be whole numbers separated by commas (how many "
                                      f"obfuscations the attack averages), not {ks!r}") from None
        check_int("k (obfuscations averaged)", k, 1, MAX_K)
        if k in out:
            raise InvalidArgument(f"k {k} is given twice")
        out.append(k)
    if not out:
        raise InvalidArgument("the averaging attack needs at least one k")
    return sorted(out)


def _check_fit_params(distribution: str, epochs: int, device: str) -> None:
    """Refuse a bad distribution, epoch count or device before any work (as fitting would)."""
    Obfuscator(0.0, distribution, epochs=epochs, device=device)


def _check_workdir(workdir: Path) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise InvalidArgument(f"the work folder {workdir} exists and is not a folder")


def _check_splits(task: PrivacyTask, data: Path, roles: Sequence[str]) -> None:
    """Open the data set's splits for `roles` now, so a missing one is refused before fitting."""
    for role in roles:
        task.loader(data, task.splits[role], 1, False)


def _task(task: PrivacyTask | str) -> PrivacyTask:
    return task if isinstance(task, PrivacyTask) else get_task(task)


def default_workdir(task: PrivacyTask | str) -> Path:
    """Where `veil privacy` keeps a task's obfuscators, JSON and plots: ./veil-privacy-TASK."""
    return Path(f"veil-privacy-{_task(task).name}")


def obfuscator_path(workdir: Path, distribution: str, alpha: float,
                    mechanism: str = "noise") -> Path:
    """The folder an obfuscator for `distribution` noise at `alpha` is saved in, in `workdir`
    (`MECHANISM-` before the name for a mechanism other than the baseline "noise")."""
    prefix = "" if mechanism == "noise" else f"{mechanism}-"
    return Path(workdir) / "obfuscators" / f"{prefix}{distribution}-alpha-{alpha:g}"


def _check_mechanism(task: PrivacyTask, mechanism: str) -> str:
    from veil.privacy._mechanisms import check_mechanism

    return check_mechanism(mechanism, {m: 1 for m in task.mechanisms})


def load_task_model(task: PrivacyTask, device, mechanism: str = "noise") -> SplitModel:
    """The task's model for `mechanism` ("noise": its usual split, else a shipped mechanism)."""
    _check_mechanism(task, mechanism)
    if mechanism == "noise":
        return task.load_model(device)
    return task.load_model(device, mechanism=mechanism)


def fit_one(task: PrivacyTask | str, data: Path, alpha: float, *, model: SplitModel | None = None,
            distribution: str = "gaussian", epochs: int = 3, batch_size: int = 128,
            device: str = "cpu", random_state: int | None = None, verbose: bool = False,
            progress: Progress | None = None,
            out: str | os.PathLike | None = None, mechanism: str = "noise") -> Obfuscator:
    """Fit one obfuscator for `task` on the data set's fit split; with `out`, save it there
    (a folder that is not a saved obfuscator is refused before fitting).

    `progress` (or, without one, bars when `verbose`) follows the fitting."""
    task = _task(task)
    _check_mechanism(task, mechanism)
    obf = Obfuscator(alpha, distribution, epochs=epochs, device=device,
                     random_state=random_state, verbose=verbose)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    if out is not None:
        check_save_path(Path(out))
    model = model or load_task_model(task, device, mechanism)
    loader = task.loader(data, task.splits["fit"], batch_size, True)
    obf.fit(model, loader, task.task_loss, progress=progress)
    if out is not None:
        obf.save(out)
    return obf


def obfuscators(task: PrivacyTask | str, data: Path, alphas: Sequence[float], *, workdir: Path,
                model: SplitModel | None = None, distribution: str = "gaussian", epochs: int = 3,
                refit: bool = False, device: str = "cpu", verbose: bool = False,
                progress: Progress | None = None, log: Log | None = None,
                mechanism: str = "noise") -> dict[float, Obfuscator]:
    """One fitted obfuscator per ALPHA: reused from `workdir` when fitted for this model with the
    same ALPHA, distribution and epochs, else fitted and saved there (`log` says why a saved one
    was not reused)."""
    task = _task(task)
    _check_mechanism(task, mechanism)
    _check_fit_params(distribution, epochs, device)
    alphas = [check_alpha(a) for a in alphas]
    if len(set(alphas)) != len(alphas):
        raise InvalidArgument("an ALPHA is given twice")
    for alpha in alphas:
        check_save_path(obfuscator_path(workdir, distribution, alpha, mechanism))
    model = model or load_task_model(task, device, mechanism)
    out = {}
    for alpha in alphas:
        path = obfuscator_path(workdir, distribution, alpha, mechanism)
        obf = None
        if path.exists() and not refit:
            try:
                obf = Obfuscator.load(path, model, device=device)
                if (obf.alpha, obf.distribution, obf.epochs) != (alpha, distribution, epochs):
                    raise InvalidArgument(f"{path} holds ALPHA {obf.alpha:g} "
                                          f"{obf.distribution} fitted for {obf.epochs} epochs")
            except VeilError as e:
                obf = None
                if log:
                    log(f"refitting ALPHA {alpha:g}: {e}")
        if obf is None:
            obf = fit_one(task, data, alpha, model=model, distribution=distribution,
                          epochs=epochs, device=device, verbose=verbose, progress=progress)
            obf.save(path)
        out[alpha] = obf
    return out


# ---------------------------------------------------------------------- evaluate
@dataclass
class EvaluateRow:
    alpha: float | None  # None: clean
    value: float  # mean over noise draws
    of_clean: float
    budget_bits: float | None  # mean per-element leakage budget ALPHA allows (Gaussian channel)
    spread: float = 0.0  # standard deviation over noise draws (0 with one draw)
    values: list[float] = field(default_factory=list)  # one per draw


@dataclass
class EvaluateResult:
    task: str
    metric: str
    distribution: str
    clean: float
    rows: list[EvaluateRow]
    draws: int = 1
    plot: Path | None = None
    json_path: Path | None = None


def evaluate(task: PrivacyTask | str, data: Path, alphas: Sequence[float] | str | None = None, *,
             workdir: Path | None = None, distribution: str = "gaussian", epochs: int = 3,
             refit: bool = False, device: str = "cpu", obfuscator: Obfuscator | None = None,
             draws: int = 1, verbose: bool = False, progress: Progress | None = None,
             log: Log | None = None, mechanism: str = "noise") -> EvaluateResult:
    """The task metric clean and under obfuscation at each ALPHA (TR-4928's accuracy table:
    `alphas` defaults to SEED_ALPHAS), averaged over `draws` passes with fresh noise; or, with
    `obfuscator`, at that one's ALPHA. `progress` (or bars when `verbose`) follows the fitting
    and the scoring."""
    task = _task(task)
    _check_mechanism(task, mechanism)
    check_int("draws", draws, 1, MAX_DRAWS)
    if obfuscator is not None:
        if not isinstance(obfuscator, Obfuscator):
            raise InvalidArgument("obfuscator must be an Obfuscator (see Obfuscator.load)")
        if alphas is not None:
            raise InvalidArgument(f"a saved obfuscator is evaluated at the ALPHA it was fitted "
                                  f"for ({obfuscator.alpha:g}): leave out the ALPHAs")
        if refit:
            raise InvalidArgument("refit applies to a sweep, not to a given obfuscator")
        check_device(device)
    else:
        alphas = parse_alphas(SEED_ALPHAS if alphas is None else alphas)
        _check_fit_params(distribution, epochs, device)
    data = Path(data)
    workdir = Path(workdir or default_workdir(task))
    _check_workdir(workdir)
    _check_splits(task, data, ["test"])
    progress = progress_for(progress, verbose)
    model = load_task_model(task, device, mechanism)
    if obfuscator is not None:
        obfuscator.check_model(model)
        obfs = {obfuscator.alpha: obfuscator}
        distribution = obfuscator.distribution
    else:
        obfs = obfuscators(task, data, alphas, workdir=workdir, model=model,
                           distribution=distribution, epochs=epochs, refit=refit, device=device,
                           verbose=verbose, progress=progress, log=log, mechanism=mechanism)
    test = task.splits["test"]
    _check_activation(task, model, obfs.values(), data, test, device)
    clean = _score(task, model, None, data, test, device, progress, "scoring clean")
    rows = [EvaluateRow(None, clean, 1.0, None)]
    for alpha, obf in obfs.items():
        values = [_score(task, model, obf.transform, data, test, device, progress,
                         f"scoring ALPHA {alpha:g}" + (f", draw {d + 1}/{draws}" if draws > 1
                                                       else ""))
                  for d in range(draws)]
        value = statistics.fmean(values)
        rows.append(EvaluateRow(alpha, value, value / clean if clean else math.nan,
                                obf.budget_bits if alpha else None,
                                statistics.stdev(values) if draws > 1 else 0.0, values))
    result = EvaluateResult(task.name, task.metric, distribution, clean, rows, draws)
    workdir.mkdir(parents=True, exist_ok=True)
    from veil.privacy import _plots

    result.plot = _plots.evaluate_plot(result, workdir / "evaluate.png")
    result.json_path = _write_json(workdir / "evaluate.json", result)
    return result


# ---------------------------------------------------------------------- attack
@dataclass
class AttackRow:
    alpha: float  # 0: clean activations
    psnr: float
    ssim: float
    bits_per_element: float  # information bound on the test split, inf when clean
    bits_per_input: float
    gain_over_mean: float = math.nan  # PSNR minus the mean image's (the data-free guess)
    place: str = ""  # where the PSNR falls on the ladder ("as much as the 2x2 colour grid ...")


@dataclass
class AveragingRow:
    alpha: float
    k: int
    psnr: float
    ssim: float
    bits_per_element: float


@dataclass
class AttackResult:
    task: str
    distribution: str
    attack_images: int
    test_images: int
    epochs: int
    rows: list[AttackRow]
    averaging: list[AveragingRow] = field(default_factory=list)
    # smallest ALPHA whose reconstruction is no better than a 2x2 colour grid of the true image
    operating_alpha: float | None = None
    # An attacker who ignores the activation: the attack split's mean image, scored like the
    # decoders. Reconstructions near it reveal nothing beyond what the data set looks like.
    floor_psnr: float = math.nan
    floor_ssim: float = math.nan
    # the ladder's baselines on the test split: mean image, k x k colour grids, the public
    # output's best guess where the task has one (name -> PSNR)
    ladder: dict[str, float] = field(default_factory=dict)
    preset: str = "full"
    mechanism: str = "noise"
    width: int = 96
    grid: Path | None = None
    plot: Path | None = None
    json_path: Path | None = None


def _bound(obf: Obfuscator | None, signal_var: torch.Tensor, k: int = 1) -> tuple[float, float]:
    if obf is None or obf.alpha == 0:
        return math.inf, math.inf
    view = (-1,) + (1,) * (signal_var.ndim - 1)
    noise_var = (obf.noise_scale_.double() ** 2).view(view).expand_as(signal_var)
    bits = information_bound(signal_var, noise_var, obf.distribution, k)
    return float(bits.mean()), float(bits.sum())


def attack(task: PrivacyTask | str, data: Path, alphas: Sequence[float] | str | None = None, *,
           workdir: Path | None = None, distribution: str = "gaussian", epochs: int = 3,
           attack_epochs: int | None = None, width: int | None = None,
           ks: Sequence[int] | str | None = None, preset: str = "full",
           averaging_alpha: float | None = None, attack_limit: int | None = None,
           test_limit: int | None = None, grid_rows: int = 6, refit: bool = False,
           device: str = "cpu", verbose: bool = False, progress: Progress | None = None,
           log: Log | None = None, mechanism: str = "noise") -> AttackResult:
    """White-box reconstruction: a decoder per ALPHA trained on the attack split, scored on
    test and placed on the ladder of baselines (mean image, colour grids, public output).

    `preset` ("full": SEED_ALPHAS, 40 epochs, width 96, k = 1, 8, 64; "quick": ALPHA 0.4, 0.8,
    0.95, 8 epochs, width 32, k = 1, 8) sets whatever `alphas`, `attack_epochs`, `width` and
    `ks` leave out; those may be comma-separated text. The averaging attack (mean of k
    obfuscations of one input) runs at `averaging_alpha`, by default the smallest ALPHA whose
    reconstruction is no better than a 2x2 colour grid of the true image (else the largest).
    `progress` (or bars when `verbose`) follows the fitting and the decoders' epochs.
    """
    task = _task(task)
    _check_mechanism(task, mechanism)
    if not isinstance(preset, str) or preset not in ATTACK_PRESETS:
        raise InvalidArgument(f"no preset {preset!r}; choose {' or '.join(ATTACK_PRESETS)}")
    chosen = ATTACK_PRESETS[preset]
    alphas = chosen["alphas"] if alphas is None else alphas
    attack_epochs = chosen["attack_epochs"] if attack_epochs is None else attack_epochs
    width = chosen["width"] if width is None else width
    ks = chosen["ks"] if ks is None else ks
    data = Path(data)
    workdir = Path(workdir or default_workdir(task))
    alphas = parse_alphas(alphas)
    ks = _parse_ks(ks)
    check_int("attack_epochs", attack_epochs, 1, MAX_EPOCHS)
    check_int("width", width, 1, MAX_WIDTH)
    for name, limit in (("attack_limit", attack_limit), ("test_limit", test_limit)):
        if limit is not None:
            check_int(name, limit, 1)
    check_int("grid_rows", grid_rows, 1, 64)
    if averaging_alpha is not None and check_alpha(averaging_alpha) not in alphas:
        raise InvalidArgument(f"the averaging attack's ALPHA {averaging_alpha:g} is not in the "
                              f"sweep ({', '.join(f'{a:g}' for a in alphas)})")
    _check_fit_params(distribution, epochs, device)
    _check_workdir(workdir)
    _check_splits(task, data, ["attack", "test"])
    progress = progress_for(progress, verbose)
    model = load_task_model(task, device, mechanism)
    obfs = obfuscators(task, data, alphas, workdir=workdir, model=model,
                       distribution=distribution, epochs=epochs, refit=refit, device=device,
                       progress=progress, log=log, mechanism=mechanism)
    head = model.forward_head
    att = _attack.collect(head, task.images(data, task.splits["attack"]), device, attack_limit,
                          progress=prefixed(progress, "activations of the attack split"))
    test = _attack.collect(head, task.images(data, task.splits["test"]), device, test_limit,
                           progress=prefixed(progress, "activations of the test split"))
    signal_var = test.activations.double().var(0, unbiased=False)

    decoders = len(alphas) + 1 + sum(k != 1 for k in ks)  # k = 1 reuses the sweep's decoder
    # a step: one epoch of a decoder, or scoring its reconstructions of the test split
    progress.start(decoders * (attack_epochs + 1), "training inversion decoders")

    def run(obf: Obfuscator | None, k: int = 1):
        transform = None if obf is None else obf.transform
        dec = _attack.train_decoder(att, transform, k=k, epochs=attack_epochs, width=width,
                                    device=device, progress=progress)
        recon = _attack.reconstruct(dec, test, transform, k=k, device=device)
        scores = _attack.score(recon, test.images)
        progress.advance(1)
        return recon, scores

    baselines = _ladder_baselines(task, data, att, test)

    def row(alpha: float, p: float, s: float, bits: tuple[float, float]) -> AttackRow:
        return AttackRow(alpha, p, s, *bits, gain_over_mean=p - baselines["mean image"],
                         place=_leakage.place_on(p, list(baselines.items())))

    recons = {}
    rows = []
    recon, (p, s) = run(None)
    recons[0.0] = recon
    rows.append(row(0.0, p, s, (math.inf, math.inf)))
    for alpha in alphas:
        recon, (p, s) = run(obfs[alpha])
        recons[alpha] = recon
        rows.append(row(alpha, p, s, _bound(obfs[alpha], signal_var)))
    operating = next((r.alpha for r in rows[1:] if r.psnr <= baselines[OPERATING_RUNG]), None)
    avg_alpha = check_alpha(averaging_alpha if averaging_alpha is not None
                            else (operating or alphas[-1]))
    averaging = []
    for k in ks:
        if k == 1:
            r = next(r for r in rows if r.alpha == avg_alpha)
            averaging.append(AveragingRow(avg_alpha, 1, r.psnr, r.ssim, r.bits_per_element))
            continue
        _, (p, s) = run(obfs[avg_alpha], k)
        averaging.append(AveragingRow(avg_alpha, k, p, s,
                                      _bound(obfs[avg_alpha], signal_var, k)[0]))
    guess = att.images.mean(0, keepdim=True).expand_as(test.images).contiguous()
    floor_psnr, floor_ssim = _attack.score(guess, test.images)
    result = AttackResult(task.name, distribution, len(att.images), len(test.images),
                          attack_epochs, rows, averaging, operating, floor_psnr, floor_ssim,
                          baselines, preset, mechanism, width)
    workdir.mkdir(parents=True, exist_ok=True)
    from veil.privacy import _plots

    result.grid = _plots.attack_grid(test.images, recons, workdir / "attack-grid.png",
                                     rows=grid_rows)
    result.plot = _plots.attack_plot(result, workdir / "attack.png")
    result.json_path = _write_json(workdir / "attack.json", result)
    return result


def _ladder_baselines(task: PrivacyTask, data: Path, att: _attack.Pairs,
                      test: _attack.Pairs) -> dict[str, float]:
    """PSNR on the test split of every rung of the ladder: the attack split's mean image, k x k
    colour grids of each true image, and the best guess given the public output."""
    from veil.privacy._metrics import psnr

    mean = att.images.mean(0)
    out = {"mean image": float(psnr(mean.expand_as(test.images), test.images).mean())}
    for k in _leakage.GRID_SIZES:
        if k <= min(test.images.shape[-2:]):
            out[f"{k}x{k} colour grid"] = float(
                psnr(_leakage.colour_grid(test.images, k), test.images).mean())
    probes = task.probes
    if probes is not None and probes.public is not None and len(att.images) == len(
            probes.public(data, task.splits["attack"])):
        att_pub = probes.public(data, task.splits["attack"])
        tst_pub = probes.public(data, task.splits["test"])
        if len(tst_pub) == len(test.images):
            if isinstance(tst_pub, torch.Tensor):
                guess = _leakage.class_mean_guess(att.images, att_pub, tst_pub)
            else:
                idx = torch.cat([torch.full((len(b),), i, dtype=torch.long)
                                 for i, b in enumerate(att_pub)])
                crops = _leakage.crop(att.images[idx], torch.cat([b.float() for b in att_pub]),
                                      32)
                guess = _leakage.boxes_guess(att.images, crops.mean(0), tst_pub)
            out[f"best guess given the {probes.public_name}"] = float(
                psnr(guess, test.images).mean())
    return out


# ---------------------------------------------------------------------- bench
@dataclass
class Timing:
    median_ms: float
    p99_ms: float
    n: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ms = sorted(s * 1000 for s in seconds)
        p99 = ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)]
        return cls(statistics.median(ms), p99, len(ms))


@dataclass
class BenchResult:
    task: str
    device: str
    threads: int
    input_shape: list[int]
    activation_shape: list[int]
    distribution: str
    alpha: float
    obfuscation: Timing
    head: Timing
    tail: Timing
    clean: Timing  # head + tail
    private: Timing  # head + obfuscation + tail
    obfuscation_share: float  # obfuscation median / clean median
    measured_overhead: float  # (private - clean) / clean, medians of interleaved runs
    activation_bytes: int
    raw_bytes: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    dt = time.perf_counter() - t
    del out
    return dt


def bench(task: PrivacyTask | str, obfuscator: Obfuscator | str | os.PathLike, *,
          repeats: int = 15, obf_repeats: int = 200, device: str = "cpu",
          shape: Sequence[int] | None = None, verbose: bool = False,
          progress: Progress | None = None, mechanism: str = "noise") -> BenchResult:
    """Time one input (default 1920x1080) through head, obfuscation and tail, side by side.

    `obfuscator` is fitted or the folder of a saved one. `progress` (or bars when `verbose`)
    follows the timed runs."""
    task = _task(task)
    _check_mechanism(task, mechanism)
    check_int("repeats", repeats, 1, MAX_REPEATS)
    check_int("obf_repeats", obf_repeats, 1, MAX_REPEATS)
    shape = tuple(shape or task.bench_input)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                            for d in shape) or math.prod(shape) > MAX_BENCH_ELEMENTS:
        raise InvalidArgument(f"the bench input must be whole numbers >= 1 with at most "
                              f"{MAX_BENCH_ELEMENTS} elements in all, not {shape}")
    dev = check_device(device)
    model = load_task_model(task, dev, mechanism)
    if isinstance(obfuscator, Obfuscator):
        obfuscator.check_model(model)
    else:
        obfuscator = Obfuscator.load(obfuscator, model, device=device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, *shape), generator=gen).to(dev)
    progress = progress_for(progress, verbose)
    with torch.inference_mode():
        a = model.forward_head(x)
        obfuscator.check_activation(a)
        # a step: one head or one tail (a head + tail run is two), or one obfuscation alone
        progress.start(4 + 6 * repeats + obf_repeats, "timing")
        for _ in range(2):  # warm-up: allocator, kernels, caches
            model.forward_tail(obfuscator.transform(model.forward_head(x)))
            progress.advance(2)
        head_t, tail_t, clean_t, private_t = [], [], [], []
        for _ in range(repeats):  # interleaved so drift hits both the same way
            head_t.append(_timed(lambda: model.forward_head(x), dev))
            tail_t.append(_timed(lambda: model.forward_tail(a), dev))
            progress.advance(2)
            clean_t.append(_timed(lambda: model.forward_tail(model.forward_head(x)), dev))
            progress.advance(2)
            private_t.append(_timed(
                lambda: model.forward_tail(obfuscator.transform(model.forward_head(x))), dev))
            progress.advance(2)
        obf_t = []
        for _ in range(obf_repeats):
            obf_t.append(_timed(lambda: obfuscator.transform(a), dev))
            progress.advance(1)
    obf, clean, private = Timing.of(obf_t), Timing.of(clean_t), Timing.of(private_t)
    return BenchResult(
        task=task.name, device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        threads=torch.get_num_threads(), input_shape=list(shape),
        activation_shape=list(a.shape[1:]), distribution=obfuscator.distribution,
        alpha=obfuscator.alpha, obfuscation=obf, head=Timing.of(head_t), tail=Timing.of(tail_t),
        clean=clean, private=private, obfuscation_share=obf.median_ms / clean.median_ms,
        measured_overhead=(private.median_ms - clean.median_ms) / clean.median_ms,
        activation_bytes=a.numel() * a.element_size(), raw_bytes=math.prod(shape))


# ---------------------------------------------------------------------- helpers
def _check_activation(task: PrivacyTask, model: SplitModel, obfs: Iterable[Obfuscator],
                      data: Path, split: str, device: str) -> None:
    """Each obfuscator checked against the head's activation of one image of `split`, so that
    one fitted for another activation is refused before any scoring."""
    x, _ = next(iter(pairs(task.loader(data, split, 1, False))))
    with torch.no_grad():
        a = model.forward_head(to_device(x, device))
    for obf in obfs:
        obf.check_activation(a)


def _score(task: PrivacyTask, model: SplitModel, transform, data: Path, split: str, device: str,
           progress: Progress, what: str) -> float:
    """`task.score`, its progress shown as `what`: the task's own phases when its score takes a
    `progress`, else one step for the whole."""
    try:
        params = inspect.signature(task.score).parameters.values()
    except (TypeError, ValueError):  # a callable without a readable signature
        params = []
    if any(p.name == "progress" or p.kind is p.VAR_KEYWORD for p in params):
        return task.score(model, transform, data, split, device,
                          progress=prefixed(progress, what))
    progress.start(1, what)
    value = task.score(model, transform, data, split, device)
    progress.advance(1)
    return value


def _write_json(path: Path, result: Any) -> Path:
    def plain(o):
        if isinstance(o, dict):
            return {k: plain(v) for k, v in o.items()}
        if isinstance(o, list):
            return [plain(v) for v in o]
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, float) and math.isinf(o):
            return None
        return o

    tmp = path.with_name(path.name + ".tmp")
    body = asdict(result) if is_dataclass(result) else result
    tmp.write_text(json.dumps(plain(body), indent=2) + "\n")
    tmp.replace(path)
    return path
