"""TuSimple frames as training tensors: the frame at the model's input size and SCNN's targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from veil.errors import InvalidArgument
from veil.solutions.lane_detection._model import IN_H, IN_W, mirror_slots, target
from veil.solutions.lane_detection._tusimple import LaneLabel


def load_frame(path: Path) -> np.ndarray:
    """The frame at the model's input size, RGB uint8 (IN_H, IN_W, 3). JPEGs are decoded at a
    quarter of their size directly (DCT scaling), which is what makes CPU training fast."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("RGB", (IN_W, IN_H))
            return np.array(im.convert("RGB").resize((IN_W, IN_H), Image.BILINEAR))
    except FileNotFoundError:
        raise InvalidArgument(f"image {path} not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        raise InvalidArgument(f"{path}: not a readable image ({type(e).__name__})") from None


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(255)


class LaneFrames(Dataset):
    """(input (3, IN_H, IN_W), class map (IN_H/2, IN_W/2), existence (SLOTS,)) per labelled frame;
    with `augment`, random horizontal flips (slots mirrored) and lighting."""

    def __init__(self, root: Path, labels: list[LaneLabel], augment: bool = False,
                 seed: int = 0):
        self.root, self.labels, self.augment, self.seed = Path(root), labels, augment, seed
        # in shared memory: the loader's persistent worker processes see each new epoch
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch[0] = int(value)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        lab = self.labels[i]
        frame = load_frame(self.root / lab.raw_file)
        seg, exist = target(lab.lanes, lab.h_samples)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < 0.5:
                frame = frame[:, ::-1]
                seg, exist = mirror_slots(seg, exist)
            f = frame.astype(np.float32) * rng.uniform(0.6, 1.4) + rng.uniform(-25, 25)
            frame = np.clip(f, 0, 255).astype(np.uint8)
        return to_tensor(frame), torch.from_numpy(np.ascontiguousarray(seg)), \
            torch.from_numpy(exist)
