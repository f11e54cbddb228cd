"""The face detector as veil runs it: shipped weights, the 1024 x 1024 input, and detection per
image with an optional transform (the obfuscator) applied to the activation at the split."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from veil.errors import InvalidArgument, NotFound
from veil.privacy import SplitModel, split_at
from veil.solutions.face_privacy import _faceboxes

INPUT = 1024  # TR-4928 feeds FaceBoxes 1024 x 1024 images: the activation is 128 x 32 x 32
WEIGHTS = Path(__file__).parent / "weights" / "faceboxes.pt"
Transform = Callable[[torch.Tensor], torch.Tensor]


MECHANISM_WEIGHTS = {m: Path(__file__).parent / "weights" / f"faceboxes_{m}.pt"
                     for m in ("bottleneck", "adversarial", "deep")}


def load_model(device: str | torch.device = "cpu", weights: str | Path | None = None, *,
               mechanism: str = "noise") -> SplitModel:
    """FaceBoxes with trained weights, split after the rapidly digested layers, in eval mode.
    The weights are loaded safely (no pickled code runs) and checked against the model (names,
    shapes, kinds, finite values): a damaged file is one line naming it. With a `mechanism`
    other than "noise", that mechanism's shipped SplitModel (or `weights`, a mechanism weights
    file; veil.privacy._mechanisms)."""
    from veil.train import load_weights

    if mechanism != "noise":
        from veil.privacy.mechanisms import check_mechanism
        from veil.solutions.face_privacy._mechanisms import load_mechanism

        check_mechanism(mechanism, MECHANISM_WEIGHTS)
        return load_mechanism(mechanism, device, path=weights)

    path = Path(weights) if weights is not None else WEIGHTS
    if not path.is_file():
        raise NotFound(f"no FaceBoxes weights at {path} (scripts/train_faceboxes.py writes them)")
    net = load_weights(_faceboxes.faceboxes(), path, "FaceBoxes weights")
    return split_at(net, "head", name="faceboxes").to(device).eval()


def to_input(image: np.ndarray, size: int = INPUT) -> torch.Tensor:
    """An RGB uint8 image (H, W, 3) as the model's input: (3, size, size) in [0, 1], stretched to
    the square as TR-4928's pipeline does (boxes are mapped back to the original size)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidArgument(f"expected an RGB image (H, W, 3), got shape {tuple(image.shape)}")
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float().div_(255)
    small = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=small)[0].clamp_(0, 1)


_PRIORS: dict[tuple[int, int, str], torch.Tensor] = {}


def priors(size: int, device: torch.device) -> torch.Tensor:
    key = (size, size, str(device))
    if key not in _PRIORS:
        _PRIORS[key] = _faceboxes.priors(size, size).to(device)
    return _PRIORS[key]


@torch.no_grad()
def detect(model: SplitModel, images: Sequence[np.ndarray], transform: Transform | None = None,
           *, size: int = INPUT, score_threshold: float = 0.05,
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces in each image: (boxes (K, 4) as x1, y1, x2, y2 in the image's pixels, scores (K,)),
    best first. `transform` is applied to the activation between head and tail."""
    device = next(model.parameters()).device
    x = torch.stack([to_input(im, size) for im in images]).to(device)
    a = model.forward_head(x)
    if transform is not None:
        a = transform(a)
    loc, conf = model.forward_tail(a)
    return postprocess(loc, conf, [im.shape[:2] for im in images], size=size,
                       score_threshold=score_threshold)


def postprocess(loc, conf, sizes: Sequence[tuple[int, int]], *, size: int = INPUT,
                score_threshold: float = 0.05) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tail's outputs (loc (N, P, 4), conf (N, P, 2); tensors or arrays) as detections per
    image: (boxes (K, 4) x1, y1, x2, y2 in the pixels of an image of (height, width) `sizes[i]`,
    scores (K,)), best first."""
    loc, conf = (torch.as_tensor(np.array(t) if isinstance(t, np.ndarray) and
                                 not t.flags.writeable else t) for t in (loc, conf))
    dets = _faceboxes.detect(loc, conf, priors(size, loc.device), size, size,
                             score_threshold=score_threshold)
    out = []
    for (h, w), (boxes, scores) in zip(sizes, dets, strict=True):
        scale = torch.tensor([w / size, h / size, w / size, h / size], device=boxes.device)
        out.append(((boxes * scale).cpu().numpy(), scores.cpu().numpy()))
    return out


def batched(items: Sequence, batch_size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), batch_size):
        yield items[i:i + batch_size]
