"""The face-privacy solution's serving commands (TR-4928 scenario 3): `export-models` and
`infer`. They are not part of the solution contract, so they are wired here."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._render import console, err_console, print_json
from veil.errors import InvalidArgument, require_extra

MAX_TIMEOUT = 86400.0  # seconds: a day
MAX_ALPHA = 0.999  # as veil.privacy's

WORKDIR = typer.Option(None, "--workdir", help="Where fitted obfuscators are kept (default "
                       "./veil-privacy-faces).")


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
    require_extra("torch", "torch", "veil solutions face-privacy")
    from veil.solutions.face_privacy import export_models as export

    res = export(volume, weights=weights, noisy_weights=noisy_weights,
                                 max_batch_size=max_batch_size, replace=replace)
    console.print(f"Wrote {', '.join(p.name for p in res.models)} to volume '{res.volume}' "
                  f"({res.path}).", markup=False)
    console.print(f"Serve them: veil serve start --model-repo {res.volume}", markup=False)


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
    if not 0.0 < timeout <= MAX_TIMEOUT:
        raise InvalidArgument(f"--timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], "
                              f"not {timeout:g}")
    if alpha is not None and not 0.0 <= alpha <= MAX_ALPHA:
        raise InvalidArgument(f"ALPHA must be in [0, {MAX_ALPHA}] (0 is clean), not {alpha:g}")
    if protocol not in ("http", "grpc"):
        raise InvalidArgument(f"--protocol must be http or grpc, not {protocol!r}")
    if out is not None and out.exists() and not out.is_dir():
        raise InvalidArgument(f"--out {out} is not a folder")
    for p in images:
        if not p.is_file():
            raise InvalidArgument(f"no image file {p}")
    require_extra("torch", "torch", "veil solutions face-privacy")
    import numpy as np
    from PIL import Image

    from veil.solutions.face_privacy import load_model, obfuscator_for, serving_client

    pics = []
    for p in images:
        try:
            with Image.open(p) as im:
                pics.append(np.asarray(im.convert("RGB")))
        except Exception as e:
            raise InvalidArgument(f"{p}: not a readable image ({type(e).__name__})") from None
    model = load_model("cpu")
    obf = None
    if noisy:
        if obfuscator is not None:
            from veil.privacy import Obfuscator

            obf = Obfuscator.load(obfuscator, model)
            if alpha is not None and abs(obf.alpha - alpha) > 1e-9:
                raise InvalidArgument(f"{obfuscator} was fitted at ALPHA {obf.alpha:g}, not "
                                      f"{alpha:g}")
        else:
            obf, _ = obfuscator_for(model, dataset, alpha, None, workdir=workdir,
                                           device="cpu",
                                           log=lambda m: err_console.print(m, markup=False))
    with serving_client(server, obfuscator=obf, model=model, protocol=protocol,
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


def register(group: typer.Typer) -> None:
    group.command("export-models")(export_models)
    group.command("infer")(infer)
