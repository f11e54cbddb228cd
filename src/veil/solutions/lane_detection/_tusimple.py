"""TuSimple's lane-detection format, read and written as the benchmark defines it.

    ROOT/clips/<date>/<clip>/1.jpg ... 20.jpg        1280 x 720 frames; the 20th is labelled
    ROOT/label_data_0313.json, ..., test_label.json   one JSON object per line:
        {"lanes": [[x, ...], ...], "h_samples": [160, ..., 710], "raw_file": "clips/.../20.jpg"}

Each lane gives one x per entry of `h_samples` (the image rows), -2 where the lane has no point.
Predictions use the same lines plus `"run_time"` (milliseconds). Every error names the file and
the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from veil.errors import InvalidArgument, NotFound

WIDTH, HEIGHT = 1280, 720
H_SAMPLES = list(range(160, 720, 10))  # 160 ... 710, the benchmark's rows
NO_POINT = -2


@dataclass
class LaneLabel:
    raw_file: str
    h_samples: list[int]
    lanes: list[list[float]]
    run_time: float | None = None  # predictions only
    source: str = ""  # file:line it came from
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d: dict = {"lanes": self.lanes, "h_samples": self.h_samples, "raw_file": self.raw_file}
        if not self.h_samples:  # a prediction: the ground truth's rows are implied
            del d["h_samples"]
        if self.run_time is not None:
            d["run_time"] = self.run_time
        d.update(self.extra)
        return json.dumps(d, separators=(", ", ": "))


class LabelError(InvalidArgument):
    """A label or prediction line that does not follow the format."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_line(text: str, where: str, *, prediction: bool = False) -> LaneLabel:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(d, dict):
        raise LabelError(f"{where}: expected a JSON object, got {type(d).__name__}")
    need = ["raw_file", "lanes"] + ([] if prediction else ["h_samples"]) \
        + (["run_time"] if prediction else [])
    missing = [k for k in need if k not in d]
    if missing:
        raise LabelError(f"{where}: missing {', '.join(missing)}")
    raw, lanes = d.pop("raw_file"), d.pop("lanes")
    h = d.pop("h_samples", None)
    if not isinstance(raw, str) or not raw:
        raise LabelError(f"{where}: raw_file must be a path")
    if h is not None and (not isinstance(h, list) or not all(
            isinstance(y, int) and not isinstance(y, bool) for y in h) or not h):
        raise LabelError(f"{where}: h_samples must be a list of whole numbers")
    if not isinstance(lanes, list) or not all(isinstance(lane, list) for lane in lanes):
        raise LabelError(f"{where}: lanes must be a list of lists")
    for i, lane in enumerate(lanes):
        if not all(_number(x) for x in lane):
            raise LabelError(f"{where}: lane {i} has a value that is not a number")
        if h is not None and len(lane) != len(h):
            raise LabelError(f"{where}: lane {i} has {len(lane)} points but h_samples has "
                             f"{len(h)}")
    run_time = d.pop("run_time", None)
    if prediction and not _number(run_time):
        raise LabelError(f"{where}: run_time must be a number (milliseconds)")
    return LaneLabel(raw, list(h) if h is not None else [], [list(lane) for lane in lanes],
                     run_time, where, d)


def read_labels(path: str | Path, *, prediction: bool = False, images: Path | None = None,
                strict: bool = True) -> tuple[list[LaneLabel], list[str]]:
    """The lines of one label (or, with `prediction`, prediction) file. With `images`, each
    raw_file must exist under that root. Returns (labels, errors); with `strict` the first error
    is raised instead."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no label file {path}")
    labels, errors, seen = [], [], {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            where = f"{path}:{n}"
            try:
                lab = parse_line(text, where, prediction=prediction)
                if lab.raw_file in seen:
                    raise LabelError(f"{where}: {lab.raw_file} is labelled twice (first at line "
                                     f"{seen[lab.raw_file]})")
                if images is not None and not (Path(images) / lab.raw_file).is_file():
                    raise LabelError(f"{where}: image {lab.raw_file} not found under {images}")
            except LabelError as e:
                if strict:
                    raise
                errors.append(str(e))
                continue
            seen[lab.raw_file] = n
            labels.append(lab)
    return labels, errors


def label_files(root: str | Path) -> list[Path]:
    """The label files of a TuSimple folder (label_data_*.json for training, test_label.json
    for testing), or the file itself."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise NotFound(f"no TuSimple data at {root}")
    files = sorted(root.glob("label_data_*.json")) + sorted(root.glob("test_label*.json"))
    if not files:
        raise NotFound(f"{root} has no label_data_*.json or test_label.json")
    return files


def read_dataset(root: str | Path, *, check_images: bool = True,
                 strict: bool = True) -> tuple[list[LaneLabel], list[str]]:
    """Every labelled frame under `root`, with images checked to exist."""
    root = Path(root)
    labels, errors = [], []
    for f in label_files(root):
        base = f.parent if root.is_file() else root
        lab, err = read_labels(f, images=base if check_images else None, strict=strict)
        labels += lab
        errors += err
    return labels, errors


def write_labels(path: str | Path, labels: Iterable[LaneLabel]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lab.to_json() + "\n" for lab in labels))
    tmp.replace(path)
    return path


def lanes_to_points(lanes: Sequence[Sequence[float]], h_samples: Sequence[int]
                    ) -> list[list[tuple[float, int]]]:
    """Each lane's (x, y) points, without the -2 placeholders."""
    return [[(x, y) for x, y in zip(lane, h_samples, strict=True) if x >= 0] for lane in lanes]
