"""Usage mistakes in every command group, refused in one line (issue 15, item 12): missing
arguments, unknown options and commands, and values of the wrong type, which Typer would
otherwise print as a five-line box. The groups' own tables (values of the right type that are
out of range) live beside their tests: test_hardening_*.py."""

from __future__ import annotations

import pytest

from tests.badinput import refused
from veil.cli import main

CASES = [
    (["bogus"], "No such command"),
    (["volume", "create"], "Missing argument 'name'"),
    (["volume", "create", "x", "--size"], "requires an argument"),
    (["volume", "list", "--bogus"], "No such option: --bogus"),
    (["snapshot", "create"], "Missing argument"),
    (["pool", "grow"], "Missing option"),
    (["submit", "-g", "abc", "j"], "Invalid value for '--gpus'"),
    (["submit", "-g", "1", "j", "--bogus"], "No such option"),
    (["project", "create", "p", "--gpus", "two"], "Invalid value"),
    (["node", "add", "n", "--gpus", "1.5x"], "Invalid value"),
    (["logs", "j", "--tail", "many"], "Invalid value"),
    (["serve", "start", "--timeout", "soon"], "Invalid value"),
    (["privacy", "evaluate", "--bogus"], "No such option"),
    (["solutions", "face-privacy", "generate"], "Missing argument"),
    (["solutions", "lane-detection", "generate", "d", "--seed", "x"], "Invalid value"),
    (["train", "lane-detection", "--epochs", "ten"], "Invalid value"),
    (["solutions", "face-privacy", "evaluate", "d", "--batch-size", "big"], "Invalid value"),
    (["export", "k8s", "--bogus"], "No such option"),
    (["lineage"], "Missing argument"),
    (["demo", "nope"], "no demo 'nope'"),
]

# Values of the right type that are wrong, for the commands outside the areas' own tables.
# {out} is a folder that must not be created; {file} an existing file.
VALUES = [
    (["export", "k8s", "{out}", "--image", ""], "not a container image reference"),
    (["export", "k8s", "{out}", "--image", "veil latest"], "not a container image reference"),
    (["export", "k8s", "{out}", "--namespace", "Bad_NS"], "not a valid Kubernetes name"),
    (["export", "k8s", "{out}", "--namespace", "x" * 64], "at most 63"),
    (["export", "k8s", "{file}"], "is not a folder"),
    (["lineage", "ghost"], "no snapshot named 'ghost'"),
    (["lineage", "../../etc"], "no snapshot named"),
    (["lineage", ""], "no snapshot named"),
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    main(["volume", "list"])  # the home exists before the cases, as it would for a user
    return tmp_path / "home"


@pytest.mark.parametrize(("argv", "match"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_usage_mistakes_are_one_line(capsys, home, argv, match):
    refused(capsys, argv, match, home=home, code=2)


@pytest.mark.parametrize(("argv", "match"), VALUES, ids=[" ".join(c[0]) for c in VALUES])
def test_wrong_values_are_refused_before_anything_is_written(capsys, home, tmp_path, argv,
                                                             match):
    out, file = tmp_path / "manifests", tmp_path / "a-file"
    file.write_text("kept")
    argv = [a.format(out=out, file=file) for a in argv]
    refused(capsys, argv, match, home=home,
            also=lambda: (out.exists(), file.read_text()))


def test_help_and_no_arguments_still_show_help(capsys, home):
    assert main(["volume", "--help"]) == 0
    assert "Usage: veil volume" in capsys.readouterr().out
    assert main([]) == 2
    assert "Usage: veil" in capsys.readouterr().out
