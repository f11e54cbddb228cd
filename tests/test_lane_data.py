"""TR-4896 lane detection, data and metric: TuSimple's format, the generator, the official
metric's rules, and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from veil.cli import main
from veil.solutions.lane_detection import (
    H_SAMPLES,
    LabelError,
    LaneLabel,
    evaluate,
    generate,
    read_dataset,
    read_labels,
    render,
    score_image,
    write_labels,
)

N = len(H_SAMPLES)  # 56 rows: 160 ... 710


def vertical(x: float) -> list[float]:
    return [x] * N


def slanted(c: float, k: float = 1.0) -> list[float]:
    return [k * y + c for y in H_SAMPLES]


# ---------------------------------------------------------------------- metric
def test_h_samples_are_the_benchmarks():
    assert H_SAMPLES[0] == 160 and H_SAMPLES[-1] == 710 and N == 56
    assert set(np.diff(H_SAMPLES)) == {10}


def test_a_perfect_prediction_scores_one():
    gt = [vertical(300), vertical(600), slanted(-100)]
    s = score_image(gt, gt, H_SAMPLES)
    assert (s.accuracy, s.fp, s.fn) == (1.0, 0.0, 0.0)


def test_twenty_pixels_on_a_vertical_lane():
    gt = [vertical(500)]
    assert score_image([vertical(519)], gt, H_SAMPLES).accuracy == 1.0
    s = score_image([vertical(521)], gt, H_SAMPLES)
    assert (s.accuracy, s.fp, s.fn) == (0.0, 1.0, 1.0)


def test_the_threshold_grows_with_the_lanes_angle():
    gt = [slanted(-100, 1.0)]  # 45 degrees: 20 / cos(45) = 28.3 px
    assert score_image([slanted(-75, 1.0)], gt, H_SAMPLES).accuracy == 1.0
    assert score_image([slanted(-71.9, 1.0)], gt, H_SAMPLES).accuracy == 1.0
    assert score_image([slanted(-71.5, 1.0)], gt, H_SAMPLES).accuracy == 0.0


def test_missing_points_agree_with_missing_points_only():
    gt = [[-2] * 10 + [400] * (N - 10)]
    assert score_image([[-2] * 10 + [400] * (N - 10)], gt, H_SAMPLES).accuracy == 1.0
    s = score_image([vertical(400)], gt, H_SAMPLES)
    assert s.accuracy == pytest.approx((N - 10) / N)
    assert s.fn == 1.0  # 46/56 = 0.82 < 0.85


def test_the_085_point_ratio():
    gt = [vertical(400)]
    good = vertical(400)
    for i in range(N - 48):  # 48 of 56 right: 0.857
        good[i] = 900
    bad = vertical(400)
    for i in range(N - 47):  # 47 of 56: 0.839
        bad[i] = 900
    assert score_image([good], gt, H_SAMPLES).fn == 0.0
    s = score_image([bad], gt, H_SAMPLES)
    assert s.fn == 1.0 and s.fp == 1.0 and s.accuracy == pytest.approx(47 / 56)


def test_more_than_four_lanes_forgive_one_miss_and_drop_the_worst():
    gt = [vertical(x) for x in (100, 300, 500, 700, 900)]
    s = score_image(gt[:4], gt, H_SAMPLES)
    assert s.fn == 0.0 and s.accuracy == 1.0 and s.fp == 0.0
    s = score_image(gt[:3], gt, H_SAMPLES)  # two missed: one forgiven, 3 of 4 counted
    assert s.fn == pytest.approx(1 / 4) and s.accuracy == pytest.approx(3 / 4)


def test_run_time_and_too_many_lanes_score_nothing():
    gt = [vertical(300), vertical(600)]
    s = score_image(gt, gt, H_SAMPLES, run_time=201)
    assert (s.accuracy, s.fp, s.fn) == (0.0, 0.0, 1.0)
    assert score_image(gt, gt, H_SAMPLES, run_time=200).accuracy == 1.0
    five = gt + [vertical(x) for x in (100, 800, 1000)]
    s = score_image(five, gt, H_SAMPLES)  # 5 predictions > 2 + 2
    assert (s.accuracy, s.fp, s.fn) == (0.0, 0.0, 1.0)
    assert score_image(five[:4], gt, H_SAMPLES).accuracy == 1.0


def test_f1_counts_lanes_over_the_set():
    g1 = [vertical(x) for x in (200, 400, 600, 800)]
    g2 = [vertical(x) for x in (250, 450, 650, 850)]
    gts = [LaneLabel("a.jpg", H_SAMPLES, g1), LaneLabel("b.jpg", H_SAMPLES, g2)]
    preds = [LaneLabel("a.jpg", [], g1, run_time=5),
             LaneLabel("b.jpg", [], [g2[0], g2[1], vertical(1100)], run_time=5)]
    r = evaluate(preds, gts)
    # from the mean rates, as CLRNet's scorer: FP 1/6, FN 1/4, TP = 1 - FP
    t = 1 - 1 / 6
    p, rc = t / (t + 1 / 6), t / (t + 1 / 4)
    assert r.precision == pytest.approx(p) and r.recall == pytest.approx(rc)
    assert r.f1 == pytest.approx(2 * p * rc / (p + rc))
    assert r.lane_precision == pytest.approx(6 / 7) and r.lane_recall == pytest.approx(6 / 8)
    assert r.accuracy == pytest.approx((1 + 2 / 4) / 2)
    assert r.fp == pytest.approx((0 + 1 / 3) / 2) and r.fn == pytest.approx((0 + 2 / 4) / 2)


def test_every_ground_truth_image_needs_a_prediction():
    gts = [LaneLabel("a.jpg", H_SAMPLES, [vertical(1)]), LaneLabel("b.jpg", H_SAMPLES, [])]
    with pytest.raises(Exception, match="no prediction for 1 of 2"):
        evaluate([LaneLabel("a.jpg", [], [vertical(1)], run_time=1)], gts)
    with pytest.raises(LabelError, match=r"p\.json:3: c\.jpg is not in the ground truth"):
        evaluate([LaneLabel("c.jpg", [], [], run_time=1, source="p.json:3")], gts)
    with pytest.raises(LabelError, match=r"p\.json:1: .*one x per h_sample"):
        evaluate([LaneLabel("a.jpg", [], [[1, 2]], run_time=1, source="p.json:1"),
                  LaneLabel("b.jpg", [], [], run_time=1)], gts)


# ---------------------------------------------------------------------- format
def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_label_errors_name_file_and_line(tmp_path):
    good = json.dumps({"lanes": [vertical(3)], "h_samples": H_SAMPLES, "raw_file": "a.jpg"})
    short = json.dumps({"lanes": [vertical(3), [1, 2]], "h_samples": H_SAMPLES,
                        "raw_file": "b.jpg"})
    f = _write(tmp_path / "label.json", [good, "{not json", short, good])
    with pytest.raises(LabelError, match=r"label\.json:2: not JSON"):
        read_labels(f)
    labels, errors = read_labels(f, strict=False)
    assert [lab.raw_file for lab in labels] == ["a.jpg"]
    assert errors[0].endswith(":2: not JSON (Expecting property name enclosed in double "
                              "quotes at column 2)")
    assert "label.json:3: lane 1 has 2 points but h_samples has 56" in errors[1]
    assert "label.json:4: a.jpg is labelled twice (first at line 1)" in errors[2]
    nan = json.dumps({"lanes": [vertical(3)], "h_samples": H_SAMPLES, "raw_file": "c.jpg"}
                     ).replace("3.0, ", "NaN, ", 1).replace("3, ", "NaN, ", 1)
    with pytest.raises(LabelError, match="lane 0 has a value that is not a number"):
        read_labels(_write(tmp_path / "nan.json", [nan]))
    no_h = _write(tmp_path / "p.json", ['{"lanes": [], "raw_file": "a.jpg"}'])
    with pytest.raises(LabelError, match=r"p\.json:1: missing h_samples"):
        read_labels(no_h)
    with pytest.raises(LabelError, match=r"p\.json:1: missing run_time"):
        read_labels(no_h, prediction=True)


def test_a_missing_image_is_reported(tmp_path):
    generate(tmp_path / "ts", seed=3, train_clips=2, test_clips=1)
    (tmp_path / "ts" / read_labels(tmp_path / "ts" / "test_label.json")[0][0].raw_file).unlink()
    with pytest.raises(LabelError, match=r"test_label\.json:1: image clips/.*20\.jpg not found"):
        read_dataset(tmp_path / "ts")
    labels, errors = read_dataset(tmp_path / "ts", strict=False)
    assert len(labels) == 2 and len(errors) == 1


def test_write_then_read_round_trips(tmp_path):
    labs = [LaneLabel("clips/x/1/20.jpg", H_SAMPLES, [vertical(5), slanted(3)])]
    write_labels(tmp_path / "l.json", labs)
    back, _ = read_labels(tmp_path / "l.json")
    assert back[0].lanes == labs[0].lanes and back[0].h_samples == H_SAMPLES


# ---------------------------------------------------------------------- generator
def test_generated_data_is_tusimple_and_seeded(tmp_path):
    a = generate(tmp_path / "a", seed=5, train_clips=4, test_clips=2)
    b = generate(tmp_path / "b", seed=5, train_clips=4, test_clips=2)
    c = generate(tmp_path / "c", seed=6, train_clips=4, test_clips=2)
    for name in ("label_data_veil.json", "test_label.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
    labels, errors = read_dataset(a)
    assert errors == [] and len(labels) == 6
    first = labels[0].raw_file
    assert first.startswith("clips/") and first.endswith("/20.jpg")
    assert (a / first).read_bytes() == (b / first).read_bytes()
    from PIL import Image

    with Image.open(a / first) as im:
        assert im.size == (1280, 720)
    for lab in labels:
        assert lab.h_samples == H_SAMPLES and 2 <= len(lab.lanes) <= 5
        for lane in lab.lanes:
            assert len(lane) == N and all(x == -2 or 0 <= x < 1280 for x in lane)
    train = {lab.raw_file for lab in read_labels(a / "label_data_veil.json")[0]}
    test = {lab.raw_file for lab in read_labels(a / "test_label.json")[0]}
    assert not train & test


def _paint(px, road) -> bool:
    """Lane paint: much brighter than the road, or much yellower."""
    return px.sum() - road.sum() > 120 or (px[0] - px[2]) - (road[0] - road[2]) > 60


def test_labels_lie_on_the_painted_markings():
    """Near the camera, a label's pixel is lane paint far more often than the pixel 40 px to
    its side (dashed markings have gaps, vehicles hide some)."""
    on = off = total = 0
    for i in range(8):
        frame, lanes, _ = render(np.random.default_rng([99, i]), "day")
        img = frame.astype(int)
        for lane in lanes:
            for x, y in zip(lane, H_SAMPLES, strict=True):
                if x < 0 or y < 450 or not 45 <= x < 1235:
                    continue
                road = np.median(img[y, max(0, x - 80):x + 80], axis=0)
                total += 1
                on += _paint(img[y, x], road)
                off += _paint(img[y, x + 40], road)
    assert total > 100
    assert on / total > 0.45 and off / total < 0.1, (on / total, off / total)


def test_all_variants_occur():
    variants = {render(np.random.default_rng([98, i]))[2] for i in range(16)}
    assert variants == {"day", "dusk", "night", "rain"}


# ---------------------------------------------------------------------- commands
def test_commands_generate_check_evaluate(tmp_path, capsys):
    root = tmp_path / "tusimple"
    assert main(["solutions", "lane-detection", "generate", str(root), "--train-clips", "3",
                 "--test-clips", "2"]) == 0
    assert main(["solutions", "lane-detection", "check", str(root)]) == 0
    assert "5 labelled frames" in capsys.readouterr().out
    gt = root / "test_label.json"
    preds = [json.dumps({"raw_file": lab.raw_file, "run_time": 12.0,
                         "lanes": [[x + 10 if x >= 0 else x for x in lane]
                                   for lane in lab.lanes]})
             for lab in read_labels(gt)[0]]
    pred = _write(tmp_path / "pred.json", preds)
    assert main(["solutions", "lane-detection", "score", str(pred), str(gt)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["Accuracy 1.0000", "FP 0.0000", "FN 0.0000", "F1 1.0000"]
    _write(tmp_path / "bad.json", [preds[0], '{"raw_file": "x"}'])
    assert main(["solutions", "lane-detection", "score", str(tmp_path / "bad.json"),
                 str(gt)]) == 2
    assert "bad.json:2: missing lanes, run_time" in capsys.readouterr().err
    (root / "label_data_veil.json").write_text(
        (root / "label_data_veil.json").read_text() + "{oops\n")
    assert main(["solutions", "lane-detection", "check", str(root)]) == 1
    assert "label_data_veil.json:4: not JSON" in capsys.readouterr().err


def test_scnn_has_the_reports_shape_and_trains():
    import torch

    from veil.solutions.lane_detection._model import IN_H, IN_W, SLOTS, build, loss_fn

    m = build("scnn")
    x = torch.rand(1, 3, IN_H, IN_W)
    seg, ex = m(x)
    assert seg.shape == (1, SLOTS + 1, IN_H // 2, IN_W // 2) and ex.shape == (1, SLOTS)
    loss = loss_fn(seg, ex, torch.zeros(1, IN_H // 2, IN_W // 2, dtype=torch.long),
                   torch.zeros(1, SLOTS))
    loss.backward()
    assert all(p.grad is not None for p in m.mp.parameters())  # message passing is in the graph


def test_targets_and_decoding_round_trip():
    """Lanes drawn into SCNN's target map decode back to within a few pixels."""
    import torch

    from veil.solutions.lane_detection._model import SLOTS, decode, slot_of, target

    _frame, lanes, _ = render(np.random.default_rng(5), "day")
    seg, exist = target(lanes)
    assert exist.sum() == sum(s is not None for s in slot_of(lanes))
    logits = torch.nn.functional.one_hot(torch.from_numpy(seg).long(), SLOTS + 1)
    logits = logits.permute(2, 0, 1)[None].float() * 20
    got = decode(logits, torch.zeros(1, SLOTS))[0]
    r = score_image(got, lanes, H_SAMPLES)
    assert r.fn == 0 and r.fp == 0 and r.accuracy > 0.9


def test_augmentation_changes_every_epoch_with_loader_workers(tmp_path):
    """The training loader's worker processes see the epoch the main process sets."""
    import torch

    from veil.solutions.lane_detection._data import LaneFrames
    from veil.solutions.lane_detection._train import TrainConfig, make_loader

    root = generate(tmp_path / "ts", seed=4, train_clips=4, test_clips=0)
    labels = read_labels(root / "label_data_veil.json")[0]
    ds = LaneFrames(root, labels, augment=True)
    cfg = TrainConfig(data=str(root), out=str(tmp_path), batch_size=4, num_workers=1)
    loader = make_loader(ds, cfg, sampler=torch.utils.data.SequentialSampler(ds))
    firsts = []
    for epoch in range(3):
        ds.epoch = epoch
        firsts.append(next(iter(loader))[0])
    assert not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[1], firsts[2])


def test_the_config_knows_every_model_by_name():
    from veil.solutions.lane_detection._model import MODELS
    from veil.solutions.lane_detection._train import MODEL_NAMES

    assert tuple(MODELS) == MODEL_NAMES
