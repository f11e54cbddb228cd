"""Every command's --help reads as a user expects: NAME / [NAME] in usage, TEXT / INTEGER /
NUMBER / PATH for values, nothing after a flag; no Python annotations."""

from __future__ import annotations

import re

import typer.main

from veil.cli import app, main
from veil.cli._help import tidy


def _leaves(cmd, path):
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield path
        return
    yield path
    for name, sub in sorted(subs.items()):
        yield from _leaves(sub, [*path, name])


def test_every_help_is_free_of_python_annotations(capsys):
    paths = list(_leaves(tidy(typer.main.get_command(app)), []))
    assert len(paths) > 50
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Usage: veil" in out, path
        for bad in ("<bool>", "<str>", "<int>", "<float>", "list[", "<Path>", "<path>"):
            assert bad not in out, (path, bad)
        assert not re.search(r"\{[a-z_]+\}", out), (path, out)


def test_usage_names_arguments_in_capitals(capsys):
    main(["volume", "clone", "--help"])
    out = capsys.readouterr().out
    assert "veil volume clone [OPTIONS] SOURCE NEW" in out
    assert re.search(r"--size\s+TEXT", main(["volume", "create", "--help"]) or
                     capsys.readouterr().out)
