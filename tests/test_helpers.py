"""The one-of-each helpers: the JSON converter, the progress protocol, require_extra."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from veil.errors import VeilError, require_extra
from veil.jsonio import dumps, to_plain
from veil.progress import SILENT, TqdmProgress, or_silent, quiet


@dataclass
class Row:
    path: Path
    when: datetime
    score: float


def test_results_become_plain_json():
    np = pytest.importorskip("numpy")
    obj = {"row": Row(Path("/a"), datetime(2026, 1, 2, 3, 4, 5), math.nan),
           "arr": np.arange(3), "n": np.float32(0.5), "inf": math.inf, 1: (1, 2)}
    assert to_plain(obj) == {"row": {"path": "/a", "when": "2026-01-02T03:04:05",
                                     "score": None}, "arr": [0, 1, 2], "n": 0.5,
                             "inf": None, "1": [1, 2]}
    assert json.loads(dumps(obj))["arr"] == [0, 1, 2]


def test_progress_phases_and_silence(capsys):
    SILENT.start(3, "x")
    SILENT.advance()
    assert or_silent(None) is SILENT
    lines: list[str] = []
    quiet(lines.append)("a")
    quiet(None)("dropped")
    assert lines == ["a"]
    with TqdmProgress(keep=True) as bar:
        bar.start(2, "phase one")
        bar.advance(2)
        bar.start(1, "phase two")
        bar.advance()
    err = capsys.readouterr().err
    assert "phase one" in err and "phase two" in err and "2/2" in err


def test_a_missing_extra_names_the_install_command():
    require_extra("json", "core", "this")
    with pytest.raises(VeilError, match=r"veil demo needs no_such_mod: pip install "
                                        r"'veil\[torch\]'"):
        require_extra("no_such_mod", "torch", "veil demo")
