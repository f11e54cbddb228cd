"""The face detector's mechanisms (issue 17, part 2): what runs at the split besides the noise.

Each shipped file (weights/faceboxes_<mechanism>.pt, written by scripts/train_face_mechanisms.py
through veil.privacy._mechanisms.save) holds its configuration and the whole SplitModel's state:

- "bottleneck": FaceBoxes split after "head" (128 x 32 x 32), a learned 1x1 convolution down to
  a few channels ending the trusted side, one back up starting the tail; squeeze, expand and
  tail trained under Gaussian noise, the RDCL head frozen.
- "deep": FaceBoxes split later, after its second Inception block (128 x 32 x 32); the rest
  (third Inception, the pyramid and the predictors) fine-tuned under noise, all before frozen.
  FaceBoxes' MSCL is one module, which `split_at` cannot cut inside, so this mechanism's network
  is `faceboxes_layered()`: the same layers and computation, laid out as a Sequential (head,
  inception, pyramid).
- "adversarial": the deep split with the trusted side's two Inception blocks trained too,
  against an identity adversary (the two-identity distance between same-scene identity swaps)
  while keeping the detection loss under noise (scripts/train_face_mechanisms.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from veil.errors import InvalidArgument
from veil.privacy import SplitModel
from veil.privacy import mechanisms as mech
from veil.solutions.face_privacy import _faceboxes

WEIGHTS_DIR = Path(__file__).parent / "weights"
NAME = "faceboxes"


class Pyramid(nn.Module):
    """FaceBoxes' MSCL after its Inception blocks: conv3, conv4 and the box and score
    predictors on the three maps (the Inception output is the first)."""

    def __init__(self, mscl: _faceboxes.MSCL | None = None):
        super().__init__()
        mscl = mscl if mscl is not None else _faceboxes.MSCL()
        self.conv3, self.conv4, self.loc, self.conf = mscl.conv3, mscl.conv4, mscl.loc, mscl.conf

    def forward(self, x):
        return _faceboxes.predict(self, x)


def layered(head: nn.Module, mscl: _faceboxes.MSCL) -> nn.Sequential:
    """FaceBoxes from its two halves as a Sequential that splits inside the MSCL (the modules
    are shared, not copied): head, inception (three blocks), pyramid."""
    return nn.Sequential(OrderedDict(head=head, inception=mscl.inception,
                                     pyramid=Pyramid(mscl)))


def faceboxes_layered() -> nn.Sequential:
    """An untrained FaceBoxes laid out as `layered` (the "deep" mechanism's network)."""
    return layered(_faceboxes.rdcl(), _faceboxes.MSCL())


NETWORKS: dict[str, Callable[[], nn.Sequential]] = {
    "bottleneck": _faceboxes.faceboxes,
    "adversarial": faceboxes_layered,
    "deep": faceboxes_layered,
}


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"faceboxes_{name}.pt"


def shipped() -> dict[str, Path]:
    """The mechanisms whose weights file is present."""
    return {n: weights_path(n) for n in NETWORKS if weights_path(n).is_file()}


def load_mechanism(name: str, device: str | torch.device = "cpu", *,
                   path: str | Path | None = None) -> SplitModel:
    """A shipped mechanism's SplitModel (eval mode); `path` reads another file of that
    mechanism. An unknown or unshipped mechanism, or a damaged file, is one line."""
    available = shipped() if path is None else {n: Path(path) for n in NETWORKS}
    if name not in NETWORKS:
        mech.check_mechanism(name, NETWORKS)
    if name not in available:
        have = ", ".join(available) or "none"
        raise InvalidArgument(f"the face detector ships no {name!r} mechanism (shipped: {have}; "
                              f"scripts/train_face_mechanisms.py writes them)")
    return mech.load(NETWORKS[name], available[name], name=NAME, mechanism=name, device=device)
