"""`veil privacy ...` as a real process: generate, fit, evaluate, attack, bench, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

VEIL = [sys.executable, "-m", "veil", "privacy"]


def veil(*args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([*VEIL, *args], capture_output=True, text=True, timeout=280, cwd=cwd)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "shapes"
    out = veil("generate", str(path), "--seed", "5", "--fit", "240", "--attack", "160",
               "--test", "120").stdout
    assert "Wrote 520 images" in out and "(fit 240, attack 160, test 120)" in out
    return path


def test_generate_writes_the_imagefolder_layout_and_is_seeded(data, tmp_path):
    assert len(list((data / "train").glob("*/*.png"))) == 240  # shapes' fit split is train/
    assert json.loads((data / "dataset.json").read_text())["classes"][0] == "circle"
    again = tmp_path / "again"
    veil("generate", str(again), "--seed", "5", "--train", "240", "--attack", "160",  # old name
         "--test", "120")
    for f in (data / "test").glob("*/*.png"):
        assert (again / "test" / f.parent.name / f.name).read_bytes() == f.read_bytes()
    refused = veil("generate", str(data), ok=False)
    assert refused.returncode == 2 and "is not empty" in refused.stderr
    empty = veil("generate", str(tmp_path / "none"), "--test", "0", ok=False)
    assert empty.returncode == 2 and "at least one image" in empty.stderr
    assert not (tmp_path / "none").exists() and list(tmp_path.iterdir()) == [again]


@pytest.mark.slow  # 40 s; the README test runs fit, evaluate and attack
def test_fit_evaluate_attack_bench_from_the_command_line(data, tmp_path):
    wd = tmp_path / "wd"
    fit = json.loads(veil("fit", "--data", str(data), "--alpha", "0.9", "--epochs", "1",
                          "--workdir", str(wd), "--json").stdout)
    assert fit["path"] == str(wd / "obfuscators" / "gaussian-alpha-0.9")
    assert fit["activation_shape"] == [64, 8, 8] and fit["model"]["split"] == "relu4"

    table = veil("evaluate", "--data", str(data), "--alphas", "0.9,0.4", "--epochs", "1",
                 "--workdir", str(wd)).stdout
    assert "Obfuscation" in table and "No" in table and "N/A" in table
    assert " 0.4 " in table and " 0.9 " in table
    ev = json.loads((wd / "evaluate.json").read_text())
    assert [r["alpha"] for r in ev["rows"]] == [None, 0.4, 0.9]
    assert (wd / "evaluate.png").stat().st_size > 1000

    at = json.loads(veil("attack", "--data", str(data), "--alphas", "0.9", "--ks", "1,2",
                         "--attack-epochs", "1", "--workdir", str(wd), "--json").stdout)
    assert [r["alpha"] for r in at["rows"]] == [0.0, 0.9]
    assert at["rows"][0]["bits_per_element"] is None  # clean: unbounded
    assert [a["k"] for a in at["averaging"]] == [1, 2]
    assert Path(at["grid"]).stat().st_size > 1000

    bench = json.loads(veil("bench", "--alpha", "0.9", "--workdir", str(wd), "--repeats", "1",
                            "--obf-repeats", "3", "--json").stdout)
    assert bench["input_shape"] == [3, 1080, 1920]
    assert bench["activation_shape"] == [64, 270, 480]
    assert bench["activation_bytes"] == 64 * 270 * 480 * 4
    assert bench["raw_bytes"] == 1920 * 1080 * 3
    assert bench["obfuscation"]["n"] == 3 and bench["obfuscation"]["median_ms"] > 0


@pytest.mark.parametrize("args,code,message", [
    (["fit", "--data", "{data}", "--alpha", "1.5"], 2, "ALPHA must be in [0, 0.999]"),
    (["fit", "--data", "{data}", "--alpha", "0.5", "--distribution", "cauchy"], 2,
     "distribution must be one of"),
    (["evaluate", "--data", "{data}", "--alphas", "0.5,x"], 2, "ALPHA must be a number"),
    (["evaluate", "--data", "{data}", "--alphas", "0"], 2, "clean baseline"),
    (["fit", "--data", "{missing}", "--alpha", "0.5"], 1, "no split 'train'"),
    (["fit", "--task", "nope", "--data", "{data}"], 1, "no privacy task 'nope'"),
    (["attack", "--data", "{data}", "--ks", "1,many"], 2, "ks must be whole numbers"),
    (["bench", "--alpha", "0.3", "--workdir", "{tmp}"], 1, "no fitted obfuscator"),
    (["fit", "--data", "{data}", "--device", "bogus"], 2, "unknown device 'bogus'"),
    (["evaluate", "--data", "{data}", "--obfuscator", "{foreign}", "--device", "cuda:7x"], 2,
     "unknown device"),
    (["generate", "{tmp}/g", "--seed", "-1"], 2, "seed must be a whole number"),
    (["attack", "--data", "{data}", "--width", "0"], 2, "width must be a whole number in [1,"),
    (["attack", "--data", "{data}", "--alphas", "0.5", "--averaging-alpha", "0.7"], 2,
     "not in the sweep"),
    (["bench", "--obfuscator", "{foreign}"], 2, "noise parameters fitted for model 'other'"),
])
def test_bad_input_ends_in_one_line(data, tmp_path, capsys, args, code, message):
    import torch

    from veil.privacy import Obfuscator, split_at

    foreign = tmp_path / "foreign"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 2, 1))
    other = split_at(net, "1", name="other")
    batches = [(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]
    Obfuscator(0.5, epochs=0).fit(other, batches, lambda out, y: out.mean()).save(foreign)
    subs = {"data": str(data), "missing": str(tmp_path / "missing"), "tmp": str(tmp_path),
            "foreign": str(foreign)}
    from tests.badinput import refused

    refused(capsys, ["privacy", *[a.format(**subs) for a in args]], message, code=code,
            home=tmp_path / "no-home")  # in-process: a traceback is an exception escaping main
