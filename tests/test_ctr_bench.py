"""benchmarks/ctr.py, its --quick run: every section measured in one run, the tables printed
(plain and markdown), the JSON's keys, the scale models fitted, and the seed's arithmetic
reproduced from the seed's own figures (2841 s x 400 / 4331 s = 262.39x; corrected ~2.4x)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ctr.py"


def _bench():
    spec = importlib.util.spec_from_file_location("ctr_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "ctr.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--markdown", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_the_seeds_262_39x_comes_from_its_own_figures_and_the_corrected_ratio_is_about_2_4():
    a = _bench().seed_arithmetic()
    assert a["sklearn_s"] == 2841 and a["dask_s"] == 4331 and a["factor"] == 400
    assert a["extrapolated_s"] == 2841 * 400
    assert a["extrapolated"] == "13 d 3 h 40 min 0 s"
    assert f"{a['ratio']:.2f}" == "262.39" and a["ratio_reproduced"]
    assert a["corrected"] == "2 h 50 min 28 s"
    assert 2.3 < a["corrected_ratio"] < 2.45


def test_linear_and_power_law_fits_predict_the_largest_point_from_the_others():
    m = _bench().fit_models([1, 2, 4, 8], [2.0, 4.0, 8.0, 20.0])
    assert math.isclose(m["linear"]["b"], 2.0) and math.isclose(m["power"]["k"], 1.0)
    assert math.isclose(m["linear"]["predicted_s"], 16.0)
    assert math.isclose(m["power"]["rel_error"], -0.2)
    assert math.isclose(m["proportional"]["predicted_s"], 16.0)  # the seed's way: 8 s x 8/4


@pytest.mark.slow  # 35 s: the benchmark's quick run (its arithmetic is tested above)
def test_quick_run_measures_every_section_side_by_side_and_writes_the_json(quick):
    stdout, res = quick
    runs = res["compare"]["runs"]
    assert set(runs) == {"pandas-sklearn n_jobs=1", "pandas-sklearn n_jobs=2",
                         "dask-rf 2 workers", "dask-lightgbm 2 workers"}
    for r in runs.values():
        assert set(r["seconds"]) == {"load", "fit", "predict"}
        assert r["rows"] == res["compare"]["rows"] and 0.5 < r["auc"] <= 1
    assert set(res["compare"]["fit_ratios"]) == {"n_jobs=1 / dask-rf", "n_jobs=2 / dask-rf",
                                                 "n_jobs=1 / n_jobs=2"}
    assert res["compare"]["auc_diff"] == pytest.approx(
        abs(runs["dask-rf 2 workers"]["auc"] - runs["pandas-sklearn n_jobs=1"]["auc"]))

    scale = res["scale"]
    assert len(scale["rows"]) >= 4
    for e in scale["engines"].values():
        m = e["models"]
        assert len(e["fit_s"]) == len(scale["rows"]) and m["largest"] == scale["rows"][-1]
        assert {"predicted_s", "rel_error"} <= set(m["linear"]) and "k" in m["power"]
        assert {"predicted_s", "rel_error"} <= set(m["power"]) | set(m["proportional"])

    assert res["seed"]["ratio_reproduced"] and "corrected_power_s" in res["seed"]

    mem = res["memory"]
    assert mem["how"] in ("cgroup-v1", "rlimit-as")
    assert {r["contender"] for r in mem["runs"]} == {"pandas-seed", "pandas-usecols",
                                                     "veil-pandas-sklearn", "dask-rf"}
    assert all(r["status"] == "ok" for r in mem["runs"])  # tiny files fit easily under 1 GiB
    if mem["how"] == "cgroup-v1":
        assert all(r["oom_kills"] == 0 and r["cgroup_peak_bytes"] > 0 for r in mem["runs"])
        assert not list(Path("/sys/fs/cgroup/memory").rglob("veil-bench-*"))  # cleaned up

    for title in ("Fit time, side by side", "Scale", "The seed's arithmetic, and corrected",
                  "Memory under a cap"):
        assert f"== {title}" in stdout and f"### {title}" in stdout
    assert "262.39x" in stdout and "2.36x" in stdout and "13 d 3 h 40 min 0 s" in stdout
    assert "| engine | trees | load s | fit s |" in stdout
    assert "AUC gap between dask-rf (forests of the 2 workers merged) and one forest" in stdout
