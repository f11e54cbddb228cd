"""TR-4896's lane detection: TuSimple's format (read, and generated in it) and its official
metric. The data layer needs only numpy and Pillow."""

from veil.solutions.lane_detection._metrics import (
    ImageScore,
    Result,
    evaluate,
    evaluate_files,
    score_image,
)
from veil.solutions.lane_detection._synth import generate, render
from veil.solutions.lane_detection._tusimple import (
    H_SAMPLES,
    HEIGHT,
    NO_POINT,
    WIDTH,
    LabelError,
    LaneLabel,
    label_files,
    read_dataset,
    read_labels,
    write_labels,
)

__all__ = [
    "HEIGHT",
    "H_SAMPLES",
    "NO_POINT",
    "WIDTH",
    "ImageScore",
    "LabelError",
    "LaneLabel",
    "Result",
    "evaluate",
    "evaluate_files",
    "generate",
    "label_files",
    "read_dataset",
    "read_labels",
    "render",
    "score_image",
    "write_labels",
]
