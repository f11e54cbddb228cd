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
    mechanism: str = typer.Option("noise", "--mechanism", help="face_detection_noisy is this "
                                  "mechanism's tail: noise (TR-4928's), or a shipped one "
                                  "(veil privacy tasks)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: the volume, its path and "
                                 "the models written."),
) -> None:
    """Write the detector's tail as Triton models face_detection_base and face_detection_noisy
    (TorchScript, input INPUT_0 FP32 [N, 128, 32, 32]) into a volume (TR-4928 scenario 3,
    steps 2 and 3)."""
    require_extra("torch", "torch", "veil solutions face-privacy")
    from veil.solutions.face_privacy import export_models as export

    res = export(volume, weights=weights, noisy_weights=noisy_weights,
                 max_batch_size=max_batch_size, replace=replace, mechanism=mechanism,
                 log=lambda m: err_console.print(m, markup=False))
    if as_json:
        return print_json({"volume": res.volume, "path": str(res.path),
                           "models": [p.name for p in res.models],
                           "max_batch_size": max_batch_size})
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
    mechanism: str = typer.Option("noise", "--mechanism", help="With --noisy: the mechanism "
                                  "face_detection_noisy was exported for (export-models "
                                  "--mechanism)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Detect faces with the tail on a Triton server (TR-4928 scenario 3, steps 5 and 6): the
    head runs here, and with --noisy only the obfuscated activation leaves this machine."""
    if noisy and alpha is None and obfuscator is None:
        raise InvalidArgument("--noisy needs --alpha (with --dataset to fit the noise) or "
                              "--obfuscator")
    if not noisy and (alpha is not None or obfuscator is not None or mechanism != "noise"):
        raise InvalidArgument("--alpha, --obfuscator and --mechanism apply only with --noisy")
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
    model = load_model("cpu", mechanism=mechanism)
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
                                    device="cpu", mechanism=mechanism,
                                    log=lambda m: err_console.print(m, markup=False))
    with serving_client(server, obfuscator=obf, model=model, protocol=protocol,
                         binary=not json_tensors, timeout=timeout,
                         score_threshold=threshold) as c:
        dets = c.predict(pics)
        statistics = c.statistics() if stats else None
        model_name = c.model
        timing = {k: round(1e3 * v, 3) for k, v in c.last_timing.items()}
        sent = dict(c.last_sent)
    rows = []
    for p, (boxes, scores) in zip(images, dets, strict=True):
        rows.append({"image": str(p), "faces": [
            {"box": [round(float(v), 2) for v in b], "score": round(float(s), 4)}
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
    # the seed's check on the statistics: one entry, for the one version served
    stats_ok = statistics is None or len(statistics.get("model_stats", [])) == 1
    if as_json:
        print_json({"model": model_name, "private": noisy, "results": rows,
                    "timing_ms": timing, "sent": sent, "statistics": statistics})
        if not stats_ok:
            raise typer.Exit(1)
        return
    for r in rows:
        console.print(_faces_table(r["image"], r["faces"], model_name, threshold), markup=False)
    if out is not None:
        console.print(f"Images with their faces boxed: {out}/<name>.faces.png", markup=False)
    if statistics is not None:
        console.print(_timing_table(timing, sent, len(rows)), markup=False)
        for t in _stats_tables(statistics):
            console.print(t, markup=False)
        if not stats_ok:
            print("FAILED: Inference Statistics")
            raise typer.Exit(1)


def _faces_table(image: str, faces: list[dict], model: str, threshold: float):
    """One image's faces: a heading, then a row per face with its box in the image's pixels."""
    from rich.console import Group
    from rich.table import Table

    n = len(faces)
    head = (f"{image}: {n} face{'' if n == 1 else 's'} from {model} (score >= "
            f"{threshold:g})")
    if not faces:
        return head
    t = Table("FACE", "LEFT", "TOP", "RIGHT", "BOTTOM", "WIDTH", "HEIGHT", "SCORE", box=None,
              pad_edge=False)
    for i, f in enumerate(faces, 1):
        x1, y1, x2, y2 = f["box"]
        t.add_row(str(i), f"{x1:.1f}", f"{y1:.1f}", f"{x2:.1f}", f"{y2:.1f}",
                  f"{x2 - x1:.1f}", f"{y2 - y1:.1f}", f"{f['score']:.3f}")
    for c in t.columns[1:]:
        c.justify = "right"
    return Group(head, t)


_STAGES = {"preprocess": "preprocess (resize to 1024 x 1024)", "head": "head (here)",
           "obfuscation": "obfuscation (here)", "network": "server round trip (tail)",
           "postprocess": "postprocess (decode, NMS)"}


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:,.1f} MiB"


def _timing_table(timing: dict[str, float], sent: dict, images: int):
    """Where this call's time went, on this machine's clock, and what it sent."""
    from rich.console import Group
    from rich.table import Table

    t = Table("CLIENT STAGE", "MS", box=None, pad_edge=False)
    t.columns[1].justify = "right"
    for k, label in _STAGES.items():
        if k in timing:
            t.add_row(label, f"{timing[k]:.1f}")
    t.add_row("total", f"{sum(timing.values()):.1f}")
    rows: list = [f"This call ({images} image{'' if images == 1 else 's'}):", t]
    if sent:
        shape = "[" + ", ".join(map(str, sent["shape"])) + "]"
        how = "as JSON numbers (larger on the wire)" if sent["encoding"] == "json" else \
            "as binary"
        reqs = sent["requests"]
        rows.append(f"Sent to the server: {_kib(sent['bytes'])} of tensor data, "
                    f"{sent['input']} {sent['datatype']} {shape} {how} over "
                    f"{sent['protocol']}, in {reqs} request{'' if reqs == 1 else 's'}; the "
                    "images stayed here.")
    return Group(*rows)


_SERVER_STAGES = ("success", "fail", "queue", "compute_input", "compute_infer",
                  "compute_output", "cache_hit", "cache_miss")


def _stats_tables(statistics: dict) -> list:
    """The server's statistics per model version (Triton's cumulative counts since it
    started): a row per stage, and one per batch size."""
    from rich.console import Group
    from rich.table import Table

    def count_ms(d: dict | None) -> tuple[int, float]:
        d = d or {}  # gRPC's JSON leaves out zero counts, and writes 64-bit numbers as text
        return int(d.get("count", 0) or 0), int(d.get("ns", 0) or 0) / 1e6

    out = []
    for m in statistics.get("model_stats", []):
        inf, exe = int(m.get("inference_count", 0) or 0), int(m.get("execution_count", 0) or 0)
        head = (f"Server statistics for {m.get('name', '?')} version {m.get('version', '?')} "
                f"(since the server started): {inf} inference{'' if inf == 1 else 's'} in "
                f"{exe} execution{'' if exe == 1 else 's'}")
        t = Table("SERVER STAGE", "REQUESTS", "TOTAL MS", "MEAN MS", box=None, pad_edge=False)
        for k in _SERVER_STAGES:
            n, ms = count_ms(m.get("inference_stats", {}).get(k))
            if k.startswith("cache") and not n:
                continue  # no response cache configured
            t.add_row(k.replace("_", " "), str(n), f"{ms:.1f}", f"{ms / n:.1f}" if n else "-")
        b = Table("BATCH SIZE", "EXECUTIONS", "COMPUTE MEAN MS", box=None, pad_edge=False)
        for row in m.get("batch_stats", []):
            n, ms = count_ms(row.get("compute_infer"))
            b.add_row(str(row.get("batch_size", "?")), str(n), f"{ms / n:.1f}" if n else "-")
        for table in (t, b):
            for c in table.columns[1:]:
                c.justify = "right"
        out.append(Group(head, t, *([b] if b.row_count else [])))
    if not out:
        out.append("Server statistics: none for this model")
    return out


def register(group: typer.Typer) -> None:
    group.command("export-models")(export_models)
    group.command("infer")(infer)
