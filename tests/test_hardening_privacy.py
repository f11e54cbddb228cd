"""Issue 15, confidential inference: a damaged or edited saved obfuscator is refused in one line
naming the file (item 7), and every bad value given to `veil privacy ...` is refused before any
work, with nothing written (item 9).

One tiny obfuscator is fitted per module; each damage is applied to a copy of it. The command
line runs in-process (tests/badinput.py); benchmarks/reliability_privacy.py runs the same two
tables as real `veil` processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.badinput import home_state, refused
from veil.errors import InvalidArgument
from veil.privacy import Obfuscator, SplitModel, fit_one, get_task, train_under_noise
from veil.privacy._obfuscator import _sha256

TASK = get_task("shapes")
SIZES = {"fit": 16, "attack": 8, "test": 8}


# ---------------------------------------------------------------------- damages
def _tensors(edit, *, rehash: bool = True):
    """A damage that edits tensors.pt with `edit(tensors)` (in place, or returning what to save
    instead); with `rehash`, config.json's checksum is updated too, as a careful editor would."""

    def damage(d: Path) -> None:
        t = torch.load(d / "tensors.pt", weights_only=True)
        out = edit(t)
        torch.save(t if out is None else out, d / "tensors.pt")
        if rehash:
            _config(lambda c: c.update(tensors_sha256=_sha256(d / "tensors.pt")))(d)

    return damage


def _config(edit):
    """A damage that edits config.json with `edit(config)` (in place)."""

    def damage(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))

    return damage


def _write(name: str, content: bytes):
    def damage(d: Path) -> None:
        (d / name).write_bytes(content)

    return damage


def _remove(name: str):
    def damage(d: Path) -> None:
        (d / name).unlink()

    return damage


def _scaled(name: str, factor: float):
    return lambda t: t.update({name: t[name] * factor})


def _set(name: str, channel: int, value: float):
    def edit(t):
        t[name][channel] = value

    return edit


def _truncate(d: Path) -> None:
    data = (d / "tensors.pt").read_bytes()
    (d / "tensors.pt").write_bytes(data[:len(data) // 2])


def _corrupt_zip(d: Path) -> None:
    import zipfile

    with zipfile.ZipFile(d / "tensors.pt", "w") as z:
        z.writestr("tensors/data.pkl", b"\x80\x02garbage")
        z.writestr("tensors/version", "3\n")


def _huge(name: str, size: int):
    def damage(d: Path) -> None:
        with open(d / name, "wb") as f:
            f.truncate(size)  # sparse: costs no disk

    return damage


def _also_weaker_signal(t):
    """Halve the recorded signal and the noise together: consistent numbers, weaker noise."""
    t.update(signal_std=t["signal_std"] * 0.5, noise_scale=t["noise_scale"] * 0.5,
             noise_mean=t["noise_mean"] * 0.5)


class _Code:
    """Pickles as a call to os.system: what a booby-trapped tensors.pt holds."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _code(d: Path) -> None:
    torch.save({"noise_scale": _Code(str(d / "code-ran"))}, d / "tensors.pt")


def _other_class(d: Path) -> None:
    import argparse

    torch.save(argparse.Namespace(noise_scale=1.0), d / "tensors.pt")


def _symlink_to(target: str):
    def damage(d: Path) -> None:
        (d / "tensors.pt").unlink()
        (d / "tensors.pt").symlink_to(target)

    return damage


def _deep_json(d: Path) -> None:
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)


def _pop(*keys: str):
    def edit(cfg):
        obj = cfg
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]

    return edit


def _put(*keys: str, value):
    def edit(cfg):
        obj = cfg
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value

    return edit


NAN, INF = float("nan"), float("inf")
# (id, damage, what the one line says, exit code)
DAMAGES = [
    # tensors.pt: values
    ("noise_scale zero", _tensors(_scaled("noise_scale", 0.0)), "noise_scale is 0 in channel 0", 2),
    ("noise_scale negative", _tensors(_scaled("noise_scale", -1.0)), "noise_scale must be >= 0",
     2),
    ("noise_scale nan", _tensors(_scaled("noise_scale", NAN)), "noise_scale must be finite", 2),
    ("noise_scale inf in one channel", _tensors(_set("noise_scale", 5, INF)),
     "noise_scale must be finite, but is inf in channel 5", 2),
    ("noise_scale halved", _tensors(_scaled("noise_scale", 0.5)),
     "the file was changed after fitting", 2),
    ("noise_scale one channel zero", _tensors(_set("noise_scale", 63, 0.0)),
     "noise_scale is 0 in channel 63", 2),
    ("noise_mean nan", _tensors(_set("noise_mean", 0, NAN)), "noise_mean must be finite", 2),
    ("noise_mean shifted", _tensors(lambda t: t.update(noise_mean=t["noise_mean"] + 1.0)),
     "noise_mean is", 2),
    ("signal_std zero", _tensors(_set("signal_std", 2, 0.0)), "signal_std must be > 0", 2),
    ("signal_std negative", _tensors(_scaled("signal_std", -1.0)), "signal_std must be > 0", 2),
    ("signal_std nan", _tensors(_set("signal_std", 1, NAN)), "signal_std must be finite", 2),
    ("signal_mean inf", _tensors(_set("signal_mean", 0, -INF)), "signal_mean must be finite", 2),
    ("logits nan", _tensors(_set("logits", 3, NAN)), "logits must be finite", 2),
    ("mean_logits inf", _tensors(_set("mean_logits", 3, INF)), "mean_logits must be finite", 2),
    ("weaker signal, checksum kept", _tensors(_also_weaker_signal, rehash=False),
     "differs from tensors_sha256", 2),
    # tensors.pt: structure
    ("float64 tensors", _tensors(lambda t: {k: v.double() for k, v in t.items()}),
     "must be float32 with one value per channel (64,), not float64", 2),
    ("32 channels", _tensors(lambda t: {k: v[:32].clone() for k, v in t.items()}),
     "one value per channel (64,)", 2),
    ("2-d noise_scale", _tensors(lambda t: t.update(noise_scale=t["noise_scale"].view(8, 8))),
     "noise_scale must be float32 with one value per channel", 2),
    ("noise_scale an int", _tensors(lambda t: t.update(noise_scale=3)), "not int", 2),
    ("noise_scale missing", _tensors(lambda t: t.__delitem__("noise_scale")),
     "not the tensors", 2),
    ("an extra tensor", _tensors(lambda t: t.update(seed=torch.zeros(1))), "not the tensors", 2),
    ("a list, not a dict", _tensors(lambda t: list(t.values())), "holds list", 2),
    ("a pickle with code", _code, "refused to load: it holds posix.system, which is not a tensor",
     2),
    ("a pickle of another class", _other_class, "holds argparse.Namespace", 2),
    ("text, not torch", _write("tensors.pt", b"hello\n"), "not a file written by torch.save", 2),
    ("empty tensors.pt", _write("tensors.pt", b""), "not a file written by torch.save", 2),
    ("truncated tensors.pt", _truncate, "not a file written by torch.save", 2),
    ("damaged zip", _corrupt_zip, "not readable by torch.load (Unsupported operand", 2),
    ("300 MB tensors.pt", _huge("tensors.pt", 300 << 20), "more than a saved obfuscator can be", 2),
    ("tensors.pt missing", _remove("tensors.pt"), "tensors.pt missing", 1),
    ("tensors.pt a device", _symlink_to("/dev/zero"), "tensors.pt missing", 1),
    # config.json
    ("config.json missing", _remove("config.json"), "config.json missing", 1),
    ("config not JSON", _write("config.json", b'{"format": \n  oops}'),
     "config.json, line 2: not valid JSON", 2),
    ("config not UTF-8", _write("config.json", b"\xff\xfe{}"), "not UTF-8", 2),
    ("config a list", _write("config.json", b"[1, 2]"), "not a saved obfuscator of format", 2),
    ("config nested 100000 deep", _deep_json, "nested too deeply", 2),
    ("config of 2 MB", _huge("config.json", 2 << 20), "more than a saved obfuscator can be", 2),
    ("format from the future", _config(_put("format", value="veil.obfuscator/9")),
     "not a saved obfuscator of format", 2),
    ("ALPHA lowered", _config(_put("params", "alpha", value=0.5)), "ALPHA 0.5", 2),
    ("ALPHA lowered, budget too", _config(lambda c: c.update(
        params={**c["params"], "alpha": 0.5}, budget_bits_per_element=0.5)),
     "the file was changed after fitting", 2),
    ("ALPHA 0 (clean) claimed", _config(lambda c: c.update(
        params={**c["params"], "alpha": 0.0}, budget_bits_per_element=None,
        fit={"loss_history": []})), "must be 0 at ALPHA 0", 2),
    ("ALPHA 5", _config(_put("params", "alpha", value=5)), "ALPHA must be in [0, 0.999]", 2),
    ("ALPHA nan", _config(_put("params", "alpha", value=NAN)), "ALPHA must be in [0, 0.999]", 2),
    ("ALPHA a string", _config(_put("params", "alpha", value="high")), "ALPHA must be a number",
     2),
    ("ALPHA true", _config(_put("params", "alpha", value=True)), "ALPHA must be a number", 2),
    ("lr infinite", _config(_put("params", "lr", value=INF)), "lr must be a finite number", 2),
    ("min_share 0", _config(_put("params", "min_share", value=0)), "min_share must be", 2),
    ("min_share changed", _config(_put("params", "min_share", value=0.5)),
     "the file was changed after fitting", 2),
    ("max_mean negative", _config(_put("params", "max_mean", value=-1)), "max_mean must be", 2),
    ("epochs 2.5", _config(_put("params", "epochs", value=2.5)), "epochs must be a whole number",
     2),
    ("distribution cauchy", _config(_put("params", "distribution", value="cauchy")),
     "distribution must be one of", 2),
    ("an unknown param", _config(_put("params", "random_state", value=1)),
     "unknown params random_state", 2),
    ("ALPHA missing", _config(_pop("params", "alpha")), "params.alpha is missing", 2),
    ("params a list", _config(_put("params", value=[0.8])), "params has the wrong type", 2),
    ("another model's fingerprint", _config(_put("model", "fingerprint", value="0" * 16)),
     "noise parameters fitted for model 'shapes-cnn'", 2),
    ("fingerprint not hex", _config(_put("model", "fingerprint", value="xyz")),
     "16 hex digits", 2),
    ("model name a number", _config(_put("model", "name", value=7)),
     "model.name has the wrong type", 2),
    ("activation shape negative", _config(_put("activation", "shape", value=[64, -8, 8])),
     "activation.shape must be", 2),
    ("activation shape empty", _config(_put("activation", "shape", value=[])),
     "activation.shape must be", 2),
    ("activation of 32 channels", _config(_put("activation", "shape", value=[32, 8, 8])),
     "one value per channel (32,)", 2),
    ("activation dtype not a dtype", _config(_put("activation", "dtype", value="load")),
     "activation.dtype must be one of", 2),
    ("activation dtype float64", _config(_put("activation", "dtype", value="float64")),
     "does not match the fitted float64", 2),
    ("activation missing", _config(_pop("activation")), "activation is missing", 2),
    ("loss history nan", _config(_put("fit", "loss_history", value=[NAN])),
     "fit.loss_history must hold finite numbers", 2),
    ("loss history too long", _config(_put("fit", "loss_history", value=[1.0, 2.0])),
     "fit.loss_history has 2 values", 2),
    ("budget edited", _config(_put("budget_bits_per_element", value=3.0)),
     "budget_bits_per_element is 3.0", 2),
    ("checksum not hex", _config(_put("tensors_sha256", value="abc")), "64 hex digits", 2),
    ("checksum of another file", _config(_put("tensors_sha256", value="0" * 64)),
     "differs from tensors_sha256", 2),
]


# ---------------------------------------------------------------------- bad values
LOTS = ",".join(f"0.{i:03d}" for i in range(1, 102))
CASES = [
    # generate
    (["generate", "{new}", "--fit", "0"], "split fit needs at least one image", 2),
    (["generate", "{new}", "--attack", "-5"], "split attack needs at least one image", 2),
    (["generate", "{new}", "--test", "1000000"], "in [1, 100000], not 1000000", 2),
    (["generate", "{new}", "--fit", "9" * 30], "in [1, 100000]", 2),
    (["generate", "{new}", "--seed", "-1"], "seed must be a whole number >= 0", 2),
    (["generate", "{data}"], "is not empty", 2),
    (["generate", "{new}", "--task", "nope"], "no privacy task 'nope'", 1),
    (["generate", "{new}", "--task", "faces", "--fit", "5"], "multiple of 10", 2),
    # fit
    (["fit", "--data", "{data}", "--alpha", "1.5"], "ALPHA must be in [0, 0.999]", 2),
    (["fit", "--data", "{data}", "--alpha", "-0.1"], "ALPHA must be in [0, 0.999]", 2),
    (["fit", "--data", "{data}", "--alpha", "1"], "ALPHA must be in [0, 0.999]", 2),
    (["fit", "--data", "{data}", "--alpha", "0.9995"], "ALPHA must be in [0, 0.999]", 2),
    (["fit", "--data", "{data}", "--alpha", "nan"], "ALPHA must be in [0, 0.999]", 2),
    (["fit", "--data", "{data}", "--alpha", "inf"], "ALPHA must be in [0, 0.999]", 2),
    (["fit", "--data", "{data}", "--epochs", "-1"], "epochs must be a whole number in [0, 1000]",
     2),
    (["fit", "--data", "{data}", "--epochs", "1000000"], "epochs must be a whole number", 2),
    (["fit", "--data", "{data}", "--distribution", "cauchy"], "distribution must be one of", 2),
    (["fit", "--data", "{data}", "--device", "bogus"], "unknown device 'bogus'", 2),
    (["fit", "--data", "{data}", "--out", "{file}"], "exists and is not a saved obfuscator", 2),
    (["fit", "--data", "{data}", "--out", "{data}"], "exists and is not a saved obfuscator", 2),
    (["fit", "--data", "{missing}"], "no split 'train'", 1),
    (["fit", "--data", "{data}", "--task", "nope"], "no privacy task 'nope'", 1),
    # evaluate
    (["evaluate", "--data", "{data}", "--alphas", "5,-1"], "ALPHA must be in [0, 0.999]", 2),
    (["evaluate", "--data", "{data}", "--alphas", "-0.5"], "ALPHA must be in [0, 0.999]", 2),
    (["evaluate", "--data", "{data}", "--alphas", "nan"], "ALPHA must be in [0, 0.999]", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0.5,inf"], "ALPHA must be in [0, 0.999]", 2),
    (["evaluate", "--data", "{data}", "--alphas", "1"], "ALPHA must be in [0, 0.999]", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0.5,x"], "ALPHA must be a number", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0.5,0.5"], "ALPHA 0.5 is given twice", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0.5,0.50"], "ALPHA 0.5 is given twice", 2),
    (["evaluate", "--data", "{data}", "--alphas", ""], "no ALPHA values given", 2),
    (["evaluate", "--data", "{data}", "--alphas", " "], "no ALPHA values given", 2),
    (["evaluate", "--data", "{data}", "--alphas", ","], "an empty ALPHA", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0.5,,0.6"], "an empty ALPHA", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0"], "clean baseline", 2),
    (["evaluate", "--data", "{data}", "--alphas", "1e-400"], "clean baseline", 2),
    (["evaluate", "--data", "{data}", "--alphas", LOTS], "more than 100 ALPHAs", 2),
    (["evaluate", "--data", "{data}", "--draws", "0"], "draws must be a whole number in [1,", 2),
    (["evaluate", "--data", "{data}", "--draws", "-3"], "draws must be", 2),
    (["evaluate", "--data", "{data}", "--draws", "1000000"], "draws must be", 2),
    (["evaluate", "--data", "{data}", "--epochs", "-1"], "epochs must be", 2),
    (["evaluate", "--data", "{data}", "--epochs", "5000"], "epochs must be", 2),
    (["evaluate", "--data", "{data}", "--distribution", "uniform"], "distribution must be", 2),
    (["evaluate", "--data", "{data}", "--obfuscator", "{obf}", "--alphas", "0.5"],
     "leave out the ALPHAs", 2),
    (["evaluate", "--data", "{data}", "--obfuscator", "{obf}", "--refit"],
     "refit applies to a sweep", 2),
    (["evaluate", "--data", "{data}", "--obfuscator", "{missing}"], "no saved obfuscator", 1),
    (["evaluate", "--data", "{data}", "--obfuscator", "{file}"], "no saved obfuscator", 1),
    (["evaluate", "--data", "{missing}", "--alphas", "0.5"], "no split 'test'", 1),
    (["evaluate", "--data", "{data}", "--alphas", "0.5", "--workdir", "{file}"],
     "exists and is not a folder", 2),
    (["evaluate", "--data", "{data}", "--alphas", "0.5", "--workdir", "{squatted}"],
     "exists and is not a saved obfuscator", 2),
    (["evaluate", "--data", "{data}", "--device", "cuda:x"], "unknown device", 2),
    # attack
    (["attack", "--data", "{data}", "--alphas", "5,-1"], "ALPHA must be in [0, 0.999]", 2),
    (["attack", "--data", "{data}", "--alphas", "0.9,0.9"], "given twice", 2),
    (["attack", "--data", "{data}", "--ks", "0"], "k (obfuscations averaged) must be", 2),
    (["attack", "--data", "{data}", "--ks", "-1"], "k (obfuscations averaged) must be", 2),
    (["attack", "--data", "{data}", "--ks", "1,1"], "k 1 is given twice", 2),
    (["attack", "--data", "{data}", "--ks", "1e3"], "ks must be whole numbers", 2),
    (["attack", "--data", "{data}", "--ks", "2.5"], "ks must be whole numbers", 2),
    (["attack", "--data", "{data}", "--ks", ""], "ks must be whole numbers", 2),
    (["attack", "--data", "{data}", "--ks", "1,many"], "ks must be whole numbers", 2),
    (["attack", "--data", "{data}", "--ks", "100000"], "in [1, 1024]", 2),
    (["attack", "--data", "{data}", "--alphas", "0.5", "--averaging-alpha", "nan"],
     "ALPHA must be in", 2),
    (["attack", "--data", "{data}", "--alphas", "0.5", "--averaging-alpha", "2"],
     "ALPHA must be in", 2),
    (["attack", "--data", "{data}", "--alphas", "0.5", "--averaging-alpha", "0.7"],
     "not in the sweep", 2),
    (["attack", "--data", "{data}", "--attack-epochs", "0"], "attack_epochs must be", 2),
    (["attack", "--data", "{data}", "--attack-epochs", "-4"], "attack_epochs must be", 2),
    (["attack", "--data", "{data}", "--attack-epochs", "100000"], "attack_epochs must be", 2),
    (["attack", "--data", "{data}", "--width", "0"], "width must be a whole number in [1, 1024]",
     2),
    (["attack", "--data", "{data}", "--width", "-5"], "width must be", 2),
    (["attack", "--data", "{data}", "--width", "100000"], "width must be", 2),
    (["attack", "--data", "{data}", "--epochs", "-2"], "epochs must be", 2),
    (["attack", "--data", "{missing}", "--alphas", "0.5"], "no split 'attack'", 1),
    # bench
    (["bench", "--alpha", "nan"], "ALPHA must be in", 2),
    (["bench", "--alpha", "2"], "ALPHA must be in", 2),
    (["bench", "--obfuscator", "{obf}", "--repeats", "0"], "repeats must be", 2),
    (["bench", "--obfuscator", "{obf}", "--repeats", "-1"], "repeats must be", 2),
    (["bench", "--obfuscator", "{obf}", "--repeats", "10000000"], "repeats must be", 2),
    (["bench", "--obfuscator", "{obf}", "--obf-repeats", "0"], "obf_repeats must be", 2),
    (["bench", "--obfuscator", "{obf}", "--obf-repeats", "100000000"], "obf_repeats must be",
     2),
    (["bench", "--obfuscator", "{missing}"], "no saved obfuscator", 1),
    (["bench", "--alpha", "0.3", "--workdir", "{missing}"], "no fitted obfuscator", 1),
    (["bench", "--obfuscator", "{obf}", "--device", "bogus"], "unknown device", 2),
]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def area(tmp_path_factory) -> Path:
    """A data set, one fitted obfuscator, a file and a squatted work folder, made once."""
    root = tmp_path_factory.mktemp("privacy-area")
    TASK.generate(root / "data", seed=1, sizes=SIZES)
    model = TASK.load_model()
    fit_one(TASK, root / "data", 0.8, model=model, epochs=1, batch_size=8, random_state=0,
            out=root / "obf")
    (root / "file").write_text("not a folder\n")
    (root / "squatted" / "obfuscators").mkdir(parents=True)
    (root / "squatted" / "obfuscators" / "gaussian-alpha-0.5").write_text("mine\n")
    return root


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A veil home that does not exist: no privacy command may create it. The test runs in its
    own folder, so a default work folder written by mistake would show."""
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def _places(area: Path, tmp_path: Path) -> dict[str, str]:
    return {"data": str(area / "data"), "obf": str(area / "obf"), "file": str(area / "file"),
            "squatted": str(area / "squatted"), "missing": str(tmp_path / "missing"),
            "new": str(tmp_path / "new")}


def damaged(area: Path, where: Path, damage) -> Path:
    bad = where / "bad"
    shutil.copytree(area / "obf", bad)
    damage(bad)
    return bad


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize(("argv", "match", "code"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_privacy_values_are_refused_before_any_work(capsys, home, area, tmp_path, argv, match,
                                                        code):
    subs = _places(area, tmp_path)
    refused(capsys, ["privacy", *[a.format(**subs) for a in argv]], match, home=home, code=code,
            also=lambda: (home_state(area), home_state(tmp_path)))


# `bench` loads a saved obfuscator as `evaluate` does: a few damages there by default, all of them
# in the slow run (the float64 case times a 1080p head before its activation is refused).
IN_BENCH = ("noise_scale zero", "a pickle with code", "another model's fingerprint")
COMMANDS = [pytest.param("evaluate", d, id=f"evaluate-{d[0]}") for d in DAMAGES] + [
    pytest.param("bench", d, id=f"bench-{d[0]}",
                 marks=() if d[0] in IN_BENCH else pytest.mark.slow) for d in DAMAGES]


@pytest.mark.parametrize(("command", "case"), COMMANDS)
def test_a_damaged_obfuscator_is_refused_in_one_line_naming_the_file(
        capsys, home, area, tmp_path, command, case):
    _, damage, match, code = case
    bad = damaged(area, tmp_path, damage)
    argv = ["privacy", command, "--obfuscator", str(bad)]
    if command == "evaluate":
        argv += ["--data", str(area / "data")]
    line = refused(capsys, argv, match, home=home, code=code,
                   also=lambda: (home_state(area), home_state(tmp_path)))
    assert str(bad) in line  # names the folder, and the file where one is at fault
    assert not (bad / "code-ran").exists()


def test_every_fitted_obfuscator_passes_the_checks_it_is_loaded_with(area, tmp_path):
    """No false alarms: fitted at the extremes of ALPHA, both distributions, fitted or not."""
    model = TASK.load_model()
    data = area / "data"
    for alpha, distribution, epochs in [(0.0, "laplace", 1), (1e-6, "laplace", 1),
                                        (0.5, "laplace", 0), (0.999, "gaussian", 1)]:
        path = tmp_path / f"{distribution}-{alpha:g}"
        obf = fit_one(TASK, data, alpha, model=model, distribution=distribution, epochs=epochs,
                      batch_size=8, out=path)
        back = Obfuscator.load(path, model)
        assert path.stat().st_mode & 0o777 == 0o700  # only its owner can change it (docs)
        assert torch.equal(back.noise_scale_, obf.noise_scale_)
        assert torch.equal(back.noise_mean_, obf.noise_mean_)
    # a save written before the checksum was recorded still loads
    _config(_pop("tensors_sha256"))(tmp_path / "laplace-0.5")
    assert Obfuscator.load(tmp_path / "laplace-0.5", model).alpha == 0.5


def test_the_audits_repro_no_longer_reports_clean_accuracy_at_alpha_0_8(capsys, home, area,
                                                                         tmp_path):
    """Item 7: noise_scale zeroed in tensors.pt used to evaluate as ALPHA 0.8 at 100% of clean."""
    bad = damaged(area, tmp_path, _tensors(_scaled("noise_scale", 0.0), rehash=False))
    refused(capsys, ["privacy", "evaluate", "--data", str(area / "data"), "--obfuscator",
                     str(bad), "--json"], f"{bad / 'tensors.pt'}: noise_scale is 0", home=home,
            code=2)
    assert not (tmp_path / "veil-privacy-shapes").exists()


class _Broken(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x.mean((2, 3), keepdim=True).expand(-1, -1, 2, 2) * self.value


def test_fitting_that_goes_non_finite_is_refused_not_saved(tmp_path):
    batches = [(torch.rand(4, 3, 4, 4), torch.zeros(4))]
    nan_head = SplitModel(_Broken(float("nan")), nn.Flatten())
    with pytest.raises(InvalidArgument, match="activations are not finite"):
        Obfuscator(0.5, epochs=1).fit(nan_head, batches, lambda out, y: out.mean())
    model = SplitModel(_Broken(1.0), nn.Flatten())
    with pytest.raises(InvalidArgument, match="fitting diverged in epoch 1: the task loss is nan"):
        Obfuscator(0.5, epochs=1).fit(model, batches, lambda out, y: out.mean() * float("nan"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": float("inf")}, "lr must be a finite number"),
    ({"lr": 0}, "lr must be"),
    ({"max_mean": float("inf")}, "max_mean must be"),
    ({"max_mean": float("nan")}, "max_mean must be"),
    ({"min_share": float("nan")}, "min_share must be"),
    ({"min_share": 1.5}, "min_share must be"),
    ({"epochs": True}, "epochs must be a whole number"),
    ({"epochs": 3.0}, "epochs must be a whole number"),
    ({"epochs": 10**6}, "epochs must be a whole number in [0, 1000]"),
    ({"random_state": -1}, "random_state must be"),
    ({"random_state": 2**64}, "random_state must be"),
    ({"alpha": True}, "ALPHA must be a number"),
    ({"alpha": 10**400}, "ALPHA must be"),
    ({"distribution": ["laplace"]}, "distribution must be one of"),
])
def test_obfuscator_parameters_out_of_range_are_refused(kwargs, match):
    with pytest.raises(InvalidArgument, match=match.replace("[", r"\[").replace("]", r"\]")):
        Obfuscator(**{"alpha": 0.5, **kwargs})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epochs": 0}, "epochs must be"),
    ({"noise_max": float("nan")}, "noise_max must be"),
    ({"noise_max": float("inf")}, "noise_max must be"),
    ({"noisy_share": float("nan")}, "noisy_share must be"),
    ({"lr": float("nan")}, "lr must be"),
    ({"weight_decay": -1.0}, "weight_decay must be"),
    ({"pct_start": 0.0}, "pct_start must be"),
    ({"pct_start": 1.0}, "pct_start must be below 1"),
    ({"max_grad_norm": 0.0}, "max_grad_norm must be"),
    ({"seed": -1}, "seed must be"),
    ({"channel_std": torch.tensor([1.0, float("nan")])}, "channel_std must be"),
])
def test_training_under_noise_refuses_values_out_of_range(kwargs, match):
    model = SplitModel(nn.Conv2d(3, 2, 1), nn.Flatten())
    batches = [(torch.rand(2, 3, 2, 2), torch.zeros(2))]
    with pytest.raises(InvalidArgument, match=match):
        train_under_noise(model, batches, lambda out, y: out.mean(), **{"epochs": 1, **kwargs})


def test_library_counts_are_bounded_too(area, tmp_path):
    from veil.privacy import attack, bench

    with pytest.raises(InvalidArgument, match="batch_size must be"):
        fit_one(TASK, area / "data", 0.5, batch_size=0)
    with pytest.raises(InvalidArgument, match="attack_limit must be"):
        attack(TASK, area / "data", [0.5], attack_limit=0, workdir=tmp_path)
    with pytest.raises(InvalidArgument, match="grid_rows must be"):
        attack(TASK, area / "data", [0.5], grid_rows=10**6, workdir=tmp_path)
    with pytest.raises(InvalidArgument, match="the bench input must be"):
        bench(TASK, area / "obf", shape=(3, 100_000, 100_000))
    with pytest.raises(InvalidArgument, match="the bench input must be"):
        bench(TASK, area / "obf", shape=(3, 0, 4))
    assert list(tmp_path.iterdir()) == []


def test_damaged_model_weights_are_refused_in_one_line(tmp_path):
    (tmp_path / "text.pt").write_text("weights\n")
    with pytest.raises(InvalidArgument, match=r"text\.pt: not a file written by torch\.save"):
        TASK.load_model(weights=tmp_path / "text.pt")
    torch.save(_Code(str(tmp_path / "code-ran")), tmp_path / "code.pt")
    with pytest.raises(InvalidArgument, match=r"code\.pt: refused to load: it holds posix\.system"):
        TASK.load_model(weights=tmp_path / "code.pt")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InvalidArgument, match=r"other\.pt: not weights for shapes-cnn"):
        TASK.load_model(weights=tmp_path / "other.pt")
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_generate_refuses_a_data_set_the_disk_has_no_room_for(capsys, home, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        refused(capsys, ["privacy", "generate", str(small / "d"), "--fit", "400", "--attack",
                         "100", "--test", "100"], "MiB free", home=home, code=2)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
