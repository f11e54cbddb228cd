"""The Dockerfile builds the image the Kubernetes manifests run (`veil:latest`): Docker's own
parser reads it, hadolint finds nothing in it, and what the image promises holds: a pinned
Python base, PyTorch's CPU build at the torch extra's pin, the `veil` command, a user that is
not root, and every file it copies in a build context that .dockerignore keeps small."""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import sysconfig
from pathlib import Path

import dockerfile
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Docker's instructions (the Dockerfile reference); the parser alone accepts any word
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
                "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL",
                "USER", "VOLUME", "WORKDIR"}


@pytest.fixture(scope="module")
def instructions() -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(DOCKERFILE))  # BuildKit's parser: a syntax error raises


def _runs(instructions) -> list[str]:
    return [" ".join(c.value) for c in instructions if c.cmd == "RUN"]


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


# -- .dockerignore, read as Docker reads it (moby/patternmatcher) ---------------------------------
def _pattern(text: str) -> re.Pattern:
    """Go's filepath.Match plus `**`: `*` and `?` stay within one path segment, `**/` is any
    number of directories."""
    rx, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            rx, i = rx + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            rx, i = rx + ".*", i + 2
        elif text[i] == "*":
            rx, i = rx + "[^/]*", i + 1
        elif text[i] == "?":
            rx, i = rx + "[^/]", i + 1
        elif text[i] == "[":
            end = text.index("]", i)
            rx, i = rx + text[i:end + 1], end + 1
        else:
            rx, i = rx + re.escape(text[i]), i + 1
    return re.compile(rx)


def _ignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        line = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((keep, _pattern(line)))
    return rules


def in_context(path: str) -> bool:
    """Whether `path` (relative to the repository) is sent to `docker build`: the last rule
    that matches it or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for keep, rx in _ignore_rules():
        if any(rx.fullmatch(c) for c in candidates):
            excluded = not keep
    return not excluded


# -- the Dockerfile -------------------------------------------------------------------------------
def test_docker_parses_it_and_every_instruction_is_dockers(instructions):
    assert {c.cmd for c in instructions} <= INSTRUCTIONS
    assert next(c.cmd for c in instructions if c.cmd != "ARG") == "FROM"


def test_hadolint_finds_nothing():
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev extra (scripts/setup.sh installs it)"
    p = subprocess.run([str(hadolint), "--failure-threshold", "style", "--format", "json",
                        str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout) == [], p.stdout + p.stderr


def test_the_base_is_python_slim_at_a_pinned_version(instructions):
    bases = [c.value[0] for c in instructions if c.cmd == "FROM"]
    assert len(bases) == 1, bases
    name, _, tag = bases[0].partition(":")
    assert name == "python" and re.fullmatch(r"3\.1\d(\.\d+)?-slim-[a-z]+", tag), bases[0]


def test_torch_is_the_cpu_build_at_the_torch_extras_pin_before_veil(instructions):
    pin = re.search(r'"torch==([0-9.]+)"', _pyproject()).group(1)
    assert pin == "2.13.0"
    runs = _runs(instructions)
    torch_at = [i for i, r in enumerate(runs) if f"torch=={pin}" in r.split()]
    assert len(torch_at) == 1, runs
    assert f"--index-url {CPU_INDEX}" in runs[torch_at[0]]
    veil_at = [i for i, r in enumerate(runs) if re.search(r"pip install .*\"\.\[", r)]
    assert len(veil_at) == 1 and veil_at[0] > torch_at[0], runs  # else pip takes PyPI's CUDA torch


def test_veil_is_installed_with_every_extra_but_the_test_tools(instructions):
    extras = re.search(r"\[project\.optional-dependencies\](.*?)\n\[", _pyproject(), re.S)
    names = set(re.findall(r"^(\w+) = \[", extras.group(1), re.M)) - {"dev"}
    assert names == {"torch", "serve", "track", "dask"}
    (run,) = [r for r in _runs(instructions) if re.search(r"pip install .*\"\.\[", r)]
    assert set(re.search(r"\"\.\[([^\]]*)\]\"", run).group(1).split(",")) == names


def test_the_image_runs_veil_as_a_user_who_is_not_root(instructions):
    (entrypoint,) = [c for c in instructions if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and entrypoint.value == ("veil",)
    user = [c.value[0] for c in instructions if c.cmd == "USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, user  # numeric: a pod's runAsNonRoot can check it
    made = [r for r in _runs(instructions) if f"useradd --create-home --uid {uid}" in r]
    assert made and (not gid or "--user-group" in made[0]), _runs(instructions)


def test_every_file_it_copies_is_in_the_build_context(instructions):
    copies = [c for c in instructions if c.cmd in ("COPY", "ADD")]
    assert copies and not any(f.startswith("--from") for c in copies for f in c.flags)
    sources = [s for c in copies for s in c.value[:-1]]
    readme = re.search(r'^readme = "([^"]+)"', _pyproject(), re.M).group(1)
    assert {"pyproject.toml", readme, "src"} <= set(sources)  # what pip needs to build veil
    tracked = subprocess.run(["git", "ls-files", "-z", "--", *sources], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split("\0")
    for source in sources:
        assert (ROOT / source).exists(), source
        files = [f for f in tracked if f == source or f.startswith(source.rstrip("/") + "/")]
        assert files, f"{source} is not in git: a fresh clone would not have it"
        left_out = [f for f in files if not in_context(f)]
        assert not left_out, f".dockerignore leaves out {left_out[:5]}"
    assert any(f.endswith(".pt") for f in tracked)  # the shipped weights go in too


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", ".pytest_cache/README.md", ".ruff_cache/CACHEDIR.TAG",
    ".veil-demo/meta.db", "benchmarks/out/run.json", "src/veil.egg-info/PKG-INFO",
    "src/veil/__pycache__/errors.cpython-311.pyc", "src/veil/errors.pyc",
    "shapes-data/train/0/0.png", "veil-privacy-faces/obfuscators/gaussian-alpha-0.8/meta.json",
    "FDDB/FDDB-folds/FDDB-fold-01.txt", "k8s/queues.yaml", "tusimple-data/test_label.json",
    "alloc.png", "predictions.json", "tests/test_cli.py", "docs/data.md",
])
def test_dockerignore_keeps_out_what_the_image_does_not_need(path):
    assert not in_context(path)


def test_every_root_output_gitignore_names_stays_out_of_the_build_context():
    anchored = [line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
                if line.startswith("/")]
    assert "FDDB" in anchored
    for entry in anchored:
        assert not in_context(entry.replace("*", "x") + "/file"), entry


def test_the_dockerignore_reading_follows_dockers_rules():
    """The reader above, on the cases that differ from git's: a later `!` keeps, a parent
    folder's match counts, `*` stops at `/` and `**/` crosses it."""
    assert in_context("pyproject.toml") and in_context("src/veil/__init__.py")
    assert not in_context("Makefile")  # `*` matches it
    assert _pattern("*.pyc").fullmatch("a.pyc") and not _pattern("*.pyc").fullmatch("d/a.pyc")
    assert _pattern("**/*.pyc").fullmatch("d/e/a.pyc") and _pattern("**/*.pyc").fullmatch("a.pyc")
