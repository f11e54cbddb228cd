"""The identity-level leakage report of one obfuscator on one task (issue 17, part 1).

`leakage(task, data, alpha=...)` fits (or reuses) the obfuscator and retrains every attacker
from scratch against it:

- whole-image decoders of two widths: the best one's PSNR on the ladder (mean image, k x k colour
  grids, the best guess given the public output);
- for tasks with boxes (faces): a per-window decoder and the whole-image decoders' crops, scored
  on fixed-size crops at the boxes against the mean crop;
- attribute classifiers on obfuscated activations (or windows), one per attribute the task's
  generator knows, against majority and chance;
- N-way identification, where the task's generator has identities;
- the two-input bound on the task's pairs (a moved shape, a same-scene identity swap): Phi(D/2)
  for Gaussian noise, the Monte-Carlo optimal test for Laplace; for k = 1, 8, 64 averaged
  obfuscations;
- with `utility`, the task metric clean and over `draws` noise draws, with a 95% interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from veil.errors import InvalidArgument
from veil.privacy import _attack, _leakage
from veil.privacy._mechanisms import check_mechanism
from veil.privacy._obfuscator import Obfuscator, check_alpha
from veil.privacy._tasks import PrivacyTask, Probes
from veil.privacy._util import check_device, check_int
from veil.progress import Progress, or_silent

PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on 2 cores: what the README's quickstart runs
    "quick": {"widths": (32,), "decoder_epochs": 8, "probe_epochs": 10, "region_epochs": 12,
              "scale": 3},
    # the attackers' full strength, for benchmarks
    "full": {"widths": (48, 96), "decoder_epochs": 40, "probe_epochs": 30, "region_epochs": 30,
             "scale": 1},
    # seconds: checks that every step runs (the README's test); its figures mean little
    "smoke": {"widths": (8,), "decoder_epochs": 1, "probe_epochs": 1, "region_epochs": 1,
              "scale": 20},
}
KS = (1, 8, 64)
CROP = 32  # region crops, pixels
WINDOW = 8  # activation window around a box, cells (crops are WINDOW * 4 pixels)
CROP_SOURCE = 256  # crops are cut from the input downscaled (antialiased) to this side


@dataclass
class TwoInput:
    what: str  # "shape moved >= 8 px", "same-scene identity swap"
    pairs: int
    method: str  # "Phi(D/2) (exact, Gaussian)" or "likelihood-ratio test, Monte Carlo"
    median: dict[int, float]  # k -> median best-test accuracy over pairs
    p90: dict[int, float]


@dataclass
class Utility:
    metric: str
    clean: float
    values: list[float]
    mean: float
    of_clean: float
    low95_of_clean: float  # lower end of the 95% interval of the mean, over clean


@dataclass
class LeakageResult:
    task: str
    mechanism: str
    alpha: float
    distribution: str
    preset: str
    attack_images: int
    test_images: int
    ladder: _leakage.Ladder
    ssim: float
    best_decoder: str
    region: _leakage.RegionScore | None = None
    region_attacker: str | None = None
    attributes: list[_leakage.ProbeScore] = field(default_factory=list)
    identity: _leakage.ProbeScore | None = None
    two_input: TwoInput | None = None
    utility: Utility | None = None
    json_path: Path | None = None


# What does not depend on the noise (the head's activations of the splits and probe sets, the
# clean score) is kept per model within one process, so a sweep over ALPHAs (the frontier
# benchmark) runs the head over each image once. Keyed by the model's fingerprint.
_CACHE: dict[tuple, Any] = {}
_CACHE_ITEMS = 64


def _cached(key: tuple, make):
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_ITEMS:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    return _CACHE[key]


def clear_cache() -> None:
    """Forget the activations kept between reports."""
    _CACHE.clear()


def _check_preset(preset: Any) -> dict[str, Any]:
    if not isinstance(preset, str) or preset not in PRESETS:
        raise InvalidArgument(f"no preset {preset!r}; choose {' or '.join(PRESETS)}")
    return PRESETS[preset]


def _collect(head, batches: Iterable, device, boxes: Sequence[torch.Tensor] | None,
             progress: Progress, what: str, thumbs: bool = True):
    """Activations, target images and (with `boxes`, per image) crops at the boxes."""
    n_batches = len(batches) if hasattr(batches, "__len__") else 0
    progress.start(n_batches, what)
    acts, imgs, crops = [], [], []
    seen = 0
    with torch.no_grad():
        for x, img in batches:
            acts.append(head(x.to(device)).float().cpu())
            if thumbs:
                imgs.append(img.cpu())
            if boxes is not None:
                src = x.float()
                if src.shape[-1] > CROP_SOURCE:
                    src = F.interpolate(src, size=(CROP_SOURCE, CROP_SOURCE), mode="bilinear",
                                        align_corners=False, antialias=True)
                for j in range(len(x)):
                    b = boxes[seen + j]
                    if len(b):
                        crops.append(_leakage.crop(src[j:j + 1].expand(len(b), -1, -1, -1),
                                                   b.float(), CROP))
            seen += len(x)
            progress.advance(1)
    if not acts:
        raise InvalidArgument(f"{what}: the split is empty")
    return (torch.cat(acts), torch.cat(imgs) if thumbs else None,
            torch.cat(crops) if crops else None)


def _region_units(acts: torch.Tensor, boxes: Sequence[torch.Tensor],
                  crops: torch.Tensor | None) -> _leakage.Units | None:
    index = torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, b in enumerate(boxes)])
    if not len(index):
        return None
    return _leakage.Units(acts, index, torch.cat([b.float() for b in boxes]), {}, crops)


def _probe_units(probes: Probes, kind: str, n: int, seed: int, head, device,
                 progress: Progress) -> _leakage.Units:
    """Run the head over a generated probe set: units, their boxes and labels."""
    acts, boxes, labels, index = [], [], {}, []
    seen = 0
    batches = probes.units(kind, n, seed)
    progress.start(len(batches) if hasattr(batches, "__len__") else 0,
                   f"activations of the {kind} probe")
    with torch.no_grad():
        for x, b, lab in batches:
            acts.append(head(x.to(device)).float().cpu())
            if b is None:
                index.append(torch.arange(seen, seen + len(x)))
            else:
                for j, bj in enumerate(b):
                    index.append(torch.full((len(bj),), seen + j, dtype=torch.long))
                    boxes.append(bj.float())
            for name, y in lab.items():
                labels.setdefault(name, []).append(torch.as_tensor(y, dtype=torch.long))
            seen += len(x)
            progress.advance(1)
    return _leakage.Units(torch.cat(acts), torch.cat(index),
                          torch.cat(boxes) if boxes else None,
                          {k: torch.cat(v) for k, v in labels.items()})


def _pair_deltas(probes: Probes, n: int, seed: int, head, device,
                 progress: Progress) -> torch.Tensor:
    """f(A) - f(B) for the probe's pairs."""
    deltas = []
    batches = probes.pairs(n, seed)
    progress.start(len(batches) if hasattr(batches, "__len__") else 0,
                   f"activations of {probes.pair_name} pairs")
    with torch.no_grad():
        for a, b in batches:
            deltas.append((head(a.to(device)).double() - head(b.to(device)).double()).cpu())
            progress.advance(1)
    return torch.cat(deltas)


def _two_input(probes: Probes, delta: torch.Tensor, obf: Obfuscator) -> TwoInput:
    std = obf.noise_scale_.double()
    median, p90 = {}, {}
    for k in KS:
        if obf.distribution == "gaussian":
            acc = _leakage.two_input_bound(delta, std, k)
            method = "Phi(D/2), exact for Gaussian noise"
        else:
            acc = _leakage.laplace_optimal_test(delta, std / math.sqrt(k), samples=2000)
            method = ("likelihood-ratio test, Monte Carlo (Laplace; k > 1 as Laplace of the "
                      "averaged variance, an approximation)")
        median[k] = float(acc.median())
        p90[k] = float(acc.quantile(0.9))
    return TwoInput(probes.pair_name, len(delta), method, median, p90)


def _utility(task: PrivacyTask, model, obf: Obfuscator, data: Path, device, draws: int,
             progress: Progress, key: tuple) -> Utility:
    from veil.privacy._measure import _score

    test = task.splits["test"]
    clean = _cached((*key, "clean score"), lambda: _score(task, model, None, data, test,
                                                           device, progress, "scoring clean"))
    values = [_score(task, model, obf.transform, data, test, device, progress,
                     f"scoring ALPHA {obf.alpha:g}, draw {d + 1}/{draws}")
              for d in range(draws)]
    mean = statistics.fmean(values)
    half = (1.96 * statistics.stdev(values) / math.sqrt(len(values))) if len(values) > 1 else 0
    return Utility(task.metric, clean, values, mean, mean / clean if clean else math.nan,
                   (mean - half) / clean if clean else math.nan)


def leakage(task: PrivacyTask | str, data: str | Path, alpha: float | None = None, *,
            obfuscator: Obfuscator | None = None, mechanism: str = "noise",
            distribution: str = "gaussian", epochs: int = 3, preset: str = "quick",
            workdir: Path | None = None, utility: bool = True, draws: int = 3, seed: int = 0,
            refit: bool = False, device: str = "cpu", progress: Progress | None = None,
            log=None) -> LeakageResult:
    """Every leakage measure of the obfuscator at `alpha` (fitted or reused in `workdir`) or
    of `obfuscator`, against attackers retrained from scratch (`preset`: "quick" or "full")."""
    from veil.privacy import _plots  # noqa: F401  (matplotlib checked before the work)
    from veil.privacy._measure import (
        _check_splits,
        _check_workdir,
        _task,
        _write_json,
        default_workdir,
        load_task_model,
        obfuscators,
    )

    task = _task(task)
    settings = _check_preset(preset)
    mechanism = check_mechanism(mechanism, {m: 1 for m in task.mechanisms})
    check_int("draws", draws, 1, 1000)
    check_int("seed", seed, 0, 2**31)
    check_device(device)
    if obfuscator is not None:
        if not isinstance(obfuscator, Obfuscator):
            raise InvalidArgument("obfuscator must be an Obfuscator (see Obfuscator.load)")
        if alpha is not None:
            raise InvalidArgument("give an ALPHA or an obfuscator, not both")
    elif alpha is None:
        raise InvalidArgument("the leakage report needs an ALPHA (or a saved obfuscator)")
    else:
        alpha = check_alpha(alpha)
        if alpha == 0:
            raise InvalidArgument("ALPHA 0 sends the clean activation: there is no noise to "
                                  "measure")
    data = Path(data)
    workdir = Path(workdir or default_workdir(task))
    _check_workdir(workdir)
    _check_splits(task, data, ["attack", "test"] + (["fit"] if obfuscator is None else []))
    progress = or_silent(progress)
    model = load_task_model(task, device, mechanism)
    if obfuscator is not None:
        obfuscator.check_model(model)
        obf = obfuscator
    else:
        obf = obfuscators(task, data, [alpha], workdir=workdir, model=model,
                          distribution=distribution, epochs=epochs, refit=refit, device=device,
                          progress=progress, log=log, mechanism=mechanism)[alpha]
    head, probes = model.forward_head, task.probes
    key = (task.name, str(data.resolve()), model.identity["fingerprint"], str(device))
    boxes = {role: (probes.boxes(data, task.splits[role]) if probes and probes.boxes else None)
             for role in ("attack", "test")}
    att_a, att_i, att_c = _cached((*key, "attack"), lambda: _collect(
        head, task.images(data, task.splits["attack"]), device, boxes["attack"], progress,
        "activations of the attack split"))
    tst_a, tst_i, tst_c = _cached((*key, "test"), lambda: _collect(
        head, task.images(data, task.splits["test"]), device, boxes["test"], progress,
        "activations of the test split"))
    obf.check_activation(tst_a[:1].to(device))
    att, tst = _attack.Pairs(att_a, att_i), _attack.Pairs(tst_a, tst_i)

    # whole-image decoders, each width from scratch; the best is the attacker
    widths, epochs_d = settings["widths"], settings["decoder_epochs"]
    progress.start(len(widths) * (epochs_d + 1), "training whole-image decoders")
    best = None
    for w in widths:
        dec = _attack.train_decoder(att, obf.transform, epochs=epochs_d, width=w, device=device,
                                    seed=seed, progress=progress)
        recon = _attack.reconstruct(dec, tst, obf.transform, device=device)
        p, s = _attack.score(recon, tst.images)
        progress.advance(1)
        if best is None or p > best[0]:
            best = (p, s, w, recon)
    p, s, w, recon = best
    public_guess, public_name = None, "public output"
    if probes and probes.public:
        public_name = probes.public_name
        att_pub = probes.public(data, task.splits["attack"])
        tst_pub = probes.public(data, task.splits["test"])
        if isinstance(tst_pub, torch.Tensor):  # a class per image
            public_guess = _leakage.class_mean_guess(att.images, att_pub, tst_pub)
        else:  # boxes per image
            thumb_crops = _leakage.crop(att.images[_region_index(att_pub)],
                                        torch.cat([b.float() for b in att_pub]), CROP)
            public_guess = _leakage.boxes_guess(att.images, thumb_crops.mean(0), tst_pub)
    lad = _leakage.ladder(recon, tst.images, att.images.mean(0), public_guess=public_guess,
                          public_name=public_name)
    result = LeakageResult(task.name, mechanism, obf.alpha, obf.distribution, preset,
                           len(att_a), len(tst_a), lad, s, f"whole-image decoder, width {w}")

    # regions: a per-window decoder, and the whole-image decoder's crops
    if boxes["attack"] is not None:
        tr = _region_units(att_a, boxes["attack"], att_c)
        te = _region_units(tst_a, boxes["test"], tst_c)
        if tr is not None and te is not None:
            ep = settings["region_epochs"]
            progress.start(ep, "training the per-face decoder")
            _, rec = _leakage.train_region_decoder(tr, te, obf.transform, epochs=ep,
                                                   size=WINDOW, seed=seed, device=device,
                                                   progress=progress)
            prior = tr.crops.mean(0)
            per_window = _leakage.region_score(rec, te.crops, prior)
            whole = _leakage.region_score(
                _leakage.crop(recon[te.index], te.boxes, CROP).clamp(0, 1), te.crops, prior)
            result.region, result.region_attacker = max(
                (per_window, "per-face window decoder"),
                (whole, f"whole-image decoder (width {w}), cropped"),
                key=lambda r: r[0].attack_psnr)

    # attributes and identity
    if probes is not None:
        scale = settings["scale"]

        def units(kind, n, s):
            return _cached((*key, kind, n, s), lambda: _probe_units(probes, kind, n, s, head,
                                                                    device, progress))

        tr = units("attributes", max(probes.sizes["train"] // scale, 8), seed + 101)
        te = units("attributes", max(probes.sizes["test"] // scale, 8), seed + 102)
        ep = settings["probe_epochs"]
        for name, classes in probes.attributes.items():
            progress.start(ep, f"training the {name} classifier")
            result.attributes.append(_leakage.train_probe(
                tr, te, name, classes, obf.transform, epochs=ep, size=WINDOW, seed=seed,
                device=device, progress=progress))
        if probes.identities:
            n_tr = max(probes.sizes["identity_train"] // scale, 4)
            n_te = max(probes.sizes["identity_test"] // scale, 2)
            tr = units("identity", n_tr, seed + 201)
            te = units("identity", n_te, seed + 202)
            progress.start(ep, f"training the {probes.identities}-way identity classifier")
            result.identity = _leakage.train_probe(
                tr, te, "identity", probes.identities, obf.transform, epochs=ep, size=WINDOW,
                seed=seed, device=device, progress=progress)
        n_pairs = max(probes.sizes["pairs"] // scale, 8)
        delta = _cached((*key, "pairs", n_pairs, seed + 301), lambda: _pair_deltas(
            probes, n_pairs, seed + 301, head, device, progress))
        result.two_input = _two_input(probes, delta, obf)
    if utility:
        result.utility = _utility(task, model, obf, data, device, draws, progress, key)
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"leakage-{mechanism}-{obf.distribution}-alpha-{obf.alpha:g}-{preset}.json"
    result.json_path = _write_json(workdir / name, _plain(result))
    return result


def _region_index(boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, b in enumerate(boxes)])


def _plain(result: LeakageResult) -> dict[str, Any]:
    """The report as JSON-ready values, with each measure's derived figures spelled out."""
    from dataclasses import asdict

    out = asdict(result)
    out["ladder"]["gain_over_mean"] = result.ladder.gain_over_mean
    for row, score in zip(out["attributes"], result.attributes, strict=True):
        row.update(over_majority=score.over_majority, over_chance=score.over_chance)
    if result.identity:
        out["identity"].update(over_chance=result.identity.over_chance)
    if result.region:
        out["region"]["gain"] = result.region.gain
    return out


def describe(r: LeakageResult, prog=print) -> None:
    """The report as lines a person reads."""
    prog(f"{r.task}, mechanism {r.mechanism}, ALPHA {r.alpha:g} ({r.distribution} noise), "
         f"attackers retrained from scratch ({r.preset} preset)")
    if r.utility:
        u = r.utility
        prog(f"  utility: {u.metric} {u.mean:.4f} = {u.of_clean:.1%} of clean {u.clean:.4f} "
             f"(95% interval from {u.low95_of_clean:.1%}, {len(u.values)} "
             f"draw{'s' if len(u.values) != 1 else ''})")
    lad = r.ladder
    prog(f"  reconstruction: {lad.attack_psnr:.2f} dB PSNR, SSIM {r.ssim:.3f} ({r.best_decoder})"
         f": {lad.place}")
    for rung in lad.rungs:
        prog(f"    {rung.name:<34} {rung.psnr:6.2f} dB   attack {rung.gain:+.2f} dB")
    if r.region:
        g = r.region
        prog(f"  face crops ({g.size}x{g.size}, {g.test_units} faces): {g.attack_psnr:.2f} dB "
             f"against {g.prior_psnr:.2f} dB for the mean face: gain {g.gain:+.2f} dB "
             f"({r.region_attacker})")
    for a in r.attributes:
        prog(f"  {a.name:<10} inferred {a.accuracy:.1%}: majority {a.majority:.1%} "
             f"({a.over_majority * 100:+.1f} pts), chance {a.chance:.1%} "
             f"({a.over_chance * 100:+.1f} pts)")
    if r.identity:
        i = r.identity
        prog(f"  identity: {i.classes}-way identification {i.accuracy:.1%}, chance "
             f"{i.chance:.1%}")
    if r.two_input:
        t = r.two_input
        ks = ", ".join(f"k={k}: {t.median[k]:.3f}" for k in KS)
        prog(f"  best two-input test ({t.what}, {t.pairs} pairs, median): {ks} [{t.method}]")
