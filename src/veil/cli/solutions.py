"""`veil solutions ...`: the reference architectures built end to end on veil's parts."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from veil.cli._render import console, err_console, print_json
from veil.errors import InvalidArgument, VeilError

app = typer.Typer(help="Reference architectures built end to end on veil.", no_args_is_help=True)
faces = typer.Typer(help="TR-4928: confidential face detection (FaceBoxes on FDDB-layout data).",
                    no_args_is_help=True)
app.add_typer(faces, name="face-privacy")


def _torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise VeilError("veil solutions face-privacy needs PyTorch: pip install 'veil[torch]'"
                        ) from None


WORKDIR = typer.Option(None, "--workdir", help="Where fitted obfuscators are kept (default "
                       "./veil-privacy-faces).")
NEW_FOLDER = typer.Argument(..., help="New folder to write the data set into.")
SEED = typer.Option(0, "--seed", help="Same seed, same files.")
INTO_VOLUME = typer.Option(None, "--volume", help="Write into this veil volume (created if "
                           "missing); PATH is then relative to it.")


def _target(path: Path, volume: str | None) -> Path:
    """Where a generator writes: PATH, or PATH inside VOLUME (created if missing)."""
    from veil.solutions.face_privacy._job import resolve_dataset

    if volume is not None:
        from veil import data
        from veil.errors import NotFound

        try:
            data.get_volume(volume)
        except NotFound:
            data.create_volume(volume)
    return resolve_dataset(path, volume)


def _tqdm_progress(desc: str, total: int):
    """A tqdm bar on stderr that stays, like the seed's job log (also when not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, mininterval=1.0, dynamic_ncols=True)

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= bar.total:
            bar.close()

    return update


@faces.command("generate")
def generate(
    path: Path = NEW_FOLDER,
    seed: int = SEED,
    images_per_fold: int = typer.Option(30, "--images-per-fold", help="Images in each of the "
                                        "10 folds."),
    fit_per_fold: int = typer.Option(10, "--fit-per-fold", help="Images per fold of ROOT/fit "
                                     "(for fitting the obfuscator); 0: none."),
    attack_per_fold: int = typer.Option(0, "--attack-per-fold", help="Images per fold of "
                                        "ROOT/attack (the attacker's own images); 0: none."),
    volume: str = INTO_VOLUME,
) -> None:
    """Write a synthetic data set in FDDB's layout (10 folds, ellipse annotations)."""
    _torch()
    from veil.solutions.face_privacy import _synth

    target = _target(path, volume)
    total = 10 * (images_per_fold + fit_per_fold + attack_per_fold)
    _synth.generate(target, seed, images_per_fold, _tqdm_progress("writing images", total),
                    fit_per_fold=fit_per_fold, attack_per_fold=attack_per_fold)
    console.print(f"Wrote {total} images to {target} (10 folds of {images_per_fold}"
                  f"{f', fit/ {fit_per_fold} per fold' if fit_per_fold else ''}"
                  f"{f', attack/ {attack_per_fold} per fold' if attack_per_fold else ''}).")


@faces.command("evaluate")
def evaluate(
    dataset: str = typer.Option(None, "--dataset", help="FDDB-layout folder (FDDB-folds/, "
                                "originalPics/); with --volume, a path inside the volume."),
    volume: str = typer.Option(None, "--volume", help="Read the data set from this veil volume."),
    noisy: bool = typer.Option(False, "--noisy", help="Obfuscate the activation (needs "
                               "--alpha)."),
    alpha: float = typer.Option(None, "--alpha", help="ALPHA of the obfuscation, in [0, 0.999]."),
    obfuscator: Path = typer.Option(None, "--obfuscator", help="A fitted obfuscator (veil "
                                    "privacy fit --task faces); default: fit one on DATASET/fit."),
    weights: Path = typer.Option(None, "--weights", help="FaceBoxes weights (default: shipped)."),
    results: str = typer.Option(None, "--results", help="Store results on this veil volume "
                                "(created if missing) and snapshot it."),
    snapshot: bool = typer.Option(True, "--snapshot/--no-snapshot", help="Snapshot the results "
                                  "volume after the run."),
    out: Path = typer.Option(None, "--out", help="Write results here (when not using "
                             "--results)."),
    workdir: Path = WORKDIR,
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda, ..."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the log."),
    emit_k8s: Path = typer.Option(None, "--emit-k8s", help="Instead of running, write Kubernetes "
                                  "Job manifests for this job into this folder."),
    alphas: str = typer.Option(None, "--alphas", help="With --emit-k8s: one noisy job per ALPHA "
                               "(comma-separated) beside the raw one."),
    data_pvc: str = typer.Option("inference-data", "--data-pvc", help="With --emit-k8s: the "
                                 "PVC holding the data set (mounted at /data)."),
    results_pvc: str = typer.Option(None, "--results-pvc", help="With --emit-k8s: a PVC for "
                                    "results (mounted at /results)."),
    namespace: str = typer.Option("inference", "--namespace", help="With --emit-k8s."),
    image: str = typer.Option("veil:latest", "--image", help="With --emit-k8s: container image."),
    gpus: int = typer.Option(0, "--gpus", help="With --emit-k8s: nvidia.com/gpu limit."),
) -> None:
    """Score the face detector on an FDDB-layout data set, clean or obfuscated (TR-4928 scenario
    2), printing per-fold AP and mAP in the seed's format."""
    if emit_k8s is not None:
        from veil.solutions.face_privacy import _job

        if noisy and alpha is None:
            raise InvalidArgument("--noisy needs --alpha")
        sweep: list[float | None] = [None]
        if alphas:
            try:
                sweep += [float(a) for a in alphas.split(",") if a.strip()]
            except ValueError:
                raise InvalidArgument(f"--alphas must be numbers separated by commas, not "
                                      f"{alphas!r}") from None
        elif noisy:
            sweep = [alpha]
        files = _job.emit_k8s(emit_k8s, sweep, dataset=dataset or "FDDB", data_pvc=data_pvc,
                                results_pvc=results_pvc, namespace=namespace, image=image,
                                gpus=gpus)
        for f in files:
            console.print(f"wrote {f}")
        return
    if dataset is None:
        raise InvalidArgument("--dataset is required (an FDDB-layout folder)")
    if noisy and alpha is None:
        raise InvalidArgument("--noisy needs --alpha (TR-4928 sweeps 0.05 ... 0.95)")
    if alpha is not None and not noisy:
        raise InvalidArgument("--alpha applies only with --noisy")
    _torch()
    from veil.solutions.face_privacy import _evaluate, _job

    res = _job.evaluate(dataset, volume=volume, alpha=alpha if noisy else None,
                          obfuscator=obfuscator, weights=weights, results=results,
                          snapshot=snapshot, out=out, workdir=workdir, device=device,
                          batch_size=batch_size, progress=_tqdm_progress,
                          log=lambda m: err_console.print(m, markup=False))
    ev = res.evaluation
    if as_json:
        return print_json({**ev.summary(), "results_dir": res.results_dir,
                           "results_volume": res.results_volume, "snapshot": res.snapshot,
                           "obfuscator": res.obfuscator})
    for line in _evaluate.log_lines(ev) + _evaluate.extra_lines(ev):
        print(line)
    if res.results_dir:
        where = f" on volume {res.results_volume}" if res.results_volume else ""
        err_console.print(f"results: {res.results_dir}{where}", markup=False)
    if res.snapshot:
        err_console.print(f"snapshot: {res.snapshot}", markup=False)
    if ev.errors:
        raise typer.Exit(1)


@faces.command("export-models")
def export_models(
    volume: str = typer.Option("triton-model-repo", "--volume", help="The veil volume to use as "
                               "the Triton model repository (created if missing)."),
    weights: Path = typer.Option(None, "--weights", help="FaceBoxes weights (default: shipped)."),
    noisy_weights: Path = typer.Option(None, "--noisy-weights", help="Weights for "
                                       "face_detection_noisy (default: the same)."),
    max_batch_size: int = typer.Option(8, "--max-batch-size", help="Largest batch per request "
                                       "(Triton batches concurrent requests up to it)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite models already there."),
) -> None:
    """Write the detector's tail as Triton models face_detection_base and face_detection_noisy
    (TorchScript, input INPUT_0 FP32 [N, 128, 32, 32]) into a volume (TR-4928 scenario 3,
    steps 2 and 3)."""
    _torch()
    from veil.solutions.face_privacy import _serving

    res = _serving.export_models(volume, weights=weights, noisy_weights=noisy_weights,
                                 max_batch_size=max_batch_size, replace=replace)
    console.print(f"Wrote {', '.join(p.name for p in res.models)} to volume '{res.volume}' "
                  f"({res.path}).", markup=False)
    console.print(f"Serve them: veil serve start --model-repo {res.volume}", markup=False)


@faces.command("infer")
def infer(
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, ...)."),
    server: str = typer.Option(..., "--server", help="A veil server name (veil serve list) or "
                               "host:port."),
    noisy: bool = typer.Option(False, "--noisy", help="Obfuscate here and send only the "
                               "obfuscated activation to face_detection_noisy."),
    alpha: float = typer.Option(None, "--alpha", help="With --noisy: ALPHA of the obfuscation."),
    obfuscator: Path = typer.Option(None, "--obfuscator", help="With --noisy: a fitted obfuscator "
                                    "(veil privacy fit --task faces)."),
    dataset: Path = typer.Option(None, "--dataset", help="With --noisy and no --obfuscator: fit "
                                 "the noise on DATASET/fit (cached in --workdir)."),
    workdir: Path = WORKDIR,
    protocol: str = typer.Option("http", "--protocol", help="http or grpc."),
    json_tensors: bool = typer.Option(False, "--json-tensors", help="HTTP: send tensors as JSON "
                                      "numbers, as the seed's client does (default: binary)."),
    threshold: float = typer.Option(0.5, "--threshold", help="Lowest score of a face reported."),
    out: Path = typer.Option(None, "--out", help="Write each image with its faces boxed here."),
    stats: bool = typer.Option(False, "--stats", help="Print the server's inference statistics "
                               "for the model and check them, as the seed's client does."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the server."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Detect faces with the tail on a Triton server (TR-4928 scenario 3, steps 5 and 6): the
    head runs here, and with --noisy only the obfuscated activation leaves this machine."""
    if noisy and alpha is None and obfuscator is None:
        raise InvalidArgument("--noisy needs --alpha (with --dataset to fit the noise) or "
                              "--obfuscator")
    if not noisy and (alpha is not None or obfuscator is not None):
        raise InvalidArgument("--alpha and --obfuscator apply only with --noisy")
    if noisy and obfuscator is None and dataset is None:
        raise InvalidArgument("--noisy --alpha needs --dataset (to fit the noise on DATASET/fit) "
                              "or a fitted --obfuscator")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgument(f"--threshold must be in [0, 1], not {threshold:g}")
    for p in images:
        if not p.is_file():
            raise InvalidArgument(f"no image file {p}")
    _torch()
    import numpy as np
    from PIL import Image

    from veil.solutions.face_privacy import _job, _model, _serving

    pics = []
    for p in images:
        try:
            with Image.open(p) as im:
                pics.append(np.asarray(im.convert("RGB")))
        except Exception as e:
            raise InvalidArgument(f"{p}: not a readable image ({type(e).__name__})") from None
    model = _model.load_model("cpu")
    obf = None
    if noisy:
        if obfuscator is not None:
            from veil.privacy import Obfuscator

            obf = Obfuscator.load(obfuscator, model)
            if alpha is not None and abs(obf.alpha - alpha) > 1e-9:
                raise InvalidArgument(f"{obfuscator} was fitted at ALPHA {obf.alpha:g}, not "
                                      f"{alpha:g}")
        else:
            obf, _ = _job.obfuscator_for(model, dataset, alpha, None, workdir=workdir,
                                           device="cpu",
                                           log=lambda m: err_console.print(m, markup=False))
    with _serving.client(server, obfuscator=obf, model=model, protocol=protocol,
                         binary=not json_tensors, timeout=timeout,
                         score_threshold=threshold) as c:
        dets = c.predict(pics)
        statistics = c.statistics() if stats else None
        model_name = c.model
    rows = []
    for p, (boxes, scores) in zip(images, dets, strict=True):
        rows.append({"image": str(p), "faces": [[*map(float, b), float(s)]
                                                for b, s in zip(boxes, scores, strict=True)]})
    if out is not None:
        from PIL import Image, ImageDraw

        out.mkdir(parents=True, exist_ok=True)
        for p, pic, (boxes, _) in zip(images, pics, dets, strict=True):
            im = Image.fromarray(pic)
            draw = ImageDraw.Draw(im)
            for x1, y1, x2, y2 in boxes:
                draw.rectangle([x1, y1, x2, y2], outline=(255, 0, 0), width=3)
            im.save(out / f"{p.stem}.faces.png")
    if as_json:
        return print_json({"model": model_name, "private": noisy, "results": rows,
                           "statistics": statistics})
    for r in rows:
        print(f"{r['image']}: {len(r['faces'])} face(s) from {model_name}")
        for x1, y1, x2, y2, s in r["faces"]:
            print(f"  {x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}  score {s:.3f}")
    if statistics is not None:
        import json

        print(json.dumps(statistics))
        if len(statistics.get("model_stats", [])) != 1:
            print("FAILED: Inference Statistics")
            raise typer.Exit(1)


lanes_app = typer.Typer(help="TR-4896: lane detection on TuSimple-format data.",
                        no_args_is_help=True)
app.add_typer(lanes_app, name="lane-detection")


@lanes_app.command("generate")
def lanes_generate(
    path: Path = NEW_FOLDER,
    seed: int = SEED,
    train_clips: int = typer.Option(300, "--train-clips", help="Labelled training frames "
                                    "(label_data_veil.json)."),
    test_clips: int = typer.Option(100, "--test-clips", help="Labelled test frames "
                                   "(test_label.json)."),
    volume: str = INTO_VOLUME,
) -> None:
    """Write a synthetic data set in TuSimple's layout: 1280 x 720 road frames with 2-5 lanes
    (straight, curved, solid, dashed), shadows, vehicles, day/dusk/night/rain."""
    from veil.solutions.lane_detection import generate as gen

    target = _target(path, volume)
    total = max(train_clips, 0) + max(test_clips, 0)
    gen(target, seed, train_clips, test_clips, _tqdm_progress("writing frames", total))
    console.print(f"Wrote {total} labelled frames to {target} ({train_clips} train, "
                  f"{test_clips} test).", markup=False)


@lanes_app.command("check")
def lanes_check(
    path: Path = typer.Argument(..., help="A TuSimple folder or one label file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Read every label line and check it (JSON, h_samples, one x per h_sample, the image
    exists); report each problem with its file and line."""
    from veil.solutions.lane_detection import read_dataset

    labels, errors = read_dataset(path, strict=False)
    lanes = [len(lab.lanes) for lab in labels]
    summary = {"frames": len(labels), "lanes": sum(lanes),
               "lanes_per_frame": {str(k): lanes.count(k) for k in sorted(set(lanes))},
               "errors": errors}
    if as_json:
        print_json(summary)
    else:
        for e in errors:
            err_console.print(e, markup=False)
        console.print(f"{len(labels)} labelled frames, {sum(lanes)} lanes "
                      f"({', '.join(f'{n}: {c}' for n, c in summary['lanes_per_frame'].items())}"
                      f" lanes per frame); {len(errors)} problem(s).", markup=False)
    if errors:
        raise typer.Exit(1)


@lanes_app.command("evaluate")
def lanes_evaluate(
    pred: Path = typer.Argument(..., help="Predictions: TuSimple JSON lines with run_time."),
    gt: Path = typer.Argument(..., help="Ground truth, e.g. test_label.json."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score predictions with the official TuSimple metric: Accuracy, FP, FN, and F1."""
    from veil.solutions.lane_detection import evaluate_files

    res = evaluate_files(pred, gt)
    if as_json:
        return print_json(res.summary())
    print(f"Accuracy {res.accuracy:.4f}")
    print(f"FP {res.fp:.4f}")
    print(f"FN {res.fn:.4f}")
    print(f"F1 {res.f1:.4f}")
    err_console.print(f"({res.images} images; precision {res.precision:.4f}, recall "
                      f"{res.recall:.4f})", markup=False)
