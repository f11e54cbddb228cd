"""Bad input to `veil serve` and to veil.serve's API (issue 15, item 9 and siblings): refused in
one line, with a non-zero exit, before anything is started or written. The home holds a valid
model repository, so a value that slipped through would start a real server."""

from __future__ import annotations

import socket

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytriton")

from tests.badinput import refused  # noqa: E402
from veil import data, serve  # noqa: E402
from veil.cli import main  # noqa: E402
from veil.errors import InvalidArgument  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()
START = ["serve", "start", "--model-repo", "repo"]
CASES = [
    # --timeout: seconds to wait for the server, finite, > 0, at most a day
    ([*START, "--timeout", "nan"], "--timeout", 2),
    ([*START, "--timeout", "inf"], "--timeout", 2),
    ([*START, "--timeout", "-inf"], "--timeout", 2),
    ([*START, "--timeout", "0"], "--timeout", 2),
    ([*START, "--timeout", "-5"], "--timeout", 2),
    ([*START, "--timeout", "1e300"], "--timeout", 2),
    ([*START, "--timeout", "86401"], "at most 86400", 2),
    # ports
    ([*START, "--http-port", "0"], "--http-port must be in 1..65535", 2),
    ([*START, "--http-port", "65536"], "--http-port", 2),
    ([*START, "--http-port", "-1"], "--http-port", 2),
    ([*START, "--http-port", "99999999999999999999"], "--http-port", 2),
    ([*START, "--grpc-port", "0"], "--grpc-port", 2),
    ([*START, "--metrics-port", "70000"], "--metrics-port", 2),
    ([*START, "--http-port", PORT, "--grpc-port", PORT], "given twice", 2),
    ([*START, "--http-port", "80.5"], "Invalid value", 2),
    # device, names, the repository
    ([*START, "--device", "tpu"], "--device", 2),
    ([*START, "--device", "cuda:x"], "--device", 2),
    ([*START, "--device", "cuda:123456789"], "--device", 2),
    ([*START, "--device", ""], "--device", 2),
    (["serve", "start", "--model-repo", ""], "volume name", 2),
    (["serve", "start", "--model-repo", "../repo"], "volume name", 2),
    (["serve", "start", "--model-repo", "a/b"], "volume name", 2),
    ([*START, "--name", ""], "server name", 2),
    ([*START, "--name", "../evil"], "server name", 2),
    ([*START, "--name", "x" * 300], "server name", 2),
    (["serve", "start", "--model-repo", "no-such-volume"], "no volume named", 1),
    (["serve", "start", "--model-repo", "empty"], "holds no models", 1),
    (["serve", "start"], "Missing option", 2),
    # stop: --grace finite, >= 0, at most a day; names
    (["serve", "stop", "ghost"], "no server named 'ghost'", 1),
    (["serve", "stop", "ghost", "--grace", "nan"], "--grace", 2),
    (["serve", "stop", "ghost", "--grace", "inf"], "--grace", 2),
    (["serve", "stop", "ghost", "--grace", "-1"], "--grace", 2),
    (["serve", "stop", "ghost", "--grace", "1e9"], "--grace", 2),
    # logs
    (["serve", "logs", "ghost"], "no server named 'ghost'", 1),
    (["serve", "logs", "ghost", "--lines", "-1"], "--lines must be >= 0", 2),
    (["serve", "logs", "ghost", "--lines", "x"], "Invalid value", 2),
]


def make_repositories() -> None:
    """In the current home: volume `repo` with a valid (tiny) model repository, and `empty`."""
    vol = data.create_volume("repo")
    serve.write_model(vol.path, "tiny", torch.nn.Linear(4, 2), torch.zeros(1, 4),
                      input_names=["INPUT_0"], output_names=["OUTPUT__0"])
    data.create_volume("empty")


@pytest.fixture(scope="module")
def repo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hardening-serve") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_HOME", str(home))
        mp.setenv("VEIL_DRIVER", "copy")
        make_repositories()
    return home


@pytest.fixture
def home(repo_home, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(repo_home))
    monkeypatch.setenv("VEIL_DRIVER", "copy")
    return repo_home


def _servers() -> list[str]:
    return [s.name for s in serve.list_servers()]


@pytest.mark.parametrize(("argv", "match", "code"), CASES,
                         ids=[" ".join(map(str, c[0][1:]))[:60].replace(str(PORT), "PORT")
                              for c in CASES])  # the same ids in every process (pytest-xdist)
def test_bad_serve_input_is_refused_in_one_line(capsys, home, argv, match, code):
    refused(capsys, argv, match, home=home, code=code, also=_servers)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0, True])
def test_the_api_refuses_bad_seconds_too(home, value):
    with pytest.raises(InvalidArgument, match="timeout"):
        serve.start("repo", timeout=value)
    with pytest.raises(InvalidArgument, match="timeout"):
        serve.Client("127.0.0.1:1", "m", timeout=value)
    if value != 0.0:
        with pytest.raises(InvalidArgument, match="grace"):
            serve.stop("ghost", grace=value)
    assert _servers() == []


def test_logs_lines_zero_prints_nothing(home, capsys):
    """`--lines 0` printed the whole log (a slice from -0)."""
    from veil.serve import ServerInfo
    from veil.serve._server import _private_dir, write_entry

    log = _private_dir(home) / "old.log"
    write_entry(ServerInfo(name="old", state="exited", pid=None, http_port=1, grpc_port=2,
                           metrics_port=3, model_repo="repo", repo_path="", log=str(log)), home)
    log.write_text("one\ntwo\nthree\n")
    try:
        assert main(["serve", "logs", "old", "--lines", "0"]) == 0
        assert capsys.readouterr().out == ""
        assert main(["serve", "logs", "old", "-n", "2"]) == 0
        assert capsys.readouterr().out == "two\nthree\n"
    finally:
        assert main(["serve", "stop", "old"]) == 0
        log.unlink()


class _Jitter(torch.nn.Module):
    """A model whose output is not a function of its input: its trace cannot stand for it."""

    def forward(self, x):
        return x + torch.rand_like(x)


def test_a_model_whose_trace_computes_something_else_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="traced model's outputs differ"):
        serve.write_model(tmp_path, "jitter", _Jitter(), torch.zeros(1, 4),
                          input_names=["INPUT_0"], output_names=["OUTPUT__0"])
    assert list(tmp_path.iterdir()) == []  # no model, no half-written folder
