"""TR-4928's confidential face detection: FDDB data (real layout, or generated in it), ..."""

from veil.solutions.face_privacy._fddb import (
    Ellipse,
    FddbDataset,
    FddbImage,
    Fold,
    load_image,
    read_fddb,
    read_fold,
)
from veil.solutions.face_privacy._synth import generate, render

__all__ = ["Ellipse", "FddbDataset", "FddbImage", "Fold", "generate", "load_image", "read_fddb",
           "read_fold", "render"]
