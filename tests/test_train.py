"""veil.train: configurations through JSON and the environment, the torchrun launcher with real
replicas (progress lines, and a failure that names the rank), rank-0 atomic saves."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from veil.errors import InvalidArgument
from veil.train import TrainingFailed, failure_summary, from_env, launch, load, save, to_env

PLUGINS = Path(__file__).parent / "plugins"


@dataclass
class Cfg:
    data: str = field(metadata={"env": "DATA_DIR"})
    epochs: int = 3
    lr: float = 0.1
    use_val: bool = True
    init: str | None = None
    weights: Path | None = None


def test_a_config_round_trips_through_the_environment_and_json(tmp_path):
    cfg = Cfg("/mnt/data", epochs=5, use_val=False, weights=Path("/w.pt"))
    env = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in to_env(cfg).items()}
    assert env["DATA_DIR"] == "/mnt/data" and env["USE_VAL"] == "false" and "INIT" not in env
    assert from_env(Cfg, env) == cfg
    assert load(save(cfg, tmp_path / "c.json")) == cfg


def test_a_bad_environment_is_one_line():
    with pytest.raises(InvalidArgument, match="DATA_DIR is not set"):
        from_env(Cfg, {})
    with pytest.raises(InvalidArgument, match="EPOCHS must be a number"):
        from_env(Cfg, {"DATA_DIR": "/d", "EPOCHS": "three"})
    with pytest.raises(InvalidArgument, match="USE_VAL must be true or false"):
        from_env(Cfg, {"DATA_DIR": "/d", "USE_VAL": "maybe"})


@pytest.fixture
def toy_path(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS),
                                                      os.environ.get("PYTHONPATH", "")]))
    import sys

    monkeypatch.syspath_prepend(str(PLUGINS))
    assert sys.path[0] == str(PLUGINS)


def test_two_replicas_run_and_rank_zero_reports_each_epoch(tmp_path, toy_path):
    from veil_toy.replica import Config

    lines: list[str] = []
    res = launch("veil_toy.replica:work", Config(str(tmp_path)), 2, out=tmp_path,
                 log=lines.append, required=("done.json",))
    assert res.processes == 2
    assert json.loads((tmp_path / "done.json").read_text()) == {"world": 2, "env": "2"}
    assert lines == ["epoch 1/2: loss 1.0000", "epoch 2/2: loss 0.5000"]
    rows = [json.loads(r) for r in (tmp_path / "train.log").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # rank 0 only: one line per epoch
    assert json.loads((tmp_path / "config.json").read_text())["fields"]["out"] == str(tmp_path)


def test_a_failed_replica_is_named_with_its_own_error(tmp_path, toy_path):
    from veil_toy.replica import Config

    with pytest.raises(TrainingFailed) as e:
        launch("veil_toy.replica:work", Config(str(tmp_path), fail_rank=1), 2, out=tmp_path)
    msg = str(e.value)
    assert e.value.rank == 1
    assert re.match(r"training failed \(rank 1 of 2, exit 1\): ValueError: frame 17 of rank 1 "
                    r"is unreadable$", msg), msg
    assert (tmp_path / "launcher.log").is_file() and e.value.log == tmp_path / "launcher.log"


def test_a_missing_output_fails_the_launch(tmp_path, toy_path):
    from veil_toy.replica import Config

    with pytest.raises(TrainingFailed, match=r"training failed \(1 process\(es\), exit 0\)"):
        launch("veil_toy.replica:work", Config(str(tmp_path)), 1, out=tmp_path,
               required=("model.pt",))


def test_the_failure_summary_reads_torchruns_root_cause():
    tail = ["Root Cause (first observed failure):", "[0]:", "  time      : x",
            "  host      : localhost", "  rank      : 3 (local_rank: 3)", "  exitcode  : 1"]
    assert failure_summary(["Traceback ...", "KeyError: 'x'", *tail]) == (3, "KeyError: 'x'")
    reports = ["veil.train: rank 0 failed: RuntimeError: peer gone",
               "veil.train: rank 3 failed: disk full"]
    assert failure_summary([*reports, *tail]) == (3, "disk full")
    assert failure_summary(["nothing useful"]) == (None, "")
