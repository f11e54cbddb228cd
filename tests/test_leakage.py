"""Identity-level leakage measures (issue 17): the ladder, region crops, attribute probes, the
two-input bound, and the report that runs them on a task."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.badinput import refused
from veil.errors import InvalidArgument
from veil.privacy import Obfuscator, _report, get_task
from veil.privacy import _leakage as L

TASK = get_task("shapes")


# ---------------------------------------------------------------------- the two-input bound
@pytest.mark.parametrize("seed", [0, 1])
def test_two_input_bound_matches_the_optimal_test_by_monte_carlo_on_a_linear_head(seed):
    """Phi(D/2) is the accuracy of the likelihood-ratio test: sampling that test on a toy
    linear head f(x) = Wx, with Gaussian noise of per-channel scale s, gives the same figure."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 10, generator=g)
    a = torch.randn(12, 10, generator=g)
    b = a + 0.4 * torch.randn(12, 10, generator=g)
    delta = ((a - b) @ w.T)[:, :, None, None].expand(12, 6, 2, 2).contiguous()
    s = torch.rand(6, generator=g) * 2 + 1.0
    exact = L.two_input_bound(delta, s)
    sampled = L.monte_carlo_gaussian_test(delta, s, samples=20000, seed=seed)
    assert exact.min() < 0.8 and exact.max() > 0.9  # the pairs span easy and hard tests
    # 20,000 samples: the standard error is at most 0.0036
    assert (exact - sampled).abs().max() < 0.015
    # and the test really is the best one can do: a worse (unweighted) test scores lower
    assert (L.two_input_bound(delta, s, k=8) >= exact).all()  # averaging only helps


def test_two_input_bound_by_hand():
    delta = torch.zeros(1, 2, 1, 1)
    delta[0, 0, 0, 0] = 2.0  # D = 2 / s = 1 -> Phi(0.5)
    s = torch.tensor([2.0, 1.0])
    assert float(L.two_input_bound(delta, s)) == pytest.approx(0.6914625, abs=1e-6)
    assert float(L.two_input_bound(torch.zeros(1, 2, 1, 1), s)) == 0.5
    # a channel without noise that differs can be told apart for certain
    assert float(L.two_input_bound(delta, torch.tensor([0.0, 1.0]))) == 1.0


def test_laplace_optimal_test_is_a_probability_above_one_half_and_grows_with_the_gap():
    s = torch.ones(3)
    small = torch.full((1, 3, 2, 2), 0.1)
    large = torch.full((1, 3, 2, 2), 1.5)
    p_small = float(L.laplace_optimal_test(small, s, samples=4000))
    p_large = float(L.laplace_optimal_test(large, s, samples=4000))
    assert 0.5 <= p_small < p_large <= 1.0
    # at equal variance, Laplace noise lets the optimal test do at least as well here
    assert p_large >= float(L.two_input_bound(large, s)) - 0.02


# ---------------------------------------------------------------------- the ladder
def test_colour_grids_are_computed_from_the_images():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 16, 16, generator=g)
    one = L.colour_grid(images, 1)
    assert torch.allclose(one, images.mean((2, 3), keepdim=True).expand_as(images))
    blocky = L.colour_grid(images, 4)
    assert torch.allclose(L.colour_grid(blocky, 4), blocky)  # a 4x4 grid is its own grid
    lad = L.ladder(blocky, blocky, images.mean(0))
    # the baselines come from the data: other images, other figures
    lad2 = L.ladder(blocky, images, images.mean(0))
    assert [r.psnr for r in lad.rungs] != [r.psnr for r in lad2.rungs]
    by_name = {r.name: r.psnr for r in lad2.rungs}
    assert by_name["1x1 colour grid"] < by_name["4x4 colour grid"] < by_name["16x16 colour grid"]
    # a reconstruction that is the 4x4 grid of the truth sits exactly at that rung
    assert lad2.gain_over("4x4 colour grid") == pytest.approx(0.0, abs=1e-4)
    assert lad2.place.startswith("as much as the 4x4 colour grid")


def test_public_guesses_beat_the_mean_when_the_output_says_something():
    g = torch.Generator().manual_seed(1)
    dark, light = torch.rand(20, 3, 8, 8, generator=g) * 0.2, \
        0.8 + torch.rand(20, 3, 8, 8, generator=g) * 0.2
    images = torch.cat([dark, light])
    labels = torch.tensor([0] * 20 + [1] * 20)
    guess = L.class_mean_guess(images, labels, labels)
    lad = L.ladder(guess, images, images.mean(0), public_guess=guess, public_name="class")
    assert lad.gain_over_mean > 10  # the class alone says dark or light
    assert lad.gain_over("best guess given the class") == 0


def test_crops_cut_the_box():
    img = torch.zeros(1, 3, 64, 64)
    img[:, :, 16:32, 32:48] = 1.0  # a white square at x 32-48, y 16-32
    box = torch.tensor([[32 / 64, 16 / 64, 48 / 64, 32 / 64]])
    assert L.crop(img, box, 8).min() > 0.99
    grown = L.crop(img, box, 16, margin=0.5)  # twice as wide: the square is the middle half
    assert grown[..., 5:11, 5:11].min() > 0.99 and grown[..., 0, 0].max() < 0.01


# ---------------------------------------------------------------------- probes
@pytest.fixture(scope="module")
def shapes_units():
    from veil.privacy._report import _probe_units
    from veil.progress import SILENT

    model = TASK.load_model()
    probes = TASK.probes
    train = _probe_units(probes, "attributes", 400, 11, model.forward_head, "cpu", SILENT)
    test = _probe_units(probes, "attributes", 200, 12, model.forward_head, "cpu", SILENT)
    return model, train, test


def test_an_attribute_probe_on_clean_activations_beats_majority(shapes_units):
    """The measure can fail: on the clean activation the shape's position cell is plain."""
    _, train, test = shapes_units
    clean = L.train_probe(train, test, "position", 9, None, epochs=4, width=32)
    assert clean.over_majority > 0.3 and clean.chance == pytest.approx(1 / 9)
    noisy = Obfuscator(0.99, "gaussian", epochs=0).fit(
        shapes_units[0], TASK.loader(_data(), "train", 64, False), TASK.task_loss)
    heavy = L.train_probe(train, test, "position", 9, noisy.transform, epochs=4, width=32)
    assert heavy.accuracy < clean.accuracy


_DATA = {}


def _data():
    if "p" not in _DATA:
        import tempfile
        from pathlib import Path

        _DATA["p"] = TASK.generate(Path(tempfile.mkdtemp()) / "d", seed=4,
                                   sizes={"fit": 64, "attack": 64, "test": 32})
    return _DATA["p"]


@pytest.mark.parametrize("call,match", [
    (lambda: L.ladder(torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8), torch.rand(3, 8, 8)),
     "shapes differ"),
    (lambda: L.ladder(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(3, 4, 4)),
     "mean image"),
    (lambda: L.ladder(torch.full((1, 3, 8, 8), math.nan), torch.rand(1, 3, 8, 8),
                      torch.rand(3, 8, 8)), "NaN"),
    (lambda: L.ladder(torch.rand(0, 3, 8, 8), torch.rand(0, 3, 8, 8), torch.rand(3, 8, 8)),
     "empty"),
    (lambda: L.colour_grid(torch.rand(1, 3, 8, 8), 9), "k from 1"),
    (lambda: L.colour_grid(torch.rand(1, 3, 8, 8), True), "k from 1"),
    (lambda: L.crop(torch.rand(1, 3, 8, 8), torch.tensor([[0.5, 0.5, 0.2, 0.9]]), 8),
     "no area"),
    (lambda: L.crop(torch.rand(1, 3, 8, 8), torch.rand(2, 4), 8), "float tensor of shape"),
    (lambda: L.crop(torch.rand(1, 3, 8, 8), torch.tensor([[0.1, 0.1, 0.5, 0.5]]), 0), "size"),
    (lambda: L.two_input_bound(torch.rand(2, 3, 4, 4), torch.ones(4)), "one standard deviation"),
    (lambda: L.two_input_bound(torch.rand(2, 3, 4, 4), -torch.ones(3)), "negative"),
    (lambda: L.two_input_bound(torch.full((2, 3, 4, 4), math.inf), torch.ones(3)), "finite"),
    (lambda: L.two_input_bound([1, 2], torch.ones(3)), "float tensor"),
    (lambda: L.region_score(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 4, 4), torch.rand(3, 4, 4)),
     "shapes differ"),
])
def test_measures_refuse_bad_input_in_one_line(call, match):
    with pytest.raises(InvalidArgument, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_probe_refuses_labels_it_does_not_have(shapes_units):
    _, train, test = shapes_units
    with pytest.raises(InvalidArgument, match="no label 'identity'"):
        L.train_probe(train, test, "identity", 10, None, epochs=1)
    with pytest.raises(InvalidArgument, match=r"outside 0\.\.1"):
        L.train_probe(train, test, "position", 2, None, epochs=1)
    with pytest.raises(InvalidArgument, match="no boxes"):
        L.train_region_decoder(train, test, None, epochs=1)


# ---------------------------------------------------------------------- the report
def test_leakage_report_on_shapes(tmp_path, monkeypatch):
    """Every measure runs on a task and lands in the JSON; tiny attackers, so only structure
    and the direction of the figures are checked here (the benchmark has the real ones)."""
    monkeypatch.setitem(_report.PRESETS, "quick", {"widths": (16,), "decoder_epochs": 1,
                                                   "probe_epochs": 2, "region_epochs": 1,
                                                   "scale": 12})
    r = _report.leakage(TASK, _data(), 0.5, workdir=tmp_path, epochs=0, draws=2)
    assert r.distribution == "gaussian" and r.mechanism == "noise"
    names = [x.name for x in r.ladder.rungs]
    assert {"mean image", "1x1 colour grid", "16x16 colour grid",
            "best guess given the class"} <= set(names)
    assert [a.name for a in r.attributes] == ["position", "colour", "size", "texture"]
    assert r.identity is None and r.region is None  # shapes has neither
    assert r.two_input.pairs == 41 and set(r.two_input.median) == {1, 8, 64}
    assert r.two_input.median[64] >= r.two_input.median[1] >= 0.5
    assert r.utility.clean > 0.8 and len(r.utility.values) == 2
    saved = json.loads(r.json_path.read_text())
    assert saved["ladder"]["gain_over_mean"] == pytest.approx(r.ladder.gain_over_mean)
    assert saved["attributes"][0]["over_majority"] == pytest.approx(r.attributes[0].over_majority)
    lines = []
    _report.describe(r, lines.append)
    assert any("best two-input test" in ln for ln in lines)


@pytest.mark.parametrize("kw,match", [
    ({"alpha": None}, "needs an ALPHA"),
    ({"alpha": 0.0}, "no noise to measure"),
    ({"alpha": 1.5}, "ALPHA"),
    ({"alpha": 0.5, "preset": "huge"}, "no preset 'huge'"),
    ({"alpha": 0.5, "mechanism": "magic"}, "no mechanism 'magic'"),
    ({"alpha": 0.5, "draws": 0}, "draws"),
    ({"alpha": 0.5, "obfuscator": "obf/"}, "must be an Obfuscator"),
])
def test_leakage_refuses_bad_arguments_before_any_work(tmp_path, kw, match):
    with pytest.raises(InvalidArgument, match=match):
        _report.leakage(TASK, _data(), workdir=tmp_path / "wd", **kw)
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("argv,match", [
    (["privacy", "leakage", "--data", "d"], "give --alpha"),
    (["privacy", "leakage", "--data", "d", "--alpha", "0.5", "--preset", "x"], "no preset"),
    (["privacy", "leakage", "--data", "d", "--alpha", "0.5", "-m", "x"], "no mechanism"),
    (["privacy", "attack", "--data", "d", "--preset", "x"], "no preset"),
    (["privacy", "evaluate", "--data", "d", "--mechanism", "x"], "no mechanism"),
])
def test_cli_refuses_in_one_line(capsys, tmp_path, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    refused(capsys, argv, match, home=tmp_path)


@pytest.mark.parametrize("mechanism", [m for m in TASK.mechanisms if m != "noise"])
def test_a_shipped_mechanism_is_fitted_and_evaluated_by_name(tmp_path, mechanism):
    from veil.privacy import evaluate, fit_one, obfuscator_path

    model = TASK.load_model(mechanism=mechanism)
    assert model.mechanism == mechanism
    obf = fit_one(TASK, _data(), 0.9, epochs=0, mechanism=mechanism,
                  out=obfuscator_path(tmp_path, "gaussian", 0.9, mechanism))
    assert (tmp_path / "obfuscators" / f"{mechanism}-gaussian-alpha-0.9").is_dir()
    assert obf.model_identity_ == model.identity
    # an obfuscator fitted on one mechanism is refused on another model
    with pytest.raises(InvalidArgument):
        obf.check_model(TASK.load_model())
    r = evaluate(TASK, _data(), [0.9], workdir=tmp_path, epochs=0, mechanism=mechanism)
    assert r.clean > 0.8 and r.rows[1].of_clean > 0.5
