"""FDDB, the Face Detection Data Set and Benchmark, read from its real layout.

    ROOT/FDDB-folds/FDDB-fold-01.txt              image names, one per line (no extension)
    ROOT/FDDB-folds/FDDB-fold-01-ellipseList.txt  per image: its name, the number of faces, then
                                                  one line per face:
                                                  major_radius minor_radius angle cx cy 1
    ROOT/originalPics/<name>.jpg                  the images

Folds are numbered 01 to 10. The angle is in radians, from the image's x axis to the major axis
(upright faces are close to pi/2). A malformed fold is reported with its file and line, and does
not stop the other folds from loading (`read_fddb(..., strict=False)`).

Image names stay inside the data set: an absolute name, a `..` in it, or an image that is a link
to a file outside ROOT is refused. Each image's header is read (not its pixels) to bound its
ellipses by the picture they annotate: radii at most the image's diagonal, and the ellipse
overlapping the image; without the images (`images=False`) only the format's bounds apply
(JPEG's largest side, 65,535 pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from veil.errors import InvalidArgument, NotFound

FOLDS = tuple(range(1, 11))
MAX_SIDE = 65535  # JPEG's largest image side, in pixels: no annotation lies further out


@dataclass(frozen=True)
class Ellipse:
    """One annotated face: radii of the major and minor axes, angle (radians), centre."""

    major: float
    minor: float
    angle: float
    cx: float
    cy: float

    def box(self) -> tuple[float, float, float, float]:
        """The ellipse's bounding rectangle (x1, y1, x2, y2), the box AP is scored against."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        hw = math.hypot(self.major * c, self.minor * s)
        hh = math.hypot(self.major * s, self.minor * c)
        return (self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh)

    def line(self) -> str:
        """The annotation line in FDDB's format."""
        return f"{self.major:.6f} {self.minor:.6f} {self.angle:.6f} {self.cx:.6f} {self.cy:.6f}  1"


@dataclass
class FddbImage:
    name: str  # as in the fold files, e.g. 2002/08/11/big/img_591
    path: Path
    ellipses: list[Ellipse]


@dataclass
class Fold:
    index: int
    images: list[FddbImage]

    @property
    def name(self) -> str:
        """The name the seed's log prints: FDDB-fold-1 ... FDDB-fold-10."""
        return f"FDDB-fold-{self.index}"

    @property
    def faces(self) -> int:
        return sum(len(im.ellipses) for im in self.images)


@dataclass
class FddbDataset:
    root: Path
    folds: list[Fold]
    errors: dict[int, str] = field(default_factory=dict)  # fold index -> one-line reason

    @property
    def images(self) -> list[FddbImage]:
        return [im for f in self.folds for im in f.images]


def fold_files(root: Path, index: int) -> tuple[Path, Path]:
    d = root / "FDDB-folds"
    return d / f"FDDB-fold-{index:02d}.txt", d / f"FDDB-fold-{index:02d}-ellipseList.txt"


def _check_layout(root: Path) -> None:
    if not root.exists():
        raise NotFound(f"no data set at {root}")
    if not root.is_dir():
        raise InvalidArgument(f"{root} is not a directory")
    missing = [p for p in ("FDDB-folds", "originalPics") if not (root / p).is_dir()]
    if missing:
        raise InvalidArgument(f"{root} is not an FDDB data set: no {' or '.join(missing)}/ "
                              "(expected FDDB-folds/FDDB-fold-01-ellipseList.txt ... and "
                              "originalPics/)")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidArgument(f"missing fold file {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"cannot read {path}: {e}") from None


def check_name(name: str, where: str) -> str:
    """`name` if it names an image inside the data set: relative, without `..`, printable."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(f"{where}: image name {name!r} has control characters")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise InvalidArgument(f"{where}: image name {name!r} leads outside the data set "
                              "(absolute names and '..' are refused)")
    return name


def _image_size(within: Path, image: FddbImage, where: str) -> tuple[int, int]:
    """(width, height) from the image's header; the file must be inside `within`."""
    from PIL import Image, UnidentifiedImageError

    real, inside = image.path.resolve(), within.resolve()
    if not real.is_relative_to(inside):
        raise InvalidArgument(f"{where}: image {image.name!r} leads outside the data set "
                              f"(to {real})")
    try:
        with Image.open(image.path) as im:
            return im.size
    except FileNotFoundError:
        raise InvalidArgument(f"{where}: missing image {image.path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        raise InvalidArgument(f"{where}: unreadable image {image.path}: {e}") from None


def _check_fits(e: Ellipse, size: tuple[int, int], text: str, where: str) -> None:
    """An ellipse annotates its image: radii at most the image's diagonal, and its bounding
    rectangle overlapping the image."""
    w, h = size
    diag = math.hypot(w, h)
    x1, y1, x2, y2 = e.box()
    if e.major > diag or e.minor > diag or x2 < 0 or y2 < 0 or x1 > w or y1 > h:
        raise InvalidArgument(f"{where}: the ellipse does not fit its {w} x {h} image (radii "
                              f"at most {diag:.0f}, and overlapping the image): {text!r}")


def _parse_ellipses(path: Path, root: Path, images: bool = True,
                    within: Path | None = None) -> list[FddbImage]:
    lines = _read_lines(path)
    out: list[FddbImage] = []
    i = 0

    def where(k: int) -> str:
        return f"{path}:{k + 1}"

    while i < len(lines):
        name = lines[i].strip()
        if not name:  # blank lines between records are tolerated
            i += 1
            continue
        check_name(name, where(i))
        if i + 1 >= len(lines):
            raise InvalidArgument(f"{where(i)}: image {name!r} has no face-count line after it")
        count_text = lines[i + 1].strip()
        try:
            count = int(count_text)
        except ValueError:
            raise InvalidArgument(f"{where(i + 1)}: expected the number of faces in {name!r}, "
                                  f"got {count_text!r}") from None
        if count < 0:
            raise InvalidArgument(f"{where(i + 1)}: negative face count {count}")
        ellipses = []
        for k in range(i + 2, i + 2 + count):
            if k >= len(lines):
                raise InvalidArgument(f"{where(k - 1)}: {name!r} announces {count} faces, the "
                                      f"file ends after {k - i - 2}")
            parts = lines[k].split()
            try:
                values = [float(v) for v in parts]
            except ValueError:
                values = []
            if len(values) != 6 or not all(math.isfinite(v) for v in values):
                raise InvalidArgument(f"{where(k)}: expected 'major_radius minor_radius angle "
                                      f"center_x center_y 1', got {lines[k].strip()!r}")
            major, minor, angle, cx, cy, _ = values
            if major <= 0 or minor <= 0:
                raise InvalidArgument(f"{where(k)}: radii must be positive, got "
                                      f"{lines[k].strip()!r}")
            if max(major, minor) > MAX_SIDE or not (-MAX_SIDE <= cx <= 2 * MAX_SIDE and
                                                    -MAX_SIDE <= cy <= 2 * MAX_SIDE) \
                    or abs(angle) > 2 * math.pi:
                raise InvalidArgument(f"{where(k)}: not an ellipse of an image (radii up to "
                                      f"{MAX_SIDE} pixels, centres within {MAX_SIDE} pixels "
                                      f"of the image, angles within 2 pi): "
                                      f"{lines[k].strip()!r}")
            ellipses.append(Ellipse(major, minor, angle, cx, cy))
        image = FddbImage(name, root / "originalPics" / f"{name}.jpg", ellipses)
        if images:
            size = _image_size(within or root, image, where(i))
            for k, e in enumerate(ellipses, start=i + 2):
                _check_fits(e, size, lines[k].strip(), where(k))
        out.append(image)
        i += 2 + count
    return out


def read_fold(root: str | Path, index: int, *, images: bool = True,
              within: str | Path | None = None) -> Fold:
    """One fold, checked: the image list and the ellipse list must name the same images (and,
    with `images`, each image must be there, inside `within` (default: ROOT), and fit its
    ellipses)."""
    root = Path(root)
    list_path, ellipse_path = fold_files(root, index)
    names = [check_name(n.strip(), f"{list_path}:{k}")
             for k, n in enumerate(_read_lines(list_path), start=1) if n.strip()]
    parsed = _parse_ellipses(ellipse_path, root, images, Path(within) if within else None)
    got = [im.name for im in parsed]
    if got != names:
        extra = sorted(set(got) - set(names))[:1] or sorted(set(names) - set(got))[:1]
        detail = f" (first difference: {extra[0]!r})" if extra else " (different order)"
        raise InvalidArgument(f"{ellipse_path} and {list_path.name} list different images"
                              f"{detail}")
    return Fold(index, parsed)


def read_fddb(root: str | Path, folds: list[int] | tuple[int, ...] = FOLDS, *,
              strict: bool = True, images: bool = True, empty_ok: bool = False,
              within: str | Path | None = None) -> FddbDataset:
    """Read the folds of an FDDB data set.

    With `strict=False` a fold that cannot be read is left out and its one-line reason kept in
    `errors`; the others load (and unless `empty_ok`, at least one must). With `strict=True`
    the first such reason is raised. With `images`, every image's header is read too (see the
    module's docstring), and each image must lie inside `within` (default: ROOT; the
    enclosing data set for its fit/ and attack/ sets)."""
    root = Path(root)
    _check_layout(root)
    out = FddbDataset(root, [])
    for index in folds:
        if index not in FOLDS:
            raise InvalidArgument(f"FDDB folds are numbered 1 to 10, not {index!r}")
        try:
            out.folds.append(read_fold(root, index, images=images, within=within))
        except InvalidArgument as e:
            if strict:
                raise
            out.errors[index] = str(e)
    if not out.folds and out.errors and not empty_ok:
        raise InvalidArgument(f"no fold of {root} could be read; fold {min(out.errors)}: "
                              f"{out.errors[min(out.errors)]}")
    return out


def load_image(image: FddbImage):
    """The image as an RGB uint8 array (H, W, 3); a one-line error if it cannot be read."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image.path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InvalidArgument(f"missing image {image.path} (listed as {image.name!r})") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        raise InvalidArgument(f"unreadable image {image.path}: {e}") from None


def write_fold(root: Path, index: int, images: list[FddbImage]) -> None:
    """Write one fold's image list and ellipse list in FDDB's format."""
    list_path, ellipse_path = fold_files(root, index)
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text("".join(f"{im.name}\n" for im in images))
    lines = []
    for im in images:
        lines += [im.name, str(len(im.ellipses))] + [e.line() for e in im.ellipses]
    ellipse_path.write_text("\n".join(lines) + "\n")
