"""Every command that prints a result can print it as one JSON document (`--json`, on stdout;
progress stays on stderr), and names the things a script needs next: the snapshot behind
VOLUME@latest, the files an export wrote, what `serve stop` stopped."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import typer.main

from veil import data
from veil.cli import app, main

# Commands whose output is not a result: each with the reason.
EXEMPT = {
    "demo": "a narrated walkthrough of other commands, for reading",
    "logs": "streams a job's log lines as they are",
    "job logs": "streams a job's log lines as they are",
    "serve logs": "prints the end of a server's log file as it is",
    "scheduler run": "the agent: runs until stopped, logging what it does",
}


def _leaves(cmd, path=()):
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield " ".join(path), cmd
        return
    for name, sub in sorted(subs.items()):
        yield from _leaves(sub, (*path, name))


def test_every_command_that_prints_a_result_has_json():
    leaves = dict(_leaves(typer.main.get_command(app)))
    assert len(leaves) > 40
    missing = [name for name, cmd in leaves.items()
               if name not in EXEMPT
               and not any("--json" in p.opts for p in cmd.params)]
    assert missing == [], f"commands without --json: {missing}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VEIL_DRIVER", "copy")
    monkeypatch.delenv("VEIL_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def _json(capsys, argv: list[str]):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)  # one document, nothing else on stdout


def test_generate_prints_where_it_wrote_and_the_sizes(home, capsys):
    pytest.importorskip("PIL")
    out = _json(capsys, ["solutions", "lane-detection", "generate", "tusimple-data", "--volume",
                         "tusimple", "--train-clips", "2", "--test-clips", "1", "--json"])
    assert out["path"] == str(data.volume_path("tusimple") / "tusimple-data")
    assert out["sizes"] == {"train_clips": 2, "test_clips": 1} and out["format"] == "tusimple"
    assert (data.volume_path("tusimple") / "tusimple-data" / "test_label.json").is_file()


def test_every_export_prints_the_files_it_wrote(home, tmp_path, capsys):
    pytest.importorskip("yaml")
    faces = _json(capsys, ["solutions", "face-privacy", "export", "k8s", "k8s", "--alphas",
                           "0.8", "--json"])
    assert [os.path.basename(f) for f in faces["files"]] == [
        "inference-job-raw.yaml", "inference-job-veil-0.8.yaml"]
    lanes = _json(capsys, ["solutions", "lane-detection", "export", "k8s", "lanes", "--json"])
    assert lanes["files"] and all((tmp_path / f).is_file() or os.path.isfile(f)
                                  for f in lanes["files"])
    cluster = _json(capsys, ["export", "k8s", "cluster", "--json"])
    assert cluster["files"] and all(os.path.isfile(f) for f in cluster["files"])


def test_lineage_names_the_newest_snapshot_as_volume_at_latest(home, capsys):
    data.create_volume("tusimple")
    data.create_snapshot("tusimple", "first")
    data.create_snapshot("tusimple", "second")
    data.create_volume("other")
    data.create_snapshot("other", "third")  # newer, but of another volume
    assert _json(capsys, ["lineage", "tusimple@latest", "--json"])["snapshot"]["name"] == \
        "second"
    assert main(["lineage", "tusimple@latest"]) == 0
    assert capsys.readouterr().out.startswith("snapshot second of volume tusimple (")
    data.create_volume("empty")
    assert main(["lineage", "empty@latest"]) == 1
    assert "volume 'empty' has no snapshots, so none is latest" in capsys.readouterr().err
    assert main(["lineage", "ghost@latest"]) == 1
    assert "no volume named 'ghost'" in capsys.readouterr().err


def test_serve_stop_says_what_it_stopped(home, capsys):
    from veil.serve import ServerInfo
    from veil.serve._server import _private_dir, write_entry

    _private_dir(home)
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name in ("gone", "gone-too"):
        write_entry(ServerInfo(name=name, state="ready", pid=dead.pid, http_port=1, grpc_port=2,
                               metrics_port=3, model_repo="triton-model-repo", repo_path="",
                               models=["face_detection_base"], proc_start=1), home)
    out = _json(capsys, ["serve", "stop", "gone", "--json"])
    assert out["name"] == "gone" and out["was_running"] is False and out["killed"] is False
    assert out["models"] == ["face_detection_base"] and out["model_repo"] == "triton-model-repo"
    assert main(["serve", "stop", "gone-too"]) == 0
    assert capsys.readouterr().out == (
        "Server 'gone-too' (serving face_detection_base from volume 'triton-model-repo') was "
        "not running; its record and leftovers are removed.\n")


def test_privacy_generate_prints_where_it_wrote_and_the_sizes(tmp_path, capsys):
    pytest.importorskip("torch")
    out = _json(capsys, ["privacy", "generate", str(tmp_path / "shapes"), "--fit", "3",
                         "--attack", "2", "--test", "1", "--json"])
    assert out == {"path": str(tmp_path / "shapes"), "task": "shapes", "seed": 0,
                   "sizes": {"fit": 3, "attack": 2, "test": 1}, "images": 6}
    assert len(list((tmp_path / "shapes" / "test").rglob("*.png"))) == 1
