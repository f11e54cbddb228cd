"""TuSimple's lane-detection format, read and written as the benchmark defines it.

    ROOT/clips/<date>/<clip>/1.jpg ... 20.jpg        1280 x 720 frames; the 20th is labelled
    ROOT/label_data_0313.json, ..., test_label.json   one JSON object per line:
        {"lanes": [[x, ...], ...], "h_samples": [160, ..., 710], "raw_file": "clips/.../20.jpg"}

Each lane gives one x per entry of `h_samples` (the image rows), -2 where the lane has no point.
Predictions use the same lines plus `"run_time"` (milliseconds). Every error names the file and
the line.

Values are bounded by what they describe: h_samples are rows of the frame (increasing), a
label's x is -2 or a column of it, read from the frame's header when the images are checked,
else up to JPEG's largest side (65,535). `raw_file` stays inside the data set: an absolute
path, a `..` in it, or a frame that is a link to a file outside the root is refused. A file
without a single label is an error too.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from veil.errors import InvalidArgument, NotFound

WIDTH, HEIGHT = 1280, 720
H_SAMPLES = list(range(160, 720, 10))  # 160 ... 710, the benchmark's rows
NO_POINT = -2
MAX_SIDE = 65535  # JPEG's largest image side: no row or column lies beyond it


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
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # a whole number of hundreds of digits
        return False


def check_raw_file(raw: str, where: str) -> str:
    """`raw` if it names a frame inside the data set: relative, without `..`, printable."""
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise LabelError(f"{where}: raw_file {raw!r} has control characters")
    if raw.startswith(("/", "\\")) or ".." in Path(raw.replace("\\", "/")).parts:
        raise LabelError(f"{where}: raw_file {raw!r} leads outside the data set (absolute "
                         "paths and '..' are refused)")
    return raw


def parse_line(text: str, where: str, *, prediction: bool = False) -> LaneLabel:
    """One label (or prediction) line, checked against the format and its bounds (see the
    module's docstring); the frame itself is checked by `read_labels`."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise LabelError(f"{where}: not a label: nested too deeply") from None
    except ValueError as e:  # e.g. a whole number of more than 4,300 digits
        raise LabelError(f"{where}: not JSON ({str(e).splitlines()[0][:80]})") from None
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
    check_raw_file(raw, where)
    if h is not None and (not isinstance(h, list) or not all(
            isinstance(y, int) and not isinstance(y, bool) for y in h) or not h):
        raise LabelError(f"{where}: h_samples must be a list of whole numbers")
    if h is not None:
        _check_rows(h, MAX_SIDE, where)
    if not isinstance(lanes, list) or not all(isinstance(lane, list) for lane in lanes):
        raise LabelError(f"{where}: lanes must be a list of lists")
    for i, lane in enumerate(lanes):
        for x in lane:
            if not _number(x):
                shown = f"x {_shown(x)}" if isinstance(x, int) and not isinstance(x, bool) \
                    else "a value"
                raise LabelError(f"{where}: lane {i} has {shown} that is not a number of "
                                 "pixels")
        if h is not None and len(lane) != len(h):
            raise LabelError(f"{where}: lane {i} has {len(lane)} points but h_samples has "
                             f"{len(h)}")
        lo = -MAX_SIDE if prediction else NO_POINT
        _check_columns(i, lane, lo, MAX_SIDE, where)
    run_time = d.pop("run_time", None)
    if prediction and not (_number(run_time) and run_time >= 0):
        raise LabelError(f"{where}: run_time must be a number of milliseconds >= 0")
    return LaneLabel(raw, list(h) if h is not None else [], [list(lane) for lane in lanes],
                     run_time, where, d)


def _check_rows(h: list[int], height: int, where: str) -> None:
    if not all(0 <= y < height for y in h):
        bad = next(y for y in h if not 0 <= y < height)
        raise LabelError(f"{where}: h_samples must be rows of the frame, 0 to {height - 1}, "
                         f"not {_shown(bad)}")
    if any(b <= a for a, b in itertools.pairwise(h)):
        raise LabelError(f"{where}: h_samples must increase")


def _check_columns(i: int, lane: list, lo: float, width: float, where: str) -> None:
    bad = next((x for x in lane if not lo <= x <= width), None)
    if bad is not None:
        what = "a column of the frame" if lo >= NO_POINT else "a column"
        raise LabelError(f"{where}: lane {i} has x {_shown(bad)}: not {NO_POINT} (no point) or "
                         f"{what} (up to {width})")


def _shown(v) -> str:
    text = repr(v)
    return f"{text[:12]}... ({len(text)} digits)" if isinstance(v, int) and len(text) > 24 \
        else text


def _frame(root: Path, lab: LaneLabel, where: str) -> None:
    """The frame of `lab` is a readable image inside `root`, and the label fits it."""
    from PIL import Image, UnidentifiedImageError

    path = root / lab.raw_file
    if not path.resolve().is_relative_to(root.resolve()):
        raise LabelError(f"{where}: raw_file {lab.raw_file} leads outside the data set (to "
                         f"{path.resolve()})")
    if not path.is_file():
        raise LabelError(f"{where}: image {lab.raw_file} not found under {root}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        raise LabelError(f"{where}: image {lab.raw_file} is not readable "
                         f"({type(e).__name__})") from None
    if lab.h_samples:
        _check_rows(lab.h_samples, height, where)
    for i, lane in enumerate(lab.lanes):
        _check_columns(i, lane, NO_POINT, width, where)


def read_labels(path: str | Path, *, prediction: bool = False, images: Path | None = None,
                strict: bool = True) -> tuple[list[LaneLabel], list[str]]:
    """The lines of one label (or, with `prediction`, prediction) file. With `images`, each
    raw_file must be a readable image inside that root, and each label must fit its frame.
    Returns (labels, errors); with `strict` the first error is raised instead. A file with
    no label at all is an error."""
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
                if images is not None:
                    _frame(Path(images), lab, where)
            except LabelError as e:
                if strict:
                    raise
                errors.append(str(e))
                continue
            seen[lab.raw_file] = n
            labels.append(lab)
    if not labels and not errors:
        e = LabelError(f"{path}: no {'predictions' if prediction else 'labels'} (the file "
                       "is empty)")
        if strict:
            raise e
        errors.append(str(e))
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
