"""A synthetic lane data set written in TuSimple's exact layout and format (see _tusimple).

Each frame is a 1280 x 720 road seen by a forward camera through a pinhole model: a lane model
in road coordinates (lateral offset, heading and curvature, x(z) = x0 + h z + c z^2 / 2) is
drawn in perspective, and the same model gives the labels, so the labels are exact. Frames have
2-5 lane markings (the ego lane's two and up to two more on each side, as TuSimple labels them),
straight or curved, solid or dashed, white or yellow; tree shadows on the road; vehicles that
occlude markings (the labels run on behind them, as TuSimple's do); and day, dusk, night and
rain variants. Only the labelled 20th frame of each clip is written. A given seed always writes
the same files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from veil._newdir import new_directory
from veil.errors import InvalidArgument
from veil.progress import Progress, or_silent
from veil.solutions.lane_detection._tusimple import (
    H_SAMPLES,
    HEIGHT,
    NO_POINT,
    WIDTH,
    LaneLabel,
    write_labels,
)

CAMERA_HEIGHT = 1.5  # m
Z_NEAR, Z_FAR = 2.0, 110.0
MARKING = 0.13  # marking width, m
DASH, GAP = 3.0, 9.0  # m
VARIANTS = ("day", "dusk", "night", "rain")
TRAIN_FILE, TEST_FILE = "label_data_veil.json", "test_label.json"


class Scene:
    """Camera and lanes of one frame."""

    def __init__(self, rng: np.random.Generator):
        self.f = float(rng.uniform(900, 1100))
        self.horizon = float(rng.uniform(240, 300))
        self.cx = WIDTH / 2 + float(rng.uniform(-40, 40))
        self.heading = float(rng.uniform(-0.03, 0.03))
        self.curv = float(rng.choice([0.0, 1.0], p=[0.45, 0.55]) * rng.uniform(-3e-3, 3e-3))
        width = float(rng.uniform(3.3, 3.9))
        # markings as TuSimple labels them: the ego lane's two, and up to two more on a side
        # (2-5 in all)
        while True:
            left, right = (int(rng.choice([1, 2, 3], p=[0.3, 0.55, 0.15])) for _ in range(2))
            if left + right <= 5:
                break
        n, ego = left + right, left - 1  # the car drives between markings ego and ego + 1
        shift = float(rng.uniform(0.25, 0.75)) * width
        self.lanes = [(i - ego) * width - shift for i in range(n)]
        self.dashed = [bool(rng.random() < 0.5) if 0 < i < n - 1 else bool(rng.random() < 0.15)
                       for i in range(n)]
        self.yellow = [i == 0 and rng.random() < 0.3 for i in range(n)]
        self.phase = float(rng.uniform(0, DASH + GAP))
        self.width = width

    def x_road(self, x0: float, z: np.ndarray) -> np.ndarray:
        return x0 + self.heading * z + 0.5 * self.curv * z * z

    def project(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.cx + self.f * x / z, self.horizon + self.f * CAMERA_HEIGHT / z

    def z_at_row(self, y: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(y > self.horizon, self.f * CAMERA_HEIGHT / (y - self.horizon), np.inf)

    def label(self, x0: float) -> list[int]:
        """x per h_sample of the marking's centre line, -2 off the road or off the image."""
        ys = np.asarray(H_SAMPLES, dtype=float)
        z = self.z_at_row(ys)
        ok = (z >= Z_NEAR) & (z <= Z_FAR)
        u, _ = self.project(self.x_road(x0, np.where(ok, z, 1.0)), np.where(ok, z, 1.0))
        ok &= (u >= 0) & (u < WIDTH)
        return [int(np.rint(v)) if k else NO_POINT for v, k in zip(u, ok, strict=True)]


def _sky_and_ground(rng, scene: Scene, variant: str):
    from PIL import Image

    y = np.arange(HEIGHT, dtype=float)[:, None]
    sky_top, sky_low = {"day": ((90, 140, 210), (190, 215, 235)),
                        "dusk": ((60, 50, 110), (240, 150, 90)),
                        "night": ((5, 5, 15), (25, 25, 45)),
                        "rain": ((110, 115, 120), (160, 165, 170))}[variant]
    t = np.clip(y / max(scene.horizon, 1), 0, 1)[..., None]
    sky = (np.array(sky_top) * (1 - t) + np.array(sky_low) * t)
    ground = np.array(rng.choice([(70, 110, 50), (120, 110, 80), (95, 95, 90)]), float)
    img = np.where((y < scene.horizon)[..., None], sky, ground)
    img = np.broadcast_to(img, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    return Image.fromarray(img.copy())


def _road_polygon(scene: Scene, left: float, right: float, z0: float, z1: float):
    zs = np.geomspace(z0, z1, 40)
    ul, vl = scene.project(scene.x_road(left, zs), zs)
    ur, vr = scene.project(scene.x_road(right, zs), zs)
    return list(zip(ul, vl, strict=True)) + list(zip(ur[::-1], vr[::-1], strict=True))


def _strip(scene: Scene, x0: float, z0: float, z1: float, half: float, n: int = 12):
    zs = np.geomspace(z0, z1, n)
    ul, vl = scene.project(scene.x_road(x0 - half, zs), zs)
    ur, vr = scene.project(scene.x_road(x0 + half, zs), zs)
    return list(zip(ul, vl, strict=True)) + list(zip(ur[::-1], vr[::-1], strict=True))


def render(rng: np.random.Generator, variant: str | None = None):
    """One frame: (RGB uint8 array (720, 1280, 3), lanes as TuSimple x lists, variant)."""
    from PIL import Image, ImageDraw, ImageFilter

    scene = Scene(rng)
    variant = variant or str(rng.choice(VARIANTS, p=[0.45, 0.15, 0.2, 0.2]))
    img = _sky_and_ground(rng, scene, variant)
    d = ImageDraw.Draw(img, "RGBA")
    z_far = Z_FAR * 1.5
    road = float(rng.integers(70, 120))
    margin = float(rng.uniform(0.8, 3.0))
    d.polygon(_road_polygon(scene, scene.lanes[0] - margin, scene.lanes[-1] + margin, 1.0,
                            z_far), fill=(int(road), int(road), int(road + 5)))
    for _ in range(int(rng.integers(0, 6))):  # tree shadows across the road
        z0 = float(rng.uniform(4, 60))
        x0 = float(rng.uniform(scene.lanes[0] - 4, scene.lanes[-1] + 2))
        d.polygon(_road_polygon(scene, x0, x0 + float(rng.uniform(1, 6)), z0,
                                z0 + float(rng.uniform(2, 10))), fill=(0, 0, 0, 90))
    for _ in range(int(rng.integers(0, 40))):  # wear and patches
        z0 = float(rng.uniform(3, 80))
        x0 = float(rng.uniform(scene.lanes[0], scene.lanes[-1]))
        g = int(road + rng.integers(-25, 25))
        d.polygon(_strip(scene, x0, z0, z0 + float(rng.uniform(0.5, 4)),
                         float(rng.uniform(0.1, 0.8)), 4), fill=(g, g, g, 120))
    for i, x0 in enumerate(scene.lanes):
        colour = (230, 190, 40) if scene.yellow[i] else (235, 235, 235)
        half = MARKING / 2 * (2.0 if scene.yellow[i] and not scene.dashed[i] else 1.0)
        if scene.dashed[i]:
            z = Z_NEAR - scene.phase
            while z < Z_FAR:
                a, b = max(z, 1.0), min(z + DASH, Z_FAR)
                if b > a:
                    d.polygon(_strip(scene, x0, a, b, half, 4), fill=colour)
                z += DASH + GAP
        else:
            d.polygon(_strip(scene, x0, 1.0, Z_FAR, half, 40), fill=colour)
    vehicles = []
    for _ in range(int(rng.integers(0, 4))):  # vehicles ahead, in a lane
        lane = int(rng.integers(0, len(scene.lanes) - 1))
        xc = 0.5 * (scene.lanes[lane] + scene.lanes[lane + 1]) + float(rng.uniform(-0.4, 0.4))
        vehicles.append((float(rng.uniform(8, 70)), xc))
    for z, xc in sorted(vehicles, reverse=True):  # far first
        xr = scene.x_road(xc, np.array([z]))[0]
        u, v = scene.project(np.array([xr]), np.array([z]))
        w, h = scene.f * 1.9 / z, scene.f * float(rng.uniform(1.4, 2.6)) / z
        body = tuple(int(c) for c in rng.integers(20, 230, 3))
        x1, y1 = float(u[0]) - w / 2, float(v[0]) - h
        d.rectangle((x1, y1, x1 + w, float(v[0])), fill=body)
        d.rectangle((x1 + 0.1 * w, y1 + 0.1 * h, x1 + 0.9 * w, y1 + 0.4 * h), fill=(30, 35, 40))
        d.rectangle((x1, float(v[0]) - 0.08 * h, x1 + w, float(v[0]) + 0.04 * h),
                    fill=(10, 10, 10))
        if variant in ("night", "dusk"):
            for lx in (x1 + 0.1 * w, x1 + 0.8 * w):
                d.ellipse((lx, y1 + 0.55 * h, lx + 0.1 * w, y1 + 0.65 * h), fill=(255, 40, 30))
    arr = np.asarray(img, dtype=np.float32)
    if variant == "night":
        yy = np.arange(HEIGHT, dtype=np.float32)[:, None, None]
        beam = np.clip((yy - scene.horizon) / (HEIGHT - scene.horizon), 0, 1) ** 1.5
        arr = arr * (0.18 + 0.55 * beam)
    elif variant == "dusk":
        arr = arr * np.array([1.0, 0.8, 0.7], np.float32) * 0.75
    if variant == "rain":
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        dr = ImageDraw.Draw(out, "RGBA")
        for _ in range(int(rng.integers(150, 400))):
            x, y = float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT))
            dr.line((x, y, x - 4, y + float(rng.uniform(10, 30))), fill=(220, 220, 230, 70))
        out = out.filter(ImageFilter.GaussianBlur(1.2))
        arr = np.asarray(out, dtype=np.float32) * 0.9 + 15
    arr += rng.normal(0, 3.0, arr.shape).astype(np.float32)  # sensor noise
    frame = np.clip(arr, 0, 255).astype(np.uint8)
    lanes = [scene.label(x0) for x0 in scene.lanes]
    lanes = [lane for lane in lanes if sum(x >= 0 for x in lane) >= 2]
    return frame, lanes, variant


def _write_split(root: Path, seed: int, stream: int, clips: int, date: str, label_file: str,
                 progress) -> int:
    from PIL import Image

    labels = []
    for c in range(clips):
        rng = np.random.default_rng([seed, stream, c])
        frame, lanes, variant = render(rng)
        rel = f"clips/{date}/{c:05d}/20.jpg"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=92)
        labels.append(LaneLabel(rel, list(H_SAMPLES), lanes, extra={"variant": variant}))
        progress.advance(1)
    write_labels(root / label_file, labels)
    return clips


def generate(path: str | Path, *, seed: int = 0, train_clips: int = 300,
             test_clips: int = 100, progress: Progress | None = None) -> Path:
    """Write a TuSimple-layout data set: ROOT/clips/..., ROOT/label_data_veil.json (training)
    and ROOT/test_label.json (testing, from an independent random stream)."""
    from veil.train import check_seed

    check_seed(seed)
    for n, what in ((train_clips, "train clips"), (test_clips, "test clips")):
        if not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"{what} must be a whole number >= 0, not {n!r}")
    if train_clips + test_clips == 0:
        raise InvalidArgument("nothing to write: give some train or test clips")
    path = Path(path)
    progress = or_silent(progress)
    with new_directory(path) as tmp:  # checks the destination before any progress is shown
        progress.start(train_clips + test_clips, "writing frames")
        if train_clips:
            _write_split(tmp, seed, 0, train_clips, "veil-train", TRAIN_FILE, progress)
        if test_clips:
            _write_split(tmp, seed, 1, test_clips, "veil-test", TEST_FILE, progress)
        (tmp / "dataset.json").write_text(json.dumps(
            {"format": "tusimple", "generator": "veil.solutions.lane_detection", "seed": seed,
             "train_clips": train_clips, "test_clips": test_clips}, indent=2) + "\n")
    return path


def angle_deg(lane: list[int]) -> float:
    """A label's angle from vertical, in degrees (for summaries)."""
    pts = [(x, y) for x, y in zip(lane, H_SAMPLES, strict=True) if x >= 0]
    if len(pts) < 2:
        return 0.0
    (x1, y1), (x2, y2) = pts[0], pts[-1]
    return math.degrees(math.atan2(x2 - x1, y2 - y1))
