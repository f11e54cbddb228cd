"""`veil demo` end to end (slow: about 6 minutes; run with `pytest -m slow`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_face_privacy_demo_runs_within_ten_minutes(tmp_path):
    env = {**os.environ, "VEIL_DEMO_HOME": str(tmp_path / "demo"), "VEIL_DRIVER": "copy"}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "veil", "demo"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=900)
    elapsed = time.perf_counter() - t
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("===== Results =====") == 2
    assert "FDDB-fold-10 Val AP" in p.stdout and "mAP: " in p.stdout
    assert "snap-inference-results-faces-raw-" in p.stdout
    assert "snap-inference-results-faces-alpha-0.8-" in p.stdout
    work = tmp_path / "demo" / "privacy"
    for f in ("evaluate.png", "attack.png", "attack-grid.png"):
        assert (work / f).stat().st_size > 10_000
    assert elapsed < 600, f"the demo took {elapsed:.0f} s"
