"""veil.privacy: splitting, the obfuscator's contract, persistence, and measured leakage."""

from __future__ import annotations

import importlib.metadata
import json
import math
import statistics

import pytest
import torch
from torch import nn

import veil.privacy
from veil.errors import InvalidArgument, NotFound
from veil.privacy import (
    SHAPES_WEIGHTS,
    IncompatibleObfuscator,
    Obfuscator,
    SplitModel,
    _attack,
    attack,
    evaluate,
    get_task,
    shapes_cnn,
    split_at,
    train_under_noise,
)
from veil.privacy._metrics import information_bound, psnr, ssim

TASK = get_task("shapes")


class Recorder:
    """A veil.progress.Progress that keeps (total, advanced) and the description per phase."""

    def __init__(self):
        self.phases: list[tuple[int, int]] = []
        self.names: list[str] = []

    def start(self, total: int, description: str) -> None:
        self.phases.append((total, 0))
        self.names.append(description)

    def advance(self, n: int = 1) -> None:
        total, done = self.phases[-1]
        self.phases[-1] = (total, done + n)


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes") / "data"
    return TASK.generate(path, seed=3, sizes={"fit": 480, "attack": 480, "test": 240})


@pytest.fixture(scope="session")
def model():
    return TASK.load_model()


def fit(model, data, alpha=0.9, epochs=2, **kw):
    obf = Obfuscator(alpha, epochs=epochs, random_state=kw.pop("random_state", 0), **kw)
    return obf.fit(model, TASK.loader(data, TASK.splits["fit"], 96, True), TASK.task_loss)


# ---------------------------------------------------------------------- splitting
def test_split_at_keeps_the_model_function(model):
    net = shapes_cnn().eval()
    split = split_at(net, "relu2")
    x = torch.rand(4, 3, 32, 32)
    assert list(dict(split.head.named_children())) == ["norm", "conv1", "bn1", "relu1", "conv2",
                                                       "bn2", "relu2"]
    assert split.forward_head(x).shape == (4, 32, 16, 16)
    assert torch.equal(split(x), net(x))
    assert torch.equal(split.forward_tail(split.forward_head(x)), net(x))


def test_split_at_a_nested_layer():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 3), nn.ReLU()),
                        nn.Linear(3, 2))
    split = split_at(net, "1.1")
    x = torch.rand(5, 4)
    assert split.forward_head(x).shape == (5, 3)
    assert torch.equal(split(x), net(x))


@pytest.mark.parametrize("layer,message", [
    ("nope", "no layer 'nope'"),
    ("fc", "empty tail"),
    ("conv1.weight", "only nn.Sequential"),
])
def test_split_at_refuses_bad_layers(layer, message):
    with pytest.raises(InvalidArgument, match=message):
        split_at(shapes_cnn(), layer)


def test_split_at_needs_a_sequential():
    with pytest.raises(InvalidArgument, match=r"needs an nn\.Sequential"):
        split_at(nn.Linear(2, 2), "x")


def test_identity_changes_with_the_weights():
    a = split_at(shapes_cnn(), "relu2", name="m")
    b = split_at(shapes_cnn(), "relu2", name="m")
    c = split_at(shapes_cnn(), "relu3", name="m")
    assert a.identity["fingerprint"] != b.identity["fingerprint"]  # fresh random weights
    b.load_state_dict(a.state_dict())
    assert a.identity == b.identity
    with torch.no_grad():
        b.tail.fc.bias.add_(1e-3)  # weights changed after the first look are noticed
    assert a.identity != b.identity
    assert c.identity["split"] == "relu3"


# ---------------------------------------------------------------------- the obfuscator
def test_alpha_zero_reproduces_clean_outputs_exactly(model, shapes_data):
    obf = fit(model, shapes_data, alpha=0.0)
    x = torch.rand(8, 3, 32, 32)
    a = model.forward_head(x)
    assert obf.transform(a) is a
    noisy = SplitModel(model.head, model.tail, obfuscator=obf)
    assert torch.equal(noisy(x), model(x))


def test_noise_is_fresh_on_every_call(model, shapes_data):
    obf = fit(model, shapes_data, alpha=0.5, epochs=0)
    a = model.forward_head(torch.rand(2, 3, 32, 32))
    first, second = obf.transform(a), obf.transform(a)
    assert not torch.equal(first, second)
    assert (first != second).float().mean() > 0.99


def test_noise_does_not_follow_torchs_global_seed(model, shapes_data, tmp_path):
    """torch's default generator starts from a fixed seed; the noise must not."""
    obf = fit(model, shapes_data, alpha=0.5, epochs=0, random_state=None)
    obf.save(tmp_path / "o")
    a = model.forward_head(torch.rand(2, 3, 32, 32))
    torch.manual_seed(0)
    one = Obfuscator.load(tmp_path / "o").transform(a)
    torch.manual_seed(0)
    two = Obfuscator.load(tmp_path / "o").transform(a)
    assert not torch.equal(one, two)


@pytest.mark.parametrize("distribution,kurtosis", [("gaussian", 3.0), ("laplace", 6.0)])
def test_noise_has_the_fitted_mean_scale_and_shape(model, shapes_data, distribution, kurtosis):
    obf = fit(model, shapes_data, alpha=0.8, epochs=1, distribution=distribution)
    a = torch.zeros(256, 64, 8, 8)
    n = (obf.transform(a) - a).transpose(0, 1).flatten(1)  # per channel
    assert torch.allclose(n.mean(1), obf.noise_mean_, atol=0.04 * float(obf.noise_scale_.max()))
    assert torch.allclose(n.std(1), obf.noise_scale_, rtol=0.03)
    z = (n - n.mean(1, keepdim=True)) / n.std(1, keepdim=True)
    assert float(z.pow(4).mean()) == pytest.approx(kurtosis, rel=0.1)


@pytest.mark.parametrize("distribution", ["gaussian", "laplace"])
def test_noise_drawn_while_fitting_has_unit_variance(distribution):
    obf = Obfuscator(0.5, distribution)
    eps = obf._sample(torch.zeros(400_000))
    assert float(eps.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(eps.var()) == pytest.approx(1.0, rel=0.02)


def test_noise_parameters_stay_finite_at_tiny_alpha(model, shapes_data):
    obf = fit(model, shapes_data, alpha=1e-6, epochs=1)
    assert torch.isfinite(obf.noise_scale_).all() and torch.isfinite(obf.noise_mean_).all()
    assert (obf.noise_scale_ > 0).all()


def test_transform_works_inside_and_outside_inference_mode(model, shapes_data):
    obf = fit(model, shapes_data, alpha=0.5, epochs=0)
    a = torch.rand(1, 64, 8, 8)
    with torch.inference_mode():
        obf.transform(a)
    assert obf.transform(a).shape == a.shape
    with torch.inference_mode():
        assert obf.transform(a).shape == a.shape


def test_a_one_shot_iterator_is_refused_not_fitted_on_nothing(model, shapes_data):
    batches = iter(list(TASK.loader(shapes_data, TASK.splits["fit"], 96)))
    with pytest.raises(InvalidArgument, match="re-iterable"):
        Obfuscator(0.5, epochs=1).fit(model, batches, TASK.task_loss)


@pytest.mark.parametrize("alpha", [0.05, 0.4, 0.8, 0.95])
def test_alpha_fixes_the_leakage_budget_and_scales_stay_bounded(model, shapes_data, alpha):
    obf = fit(model, shapes_data, alpha=alpha, epochs=1)
    g = torch.log2(1 + obf.signal_std_.double() ** 2 / obf.noise_scale_.double() ** 2)
    assert float(g.mean()) == pytest.approx(math.log2(1 / alpha), rel=1e-4)
    assert float(g.min()) >= obf.min_share * math.log2(1 / alpha) * (1 - 1e-4)
    assert obf.budget_bits == pytest.approx(0.5 * math.log2(1 / alpha))


def test_fitting_moves_the_budget_to_the_channels_the_tail_reads(shapes_data, tmp_path):
    # The shipped tail was trained under evenly spread noise, so even noise is already close to
    # its best. Make half of the activation's channels useless to the tail: fitted noise must
    # then spend the leakage budget on the other half and cost less task loss than even noise.
    model = TASK.load_model()
    with torch.no_grad():
        model.tail.conv5.weight[:, 32:] = 0
    untrained = fit(model, shapes_data, alpha=0.99, epochs=0)
    trained = fit(model, shapes_data, alpha=0.99, epochs=4, lr=0.05)  # 20 steps: a larger one

    def bits(obf):
        return torch.log2(1 + obf.signal_std_ ** 2 / obf.noise_scale_ ** 2)

    assert torch.allclose(bits(untrained)[:32].mean(), bits(untrained)[32:].mean(), rtol=1e-3)
    assert float(bits(trained)[:32].mean()) > 1.5 * float(bits(trained)[32:].mean())

    def loss(obf, name):
        obf.save(tmp_path / name)  # reloaded with one seed: both see the same unit draws
        obf = Obfuscator.load(tmp_path / name, random_state=11)
        total = 0.0
        with torch.no_grad():
            for _ in range(5):
                for x, y in TASK.loader(shapes_data, TASK.splits["fit"], 240):
                    out = model.forward_tail(obf.transform(model.forward_head(x)))
                    total += float(TASK.task_loss(out, y))
        return total

    assert trained.loss_history_[-1] < trained.loss_history_[0]
    assert loss(trained, "trained") < 0.97 * loss(untrained, "untrained")


def test_fit_leaves_the_model_as_it_was(model, shapes_data):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    fit(model, shapes_data, alpha=0.6, epochs=1)
    assert model.training
    model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_variable_spatial_sizes_share_the_per_channel_noise(model, shapes_data):
    obf = fit(model, shapes_data, alpha=0.8, epochs=0)
    for h, w in ((8, 8), (40, 24), (270, 480)):
        a = torch.rand(1, 64, h, w)
        assert obf.transform(a).shape == a.shape


@pytest.mark.parametrize("bad,message", [
    (torch.rand(2, 16, 8, 8), r"expected \(N, 64, \*, \*\)"),
    (torch.rand(2, 64, 8), r"does not fit this obfuscator"),
    (torch.rand(2, 64, 8, 8, dtype=torch.float64), "dtype float64 does not match"),
    ([1.0, 2.0], "must be a torch.Tensor"),
])
def test_transform_refuses_activations_it_was_not_fitted_for(model, shapes_data, bad, message):
    obf = fit(model, shapes_data, alpha=0.5, epochs=0)
    with pytest.raises(InvalidArgument, match=message):
        obf.transform(bad)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5, float("nan"), "high"])
def test_alpha_out_of_range_is_refused(alpha):
    with pytest.raises(InvalidArgument, match="ALPHA must be"):
        Obfuscator(alpha)


def test_unknown_distribution_is_refused():
    with pytest.raises(InvalidArgument, match="distribution must be one of gaussian, laplace"):
        Obfuscator(0.5, "uniform")


def test_an_empty_loader_is_refused(model):
    with pytest.raises(InvalidArgument, match="no batches"):
        Obfuscator(0.5).fit(model, [], TASK.task_loss)


def test_transform_before_fit_is_refused():
    with pytest.raises(InvalidArgument, match="not fitted"):
        Obfuscator(0.5).transform(torch.rand(1, 64, 4, 4))


# ---------------------------------------------------------------------- persistence
def test_save_load_round_trips_exactly(model, shapes_data, tmp_path):
    obf = fit(model, shapes_data, alpha=0.8, epochs=1, random_state=7)
    obf.save(tmp_path / "obf")
    cfg = json.loads((tmp_path / "obf" / "config.json").read_text())
    assert cfg["model"] == model.identity
    assert cfg["activation"] == {"shape": [64, 8, 8], "dtype": "float32",
                                 "parameterization": "per-channel (any spatial size)"}
    back = Obfuscator.load(tmp_path / "obf", model)
    for name in ("noise_mean_", "noise_scale_", "signal_std_", "signal_mean_", "logits_"):
        assert torch.equal(getattr(back, name), getattr(obf, name))
    assert {**back.get_params(), "random_state": 7} == obf.get_params()
    assert back.loss_history_ == obf.loss_history_
    assert "random_state" not in cfg["params"]  # a saved seed would let anyone replay the noise
    a = model.forward_head(torch.rand(3, 3, 32, 32))
    fresh = Obfuscator.load(tmp_path / "obf", random_state=7)  # replay only when asked
    again = Obfuscator.load(tmp_path / "obf", random_state=7)
    assert torch.equal(fresh.transform(a), again.transform(a))
    assert not torch.equal(Obfuscator.load(tmp_path / "obf").transform(a),
                           Obfuscator.load(tmp_path / "obf").transform(a))


def test_save_replaces_an_earlier_save(model, shapes_data, tmp_path):
    fit(model, shapes_data, alpha=0.4, epochs=0).save(tmp_path / "o")
    fit(model, shapes_data, alpha=0.6, epochs=0).save(tmp_path / "o")
    assert Obfuscator.load(tmp_path / "o").alpha == 0.6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_loading_against_another_model_or_layer_fails_clearly(model, shapes_data, tmp_path):
    fit(model, shapes_data, alpha=0.5, epochs=0).save(tmp_path / "o")
    other = split_at(shapes_cnn(), "relu4", name="shapes-cnn")
    with pytest.raises(IncompatibleObfuscator, match="fitted for model 'shapes-cnn' split at "
                                                     "'relu4' \\(fingerprint"):
        Obfuscator.load(tmp_path / "o", other)
    net = shapes_cnn()
    net.load_state_dict(torch.load(SHAPES_WEIGHTS, weights_only=True))
    with pytest.raises(IncompatibleObfuscator, match="not for model 'shapes-cnn' split at 'relu3'"):
        Obfuscator.load(tmp_path / "o", split_at(net, "relu3", name="shapes-cnn"))


def test_loading_a_damaged_save_fails_clearly(tmp_path):
    with pytest.raises(NotFound, match="no saved obfuscator"):
        Obfuscator.load(tmp_path / "missing")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{not json")
    (tmp_path / "d" / "tensors.pt").write_bytes(b"junk")
    with pytest.raises(InvalidArgument, match=r"config\.json, line 1: not valid JSON"):
        Obfuscator.load(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text("[1, 2]")
    with pytest.raises(InvalidArgument, match="not a saved obfuscator of format"):
        Obfuscator.load(tmp_path / "d")


def test_loading_damaged_tensors_fails_clearly(model, shapes_data, tmp_path):
    fit(model, shapes_data, alpha=0.5, epochs=0).save(tmp_path / "o")
    (tmp_path / "o" / "tensors.pt").write_bytes(b"junk" * 10)
    with pytest.raises(InvalidArgument, match=r"tensors\.pt: not a file written by torch\.save"):
        Obfuscator.load(tmp_path / "o")
    fit(model, shapes_data, alpha=0.5, epochs=0).save(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    del cfg["activation"]
    (tmp_path / "p" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidArgument, match=r"config\.json: activation is missing"):
        Obfuscator.load(tmp_path / "p")


# ---------------------------------------------------------------------- leakage measures
def test_ssim_and_psnr_match_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours_s, ours_p = ssim(x, y), psnr(x, y)
    for i in range(3):
        a, b = x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy()
        ref = metrics.structural_similarity(a, b, data_range=1, channel_axis=2,
                                            gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False)
        assert float(ours_s[i]) == pytest.approx(float(ref), abs=1e-4)
        assert float(ours_p[i]) == pytest.approx(metrics.peak_signal_noise_ratio(a, b,
                                                                                 data_range=1),
                                                 abs=1e-3)
    assert float(ssim(x, x).min()) == pytest.approx(1.0, abs=1e-5)


def test_information_bound_is_the_gaussian_channel_capacity():
    s, v = torch.tensor([4.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])
    g = information_bound(s, v, "gaussian")
    assert g.tolist() == pytest.approx([0.5 * math.log2(5), 0.5, 0.0])
    lap = information_bound(s, v, "laplace")
    assert (lap - g)[:2].tolist() == pytest.approx([0.5 * math.log2(math.pi / math.e)] * 2)
    assert float(lap[2]) == 0.0  # a constant leaks nothing
    lap8 = information_bound(s, v, "laplace", k=8)  # averaging never lowers the bound
    excess = 0.5 * math.log2(math.pi / math.e)
    assert float(lap8[0]) == pytest.approx(0.5 * math.log2(1 + 32) + excess)
    assert float(information_bound(s, v, "gaussian", k=8)[0]) == pytest.approx(
        0.5 * math.log2(1 + 4 * 8))


def test_reconstruction_psnr_falls_as_alpha_rises(shapes_data, tmp_path):
    progress = Recorder()
    r = attack(TASK, shapes_data, [0.5, 0.95], workdir=tmp_path, epochs=1, attack_epochs=6,
               width=48, ks=(1, 4), progress=progress)
    psnrs = [row.psnr for row in r.rows]
    assert [row.alpha for row in r.rows] == [0.0, 0.5, 0.95]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    # every row on the ladder of baselines computed from the test images (issue 17)
    assert {"mean image", "1x1 colour grid", "16x16 colour grid",
            "best guess given the class"} <= set(r.ladder)
    assert r.rows[0].gain_over_mean == pytest.approx(psnrs[0] - r.ladder["mean image"])
    assert r.rows[0].gain_over_mean > r.rows[2].gain_over_mean
    assert all(row.place for row in r.rows) and r.preset == "full"
    assert math.isinf(r.rows[0].bits_per_element)
    assert r.rows[1].bits_per_element > r.rows[2].bits_per_element > 0
    assert [a.k for a in r.averaging] == [1, 4]
    assert r.averaging[1].bits_per_element > r.averaging[0].bits_per_element
    for f in ("attack.json", "attack.png", "attack-grid.png"):
        assert (tmp_path / f).stat().st_size > 1000
    saved = json.loads((tmp_path / "attack.json").read_text())
    assert saved["rows"][0]["bits_per_element"] is None  # infinite: clean
    # two obfuscators fitted for one epoch each (a measuring pass and an epoch, 4 batches of
    # 128 each), the head over the attack and test splits (batches of 256), then four decoders
    # (clean, 0.5, 0.95, k=4) of 6 epochs and a scoring each
    assert progress.phases == [(8, 8), (8, 8), (2, 2), (1, 1), (4 * 7, 4 * 7)]
    assert progress.names == ["fitting noise (ALPHA 0.5)", "fitting noise (ALPHA 0.95)",
                              "activations of the attack split: running the head",
                              "activations of the test split: running the head",
                              "training inversion decoders"]


def test_evaluate_reuses_fitted_obfuscators_and_writes_the_table(shapes_data, tmp_path):
    progress = Recorder()
    r = evaluate(TASK, shapes_data, [0.2, 0.97], workdir=tmp_path, epochs=1, draws=3,
                 progress=progress)
    # each fitting, then each scoring (one batch of 240 test images), shown as it runs
    assert progress.names == ["fitting noise (ALPHA 0.2)", "fitting noise (ALPHA 0.97)",
                              "scoring clean: predicting",
                              *[f"scoring ALPHA {a}, draw {d}/3: predicting"
                                for a in (0.2, 0.97) for d in (1, 2, 3)]]
    assert all(done == total for total, done in progress.phases)
    assert [row.alpha for row in r.rows] == [None, 0.2, 0.97]
    # three scored draws per ALPHA, their spread their standard deviation (it may be 0 when the
    # model is robust enough that every draw scores alike; fresh noise is tested above)
    assert r.draws == 3 and r.rows[0].spread == 0.0 and len(r.rows[2].values) == 3
    assert r.rows[2].spread == pytest.approx(statistics.stdev(r.rows[2].values))
    assert r.clean > 0.9
    assert r.rows[1].value >= r.rows[2].value - 0.05
    saved = tmp_path / "obfuscators" / "gaussian-alpha-0.97" / "config.json"
    stamp = saved.stat().st_mtime_ns
    again = evaluate(TASK, shapes_data, [0.97], workdir=tmp_path, epochs=1)
    assert saved.stat().st_mtime_ns == stamp
    refits = []
    evaluate(TASK, shapes_data, [0.97], workdir=tmp_path, epochs=2, log=refits.append)
    assert saved.stat().st_mtime_ns != stamp and "fitted for 1 epochs" in refits[0]
    assert again.clean == r.clean
    assert json.loads((tmp_path / "evaluate.json").read_text())["metric"] == "accuracy"


def test_the_attack_decoder_inverts_clean_activations_better_than_a_guess(model, shapes_data):
    pairs = _attack.collect(model.forward_head, TASK.images(shapes_data, "attack"), "cpu")
    test = _attack.collect(model.forward_head, TASK.images(shapes_data, "test"), "cpu")
    dec = _attack.train_decoder(pairs, None, epochs=6, width=48)
    p, s = _attack.score(_attack.reconstruct(dec, test, None), test.images)
    guess = test.images.mean(0, keepdim=True).expand_as(test.images)  # the average image
    assert p > float(psnr(guess, test.images).mean()) + 0.5
    assert s > float(ssim(guess, test.images).mean()) + 0.05


# ---------------------------------------------------------------------- training under noise
def _light(seed=0):
    torch.manual_seed(seed)
    return split_at(shapes_cnn(tail="light"), "relu4", name="light")


def test_training_under_noise_with_a_frozen_head_changes_only_the_tail(shapes_data):
    model = _light()
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    tail = {k: v.clone() for k, v in model.tail.state_dict().items()}
    batches = TASK.loader(shapes_data, TASK.splits["fit"], 96, True)
    progress, lines, seen = Recorder(), [], []

    def validate(m):
        seen.append(m.training)
        return 0.5

    losses = train_under_noise(model, batches, TASK.task_loss, epochs=2, lr=1e-2,
                               validate=validate, progress=progress, log=lines.append)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    # the head, batch-norm statistics included, is what it was: what an attacker inverts
    assert all(torch.equal(head[k], v) for k, v in model.head.state_dict().items())
    assert not all(torch.equal(tail[k], v) for k, v in model.tail.state_dict().items())
    assert progress.phases == [(2 * len(batches), 2 * len(batches))]
    assert lines[0].startswith("epoch 1/2  loss ") and "validation 0.5000" in lines[1]
    assert seen == [False, False] and not model.training


def test_training_noise_has_random_strength_on_a_share_of_the_samples():
    # head: a fixed 1x1 convolution; tail: one that sees (and records) the noisy activation
    model = SplitModel(nn.Conv2d(3, 4, 1), nn.Sequential(
        nn.Conv2d(4, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    x = torch.rand(64, 3, 16, 16)
    with torch.no_grad():
        clean = model.forward_head(x)
    sent = []
    model.tail.register_forward_pre_hook(lambda _m, args: sent.append(args[0].detach()))
    batches = [(x, torch.zeros(64, dtype=torch.long))]
    train_under_noise(model, batches, nn.functional.cross_entropy, epochs=1, noise_max=5.0,
                      noisy_share=0.5, channel_std=torch.ones(4), lr=1e-6)
    strength = (sent[0] - clean).flatten(1).std(1)  # r per sample: unit noise times r
    untouched = strength == 0
    assert 10 < int(untouched.sum()) < 54  # about half the samples, drawn at random
    assert float(strength.max()) < 5.0 * 1.15 and float(strength[~untouched].min()) < 2.5
    sent.clear()
    train_under_noise(model, batches, nn.functional.cross_entropy, epochs=1, noisy_share=0.0)
    assert torch.allclose(sent[0], model.forward_head(x))


def test_training_under_noise_needs_batches_it_can_plan_over():
    model = _light()
    batches = [(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(InvalidArgument, match="have a length"):
        train_under_noise(model, iter(batches), TASK.task_loss, epochs=1)
    with pytest.raises(InvalidArgument, match="distribution must be one of"):
        train_under_noise(model, batches, TASK.task_loss, epochs=1, distribution="cauchy")
    with pytest.raises(InvalidArgument, match="no batches"):
        train_under_noise(model, [], TASK.task_loss, epochs=1)


# ---------------------------------------------------------------------- tasks
def test_the_fit_split_is_named_fit_in_sizes_and_unknown_splits_are_refused(tmp_path):
    assert set(TASK.sizes) == {"fit", "attack", "test"} and TASK.splits["fit"] == "train"
    with pytest.raises(InvalidArgument, match="unknown split"):
        TASK.generate(tmp_path / "d", sizes={"train": 8})
    assert not (tmp_path / "d").exists()


def test_a_solution_registered_under_veil_solutions_can_add_a_task_provider(tmp_path,
                                                                           monkeypatch):
    from veil.privacy import _tasks

    monkeypatch.setattr(_tasks, "_PROVIDERS", list(_tasks._PROVIDERS))
    monkeypatch.setattr(_tasks, "_TASKS", dict(_tasks._TASKS))
    (tmp_path / "veil_test_solution.py").write_text(
        "import veil.privacy\nveil.privacy.add_provider('veil_test_solution_task')\n")
    (tmp_path / "veil_test_solution_task.py").write_text(
        "import dataclasses\nimport veil.privacy\nfrom veil.privacy._shapes import TASK\n"
        "veil.privacy.register_task(dataclasses.replace(TASK, name='from-a-solution'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points
    solutions = [importlib.metadata.EntryPoint("test", "veil_test_solution:SOLUTION",
                                               "veil.solutions")]

    def entry_points(*, group):
        return solutions if group == "veil.solutions" else real(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "from-a-solution" in [t.name for t in veil.privacy.list_tasks()]
    assert get_task("faces").metric == "mAP"  # the veil.privacy.tasks entry point still counts
    solutions.append(importlib.metadata.EntryPoint("broken", "veil_no_such_module:X",
                                                   "veil.solutions"))
    with pytest.raises(ModuleNotFoundError, match="veil_no_such_module"):
        get_task("shapes")


def test_the_public_surface_is_what_all_names():
    assert all(not name.startswith("_") for name in veil.privacy.__all__)
    assert all(hasattr(veil.privacy, name) for name in veil.privacy.__all__)
    for name in ("add_provider", "check_alpha", "check_device", "default_workdir",
                 "obfuscator_path", "obfuscators", "train_under_noise"):
        assert name in veil.privacy.__all__
