"""Progress where nobody watches a terminal: plain, throttled lines on stderr when it is a file or
a pipe (a log, `| tee`, CI), the bars kept for terminals, and stdout left to the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from veil import progress
from veil.cli._render import BarProgress
from veil.progress import (
    MIB,
    LineProgress,
    TqdmProgress,
    duration,
    line_interval,
    mebibytes,
    prefixed,
)


class Clock:
    """Stands in for the time module in veil.progress: `now` moves only when a test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


def err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_phase_prints_its_start_then_at_most_one_line_per_interval_then_its_end(clock, capsys):
    bar = LineProgress(interval=10)
    bar.start(40, "training inversion decoders")
    for _ in range(12):  # 12 steps of 5 s: a line once 10 s have passed since the last one
        clock.now += 5
        bar.advance()
    clock.now += 5
    bar.advance(28)
    assert err_lines(capsys) == [
        "training inversion decoders: 0/40 (0%)",
        "training inversion decoders: 2/40 (5%), 10s elapsed, ETA 3m10s",
        "training inversion decoders: 4/40 (10%), 20s elapsed, ETA 3m00s",
        "training inversion decoders: 6/40 (15%), 30s elapsed, ETA 2m50s",
        "training inversion decoders: 8/40 (20%), 40s elapsed, ETA 2m40s",
        "training inversion decoders: 10/40 (25%), 50s elapsed, ETA 2m30s",
        "training inversion decoders: 12/40 (30%), 1m00s elapsed, ETA 2m20s",
        "training inversion decoders: 40/40 (100%), done in 1m05s",
    ]


def test_a_phase_left_short_of_its_total_says_where_it_stopped(clock, capsys):
    bar = LineProgress(interval=60)
    bar.start(10, "fitting noise (ALPHA 0.8)")
    clock.now += 3
    bar.advance(4)
    bar.start(2, "scoring clean")  # the next phase ends this one
    bar.close()  # nothing advanced: no second line for it
    assert err_lines(capsys) == ["fitting noise (ALPHA 0.8): 0/10 (0%)",
                                 "fitting noise (ALPHA 0.8): 4/10 (40%), 3s elapsed",
                                 "scoring clean: 0/2 (0%)"]


def test_amounts_render_in_the_callers_unit_and_a_phase_without_total_counts_up(clock, capsys):
    bar = LineProgress(interval=0, amount=lambda n: f"{n} B")
    bar.start(2048, "clone (copy)")
    bar.advance(2048)
    bar.start(0, "running the head")
    clock.now += 1
    bar.advance()
    assert err_lines(capsys) == ["clone (copy): 0 B/2048 B (0%)",
                                 "clone (copy): 2048 B/2048 B (100%), done in 0s",
                                 "running the head: 0 B", "running the head: 1 B, 1s elapsed"]


def test_durations_read_as_seconds_minutes_hours():
    assert [duration(s) for s in (0, 4.6, 59, 65, 3599, 3725)] == [
        "0s", "5s", "59s", "1m05s", "59m59s", "1h02m"]


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("VEIL_PROGRESS_INTERVAL", raising=False)
    assert line_interval() == 10.0
    monkeypatch.setenv("VEIL_PROGRESS_INTERVAL", "0.5")
    assert line_interval() == 0.5 and LineProgress().interval == 0.5
    for bad in ("soon", "-1", "nan", "inf", ""):
        monkeypatch.setenv("VEIL_PROGRESS_INTERVAL", bad)
        assert line_interval() == 10.0, bad


def test_tqdm_progress_prints_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("VEIL_PROGRESS_INTERVAL", "0")
    for keep in (False, True):
        with TqdmProgress(keep=keep) as bar:
            bar.start(2, "phase one")
            bar.advance()
            bar.advance()
            bar.start(3, "phase two")
            bar.advance()
        lines = err_lines(capsys)
        assert lines[:2] == ["phase one: 0/2 (0%)", "phase one: 1/2 (50%), 0s elapsed, ETA 0s"]
        assert lines[2].startswith("phase one: 2/2 (100%), done in ")
        assert lines[3:] == ["phase two: 0/3 (0%)", "phase two: 1/3 (33%), 0s elapsed, ETA 0s"]
    prefixed(None, "x").start(1, "silent")  # a library default stays silent
    assert capsys.readouterr().err == ""


def test_tqdm_progress_keeps_its_bar_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    with TqdmProgress(keep=True) as bar:
        bar.start(2, "on a terminal")
        bar.advance(2)
    err = capsys.readouterr().err
    assert "on a terminal" in err and "2/2" in err and "\r" in err  # tqdm's bar, redrawn
    assert "(100%), done in" not in err


def test_bar_progress_prints_byte_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("VEIL_PROGRESS_INTERVAL", "0")
    with BarProgress() as bar:
        bar.start(3 << 20, "snapshot (copy)")
        bar.advance(1 << 20)
        bar.advance(2 << 20)
    lines = err_lines(capsys)
    assert lines[:2] == ["snapshot (copy): 0 B/3.0 MiB (0%)",
                         "snapshot (copy): 1.0 MiB/3.0 MiB (33%), 0s elapsed, ETA 0s"]
    assert lines[2].startswith("snapshot (copy): 3.0 MiB/3.0 MiB (100%), done in ")


# ---------------------------------------------------------------------- the real commands
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from veil.privacy import get_task

    path = tmp_path_factory.mktemp("progress") / "shapes"
    return get_task("shapes").generate(path, seed=1, sizes={"fit": 16, "attack": 8, "test": 16})


def test_privacy_fit_shows_its_phase_on_a_captured_stderr_and_keeps_stdout_json(
        tiny, tmp_path, capsys, monkeypatch):
    from veil.cli import main

    monkeypatch.delenv("VEIL_PROGRESS_INTERVAL", raising=False)  # 10 s: start and end only
    capsys.readouterr()
    assert main(["privacy", "fit", "--data", str(tiny), "--epochs", "2", "--workdir",
                 str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["loss_history"]  # stdout is the JSON alone
    # one batch of 16 images: a pass measuring the activation, then two epochs
    lines = err.splitlines()
    assert lines[0] == "fitting noise (ALPHA 0.8): 0/3 (0%)"
    assert lines[1].startswith("fitting noise (ALPHA 0.8): 3/3 (100%), done in ")
    assert len(lines) == 2


def test_privacy_evaluate_piped_shows_fitting_and_each_scoring(tiny, tmp_path):
    env = dict(os.environ, VEIL_PROGRESS_INTERVAL="0")
    p = subprocess.run([sys.executable, "-m", "veil", "privacy", "evaluate", "--data", str(tiny),
                        "--alphas", "0.8", "--epochs", "1", "--workdir", str(tmp_path),
                        "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert [r["alpha"] for r in json.loads(p.stdout)["rows"]] == [None, 0.8]
    lines = p.stderr.splitlines()
    starts = [ln for ln in lines if ln.endswith(" (0%)")]
    assert starts == ["fitting noise (ALPHA 0.8): 0/2 (0%)",
                      "scoring clean: predicting: 0/1 (0%)",
                      "scoring ALPHA 0.8: predicting: 0/1 (0%)"]
    for phase in ("fitting noise (ALPHA 0.8): 2/2", "scoring clean: predicting: 1/1",
                  "scoring ALPHA 0.8: predicting: 1/1"):
        assert any(ln.startswith(f"{phase} (100%), done in ") for ln in lines), lines


def test_a_jobs_snapshot_is_counted_in_whole_mebibytes(clock, capsys):
    lines = LineProgress(interval=0)
    snap = mebibytes(lines)
    snap.start(5 * MIB // 2, "snapshot (copy)")  # 2.5 MiB: three steps, the last one partial
    snap.advance(MIB // 2)  # under a MiB: nothing to show yet
    snap.advance(MIB)
    snap.advance(MIB)
    assert err_lines(capsys) == ["snapshot (copy), MiB: 0/3 (0%)",
                                 "snapshot (copy), MiB: 1/3 (33%), 0s elapsed, ETA 0s",
                                 "snapshot (copy), MiB: 3/3 (100%), done in 0s"]
    assert mebibytes(None) is progress.SILENT
