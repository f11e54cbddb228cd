"""Whichever command writes first, veil's home is created private (0700), so what the modules
keep in it (metadata, job logs, server records, the tracking store) is not readable by other
users through it (issue 15, items 1 and 3)."""

from __future__ import annotations

import os
import stat

import pytest

from veil.cli import main

FIRST = [
    ["volume", "create", "v"],
    ["project", "create", "p", "--gpus", "1"],
    ["node", "add", "n", "--gpus", "1"],
    ["lineage", "snap-x"],
]


@pytest.mark.parametrize("argv", FIRST, ids=[a[0] for a in FIRST])
def test_the_first_command_makes_the_home_private(tmp_path, monkeypatch, capsys, argv):
    os.chmod(tmp_path, 0o755)
    home = tmp_path / "a" / "home"
    monkeypatch.setenv("VEIL_HOME", str(home))
    monkeypatch.setenv("VEIL_DRIVER", "copy")  # as root, a pool would be made (and left mounted)
    old = os.umask(0o022)
    try:
        main(argv)
    finally:
        os.umask(old)
    assert home.is_dir(), f"veil {' '.join(argv)} made no home"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700, oct(home.stat().st_mode)
    assert stat.S_IMODE(home.parent.stat().st_mode) == 0o755  # parents the usual way


def test_the_servers_folder_makes_the_home_private(tmp_path):
    from veil.serve._server import _private_dir

    os.chmod(tmp_path, 0o755)
    _private_dir(tmp_path / "home")
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
