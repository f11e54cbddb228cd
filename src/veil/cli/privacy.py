"""`veil privacy ...`: fit, evaluate, attack and time learned obfuscation for a registered task."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from veil.cli._render import console, err_console, print_json
from veil.errors import VeilError, require_extra
from veil.progress import TqdmProgress

app = typer.Typer(help="Confidential inference: learned noise on a split model's activation, "
                       "with measured leakage.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
TASK = typer.Option("shapes", "--task", "-t", help="Registered task (veil privacy tasks).")
DATA = typer.Option(..., "--data", "-d", help="Data set folder in the task's format.")
WORKDIR = typer.Option(None, "--workdir", "-w",
                       help="Where fitted obfuscators, JSON and plots go "
                            "(default ./veil-privacy-TASK).")
DIST = typer.Option("gaussian", "--distribution",
                    help="Noise distribution: gaussian (its two-input bound is exact) or laplace.")
MECHANISM = typer.Option("noise", "--mechanism", "-m",
                         help="What runs at the split: noise (the baseline), bottleneck, "
                              "adversarial or deep, where the task ships it (veil privacy "
                              "tasks).")
EPOCHS = typer.Option(3, "--epochs", help="Epochs over the fit split when fitting noise.")
DEVICE = typer.Option("cpu", "--device", help="torch device: cpu, cuda, cuda:1, ...")
ALPHAS = typer.Option(None, "--alphas",
                      help="Comma-separated ALPHAs (default TR-4928's sweep: "
                           "0.05,0.1,0.2,0.4,0.6,0.8,0.9,0.95).")
REFIT = typer.Option(False, "--refit", help="Fit again even where a fitted obfuscator exists.")


def _privacy():
    """veil.privacy, or a one-line error when PyTorch is not installed."""
    require_extra("torch", "torch", "veil privacy")
    import veil.privacy

    return veil.privacy


def _workdir(workdir: Path | None, task, p) -> Path:
    return workdir or p.default_workdir(task)


def _log(msg: str) -> None:
    err_console.print(msg, markup=False)


def _fmt_bits(x: float | None) -> str:
    return "-" if x is None else ("inf" if math.isinf(x) else f"{x:.3f}")


@app.command("tasks")
def tasks(as_json: bool = JSON) -> None:
    """List the registered tasks (model + data + metric)."""
    p = _privacy()
    ts = p.list_tasks()
    if as_json:
        return print_json([{"name": t.name, "metric": t.metric, "description": t.description,
                            "mechanisms": list(t.mechanisms)} for t in ts])
    t = Table("TASK", "METRIC", "MECHANISMS", "DESCRIPTION", box=None)
    for task in ts:
        t.add_row(task.name, task.metric, ", ".join(task.mechanisms), task.description)
    console.print(t)


@app.command("generate")
def generate(
    path: Path = typer.Argument(..., help="New folder to write the data set into."),
    task: str = TASK,
    seed: int = typer.Option(0, "--seed", help="Same seed, same files."),
    fit: int = typer.Option(None, "--fit", "--train",
                            help="Images in the split the obfuscator is fitted on (default: "
                                 "the task's; --train is the older spelling).",
                            show_default=False),
    attack: int = typer.Option(None, "--attack", help="Images in the attacker's split.",
                               show_default=False),
    test: int = typer.Option(None, "--test", help="Images in the evaluation split.",
                             show_default=False),
    as_json: bool = JSON,
) -> None:
    """Write a generated data set for TASK in its real on-disk format."""
    p = _privacy()
    t = p.get_task(task)
    if t.generate is None:
        raise VeilError(f"task {task!r} has no data generator")
    given = {"fit": fit, "attack": attack, "test": test}
    sizes = {**t.sizes, **{k: v for k, v in given.items() if v is not None}}
    total = sum(sizes.values())
    with TqdmProgress(unit="img") as progress:
        t.generate(path, seed=seed, sizes=sizes, progress=progress)
    if as_json:
        return print_json({"path": str(path.absolute()), "task": t.name, "seed": seed,
                           "sizes": sizes, "images": total})
    console.print(f"Wrote {total} images to {path} (fit {sizes['fit']}, attack "
                  f"{sizes['attack']}, test {sizes['test']}).")


@app.command("fit")
def fit(
    task: str = TASK,
    data: Path = DATA,
    alpha: float = typer.Option(0.8, "--alpha", "-a", help="ALPHA in [0, 0.999]; 0 is clean."),
    distribution: str = DIST,
    epochs: int = EPOCHS,
    out: Path = typer.Option(None, "--out", "-o",
                             help="Where to save it (default WORKDIR/obfuscators/DIST-alpha-A)."),
    mechanism: str = MECHANISM,
    workdir: Path = WORKDIR,
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Fit the noise for one ALPHA with the model frozen, and save it."""
    p = _privacy()
    p.check_alpha(alpha)
    t = p.get_task(task)
    path = out or p.obfuscator_path(_workdir(workdir, t, p), distribution, alpha, mechanism)
    with TqdmProgress(unit="batch") as progress:
        obf = p.fit_one(t, data, alpha, distribution=distribution, epochs=epochs,
                        device=device, progress=progress, out=path, mechanism=mechanism)
    info = {"path": str(path), "alpha": alpha, "distribution": distribution,
            "model": obf.model_identity_, "activation_shape": list(obf.activation_shape_),
            "budget_bits_per_element": None if alpha == 0 else obf.budget_bits,
            "loss_history": obf.loss_history_}
    if as_json:
        return print_json(info)
    loss = f", task loss {obf.loss_history_[0]:.4f} -> {obf.loss_history_[-1]:.4f}" \
        if obf.loss_history_ else ""
    console.print(f"Fitted ALPHA {alpha:g} ({distribution}) for {obf.model_identity_['name']} "
                  f"split at {obf.model_identity_['split']}{loss}.")
    console.print(f"Saved to {path}")


@app.command("evaluate")
def evaluate(
    task: str = TASK,
    data: Path = DATA,
    alphas: str = ALPHAS,
    obfuscator: Path = typer.Option(None, "--obfuscator",
                                    help="Evaluate this saved obfuscator instead of a sweep."),
    distribution: str = DIST,
    epochs: int = EPOCHS,
    workdir: Path = WORKDIR,
    refit: bool = REFIT,
    draws: int = typer.Option(1, "--draws", help="Passes with fresh noise, averaged."),
    mechanism: str = MECHANISM,
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """The task metric clean and at each ALPHA, as TR-4928's table; JSON and PNG in WORKDIR."""
    p = _privacy()
    p.check_device(device)
    t = p.get_task(task)
    wd = _workdir(workdir, t, p)
    obf = None
    if obfuscator is not None:
        obf = p.Obfuscator.load(obfuscator, p.load_task_model(t, device, mechanism),
                                device=device)
    with TqdmProgress() as progress:
        r = p.evaluate(t, data, alphas, workdir=wd, distribution=distribution,
                       epochs=epochs, refit=refit, device=device, obfuscator=obf, draws=draws,
                       progress=progress, log=_log, mechanism=mechanism)
    if as_json:
        return print_json(r)
    name = r.metric if r.metric != r.metric.lower() else r.metric[:1].upper() + r.metric[1:]
    t = Table("Obfuscation", "ALPHA", name, "of clean", "budget bits/element", box=None)
    for row in r.rows:
        if row.alpha is None:
            t.add_row("No", "N/A", f"{row.value:.4f}", "100.0%", "-")
        else:
            t.add_row("Yes", f"{row.alpha:g}", f"{row.value:.4f}", f"{100 * row.of_clean:.1f}%",
                      _fmt_bits(row.budget_bits))
    draws_note = f", mean of {r.draws} noise draws" if r.draws > 1 else ""
    console.print(f"{r.task}: {r.metric} on the test split, {r.distribution} noise{draws_note}")
    console.print(t)
    console.print(f"Wrote {r.json_path} and {r.plot}")


@app.command("attack")
def attack(
    task: str = TASK,
    data: Path = DATA,
    alphas: str = typer.Option(None, "--alphas",
                               help="Comma-separated ALPHAs (default: the preset's; full is "
                                    "TR-4928's sweep 0.05,...,0.95, quick is 0.4,0.8,0.95).",
                               show_default=False),
    preset: str = typer.Option("quick", "--preset",
                               help="quick: a few minutes on 2 cores (3 ALPHAs, 8 epochs, width "
                                    "32, k 1,8); full: the benchmarks' strength (8 ALPHAs, 40 "
                                    "epochs, width 96, k 1,8,64; ~40 min on 2 cores)."),
    ks: str = typer.Option(None, "--ks", help="Averaging attack: obfuscations averaged "
                                              "(default: the preset's).", show_default=False),
    averaging_alpha: float = typer.Option(
        None, "--averaging-alpha",
        help="ALPHA for the averaging attack (default: the first no better than a 2x2 colour "
             "grid)."),
    attack_epochs: int = typer.Option(None, "--attack-epochs",
                                      help="Decoder training epochs (default: the preset's).",
                                      show_default=False),
    width: int = typer.Option(None, "--width",
                              help="Decoder width in channels (default: the preset's).",
                              show_default=False),
    distribution: str = DIST,
    epochs: int = EPOCHS,
    mechanism: str = MECHANISM,
    workdir: Path = WORKDIR,
    refit: bool = REFIT,
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """White-box reconstruction attack at each ALPHA: PSNR, SSIM, the ladder, the bound, a grid."""
    p = _privacy()
    t = p.get_task(task)
    with TqdmProgress() as progress:
        r = p.attack(t, data, alphas, workdir=_workdir(workdir, t, p),
                     distribution=distribution, epochs=epochs, attack_epochs=attack_epochs,
                     width=width, ks=ks, preset=preset, averaging_alpha=averaging_alpha,
                     refit=refit, device=device, progress=progress, log=_log,
                     mechanism=mechanism)
    if as_json:
        return print_json(r)
    console.print(f"{r.task}: white-box inversion ({r.preset} preset), decoder of width "
                  f"{r.width} trained {r.epochs} epochs on {r.attack_images} attack images, "
                  f"scored on {r.test_images} test images")
    t = Table("ALPHA", "PSNR (dB)", "over mean image", "SSIM", "bound bits/element",
              "bound bits/input", "on the ladder", box=None)
    for row in r.rows:
        t.add_row("clean" if row.alpha == 0 else f"{row.alpha:g}", f"{row.psnr:.2f}",
                  f"{row.gain_over_mean:+.2f} dB", f"{row.ssim:.3f}",
                  _fmt_bits(row.bits_per_element),
                  "inf" if math.isinf(row.bits_per_input) else f"{row.bits_per_input:.0f}",
                  row.place)
    console.print(t)
    console.print("The ladder (PSNR of each baseline on the test split): " + ", ".join(
        f"{name} {v:.2f} dB" for name, v in sorted(r.ladder.items(), key=lambda kv: kv[1])))
    if r.averaging:
        console.print(f"Averaging attack at ALPHA {r.averaging[0].alpha:g} "
                      "(mean of k obfuscations of the same input):")
        t = Table("k", "PSNR (dB)", "SSIM", "bound bits/element", box=None)
        for a in r.averaging:
            t.add_row(str(a.k), f"{a.psnr:.2f}", f"{a.ssim:.3f}", _fmt_bits(a.bits_per_element))
        console.print(t)
    if r.operating_alpha is None:
        console.print("At no ALPHA in the sweep is the reconstruction as poor as a 2x2 colour "
                      "grid of the true image.")
    else:
        console.print(f"Smallest ALPHA whose reconstruction is no better than a 2x2 colour "
                      f"grid: {r.operating_alpha:g}")
    console.print(f"Wrote {r.json_path}, {r.plot} and {r.grid}")


@app.command("bench")
def bench(
    task: str = TASK,
    alpha: float = typer.Option(0.8, "--alpha", "-a",
                                help="Use the obfuscator fitted for this ALPHA in WORKDIR."),
    obfuscator: Path = typer.Option(None, "--obfuscator", help="Or this saved obfuscator."),
    distribution: str = DIST,
    workdir: Path = WORKDIR,
    repeats: int = typer.Option(15, "--repeats", help="End-to-end runs, clean and private."),
    obf_repeats: int = typer.Option(200, "--obf-repeats", help="Obfuscation-only runs."),
    mechanism: str = MECHANISM,
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Time obfuscation of one 1920x1080 input and its share of head + tail inference."""
    p = _privacy()
    p.check_device(device)
    t = p.get_task(task)
    path = obfuscator or p.obfuscator_path(_workdir(workdir, t, p), distribution,
                                           p.check_alpha(alpha), mechanism)
    if obfuscator is None and not path.exists():
        raise VeilError(f"no fitted obfuscator at {path}: run veil privacy fit --task {task} "
                        f"--data PATH --alpha {alpha:g} first, or pass --obfuscator")
    with TqdmProgress() as progress:
        r = p.bench(t, path, repeats=repeats, obf_repeats=obf_repeats, device=device,
                    progress=progress, mechanism=mechanism)
    if as_json:
        return print_json(r)
    shape = "x".join(map(str, r.input_shape))
    console.print(f"{r.task} on {r.device} ({r.threads} threads), input {shape}, "
                  f"activation {'x'.join(map(str, r.activation_shape))}, "
                  f"{r.distribution} ALPHA {r.alpha:g}")
    tb = Table("step", "median ms", "p99 ms", "runs", box=None)
    for name, tm in (("head", r.head), ("obfuscation", r.obfuscation), ("tail", r.tail),
                     ("head + tail", r.clean), ("head + obfuscation + tail", r.private)):
        tb.add_row(name, f"{tm.median_ms:.2f}", f"{tm.p99_ms:.2f}", str(tm.n))
    console.print(tb)
    console.print(f"Obfuscation adds {100 * r.obfuscation_share:.1f}% to head + tail "
                  f"(end-to-end medians differ by {100 * r.measured_overhead:+.1f}%).")
    console.print(f"Sent: {r.activation_bytes:,} bytes of activation vs {r.raw_bytes:,} bytes "
                  f"of raw 8-bit image ({r.activation_bytes / r.raw_bytes:.2f}x).")


@app.command("leakage")
def leakage(
    task: str = TASK,
    data: Path = DATA,
    alpha: float = typer.Option(None, "--alpha", "-a",
                                help="The obfuscator fitted for this ALPHA (fitted if missing).",
                                show_default=False),
    obfuscator: Path = typer.Option(None, "--obfuscator", help="Or this saved obfuscator."),
    mechanism: str = MECHANISM,
    preset: str = typer.Option("quick", "--preset",
                               help="Attackers' strength: quick (minutes), full (benchmarks) or "
                                    "smoke (seconds: checks the steps run, figures mean little)."),
    draws: int = typer.Option(3, "--draws", help="Noise draws for the utility figure."),
    no_utility: bool = typer.Option(False, "--no-utility", help="Skip scoring the task metric."),
    distribution: str = DIST,
    epochs: int = EPOCHS,
    workdir: Path = WORKDIR,
    refit: bool = REFIT,
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Identity-level leakage of one obfuscator: the ladder, face crops, attributes, identity,
    the two-input bound, with every attacker retrained from scratch."""
    p = _privacy()
    from veil.privacy import leakage as _report

    t = p.get_task(task)
    obf = None
    if obfuscator is not None:
        obf = p.Obfuscator.load(obfuscator, p.load_task_model(t, device, mechanism),
                                device=device)
    elif alpha is None:
        raise VeilError("give --alpha A (the obfuscator fitted for it) or --obfuscator DIR")
    with TqdmProgress() as progress:
        r = _report.leakage(t, data, alpha, obfuscator=obf, mechanism=mechanism,
                            distribution=distribution, epochs=epochs, preset=preset,
                            workdir=_workdir(workdir, t, p), utility=not no_utility,
                            draws=draws, refit=refit, device=device, progress=progress,
                            log=_log)
    if as_json:
        return print_json(_report.as_dict(r) | {"json_path": str(r.json_path)})
    _report.describe(r, lambda line: console.print(line, markup=False, highlight=False))
    console.print(f"Wrote {r.json_path}", markup=False)
