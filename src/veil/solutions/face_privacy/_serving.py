"""TR-4928 scenario 3 for the face detector: the tail as Triton models in a veil volume, and the
clients that run the head (and the obfuscation) here and the tail on the server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from veil.errors import InvalidArgument
from veil.progress import Log, quiet
from veil.solutions.face_privacy import _model

BASE, NOISY = "face_detection_base", "face_detection_noisy"  # the seed's model names
INPUT_NAME = "INPUT_0"
OUTPUT_NAMES = ["OUTPUT__0", "OUTPUT__1"]  # loc, conf: LibTorch's naming, as the seed reads them
ACTIVATION = (128, 32, 32)
MAX_BATCH = 1024  # activations per request: 512 KB each, so at most 512 MB in one request


@dataclass
class Exported:
    volume: str
    path: Path
    models: list[Path]


def export_models(volume: str, *, weights: Path | None = None, noisy_weights: Path | None = None,
                  max_batch_size: int = 8, replace: bool = False, create: bool = True,
                  home=None, log: Log | None = None, mechanism: str = "noise") -> Exported:
    """Write face_detection_base and face_detection_noisy (the detector's tail as TorchScript,
    input INPUT_0 FP32 [N, 128, 32, 32], outputs OUTPUT__0 loc and OUTPUT__1 conf) into the
    root of the veil volume `volume`, a Triton model repository. The noisy model is the tail
    of `noisy_weights` when given, else of the same weights (veil's shipped detector is trained
    to tolerate the noise); with a `mechanism` other than "noise", the noisy model is that
    mechanism's tail (its input is the mechanism's activation, e.g. [N, 8, 32, 32] for a
    bottleneck of 8 channels; `noisy_weights` is then a mechanism weights file). `log` is told
    once everything is checked and the export begins."""
    from veil import data
    from veil.data import validate_name
    from veil.errors import NotFound
    from veil.serve import write_model

    validate_name(volume, "volume name")
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or \
            not 1 <= max_batch_size <= MAX_BATCH:
        raise InvalidArgument(f"--max-batch-size must be a whole number in [1, {MAX_BATCH}], "
                              f"not {max_batch_size!r}")
    # load both models before touching the volume: a bad weights file leaves it as it was
    noisy_model = (_model.load_model("cpu", noisy_weights or weights) if mechanism == "noise"
                   else _model.load_model("cpu", noisy_weights, mechanism=mechanism))
    tails = {BASE: _model.load_model("cpu", weights).tail, NOISY: noisy_model.tail}
    with torch.no_grad():
        noisy_shape = tuple(noisy_model.forward_head(
            torch.zeros(1, 3, _model.INPUT, _model.INPUT)).shape[1:])
    examples = {BASE: torch.zeros(1, *ACTIVATION), NOISY: torch.zeros(1, *noisy_shape)}
    try:
        data.get_volume(volume, home=home)
    except NotFound:
        if not create:
            raise
        data.create_volume(volume, labels={"purpose": "triton model repository"}, home=home)
    root = data.volume_path(volume, home=home)
    if not replace:  # check both before writing either
        from veil.errors import AlreadyExists

        for name in (BASE, NOISY):
            if (root / name).exists():
                raise AlreadyExists(f"model {name!r} already exists in volume {volume!r} (use "
                                    "--replace; snapshot the volume first to keep it)")
    quiet(log)(f"Exporting {BASE} and {NOISY} to volume {volume!r} as TorchScript (takes "
               "~10 s) ...")
    out = [write_model(root, name, tail, examples[name], input_names=[INPUT_NAME],
                       output_names=OUTPUT_NAMES, max_batch_size=max_batch_size, replace=replace)
           for name, tail in tails.items()]
    return Exported(volume, root, out)


def _preprocess(image: np.ndarray) -> torch.Tensor:
    return _model.to_input(image)


def _postprocess(score_threshold: float):
    def post(outputs: Sequence[np.ndarray], images: Sequence[np.ndarray]):
        loc, conf = outputs
        return _model.postprocess(loc, conf, [im.shape[:2] for im in images],
                                     score_threshold=score_threshold)
    return post


def client(server: str, *, obfuscator=None, model=None, weights: Path | None = None,
           protocol: str = "http", binary: bool = True, timeout: float = 30.0,
           score_threshold: float = 0.05, model_name: str | None = None, device: str = "cpu",
           home=None):
    """A client for face detection on `server`: with `obfuscator`, a PrivateClient of
    face_detection_noisy (only the obfuscated activation is sent), else a clean Client of
    face_detection_base. `predict(images)` takes RGB uint8 images and returns per image
    (boxes (K, 4) in the image's pixels, scores (K,))."""
    from veil.serve import Client, PrivateClient

    split = model if model is not None else _model.load_model(device, weights)
    kw = dict(protocol=protocol, preprocess=_preprocess, postprocess=_postprocess(score_threshold),
              input_shape=(3, _model.INPUT, _model.INPUT), timeout=timeout, binary=binary,
              home=home)
    if obfuscator is not None:
        return PrivateClient(server, model_name or NOISY, split, obfuscator, **kw)
    return Client(server, model_name or BASE, split, **kw)
