"""Public surfaces: outside a package, code imports only the names its `__init__` exports. A
module whose dotted name has a private part (`veil.privacy._measure`) belongs to the package
above that part (`veil.privacy`); only modules inside that package may import it. Checked over
src/, benchmarks/ and scripts/ (tests may look inside, as white-box tests do)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root / "src").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _owner(module: str) -> str | None:
    """The package a private module belongs to (None: the module is public)."""
    parts = module.split(".")
    for i, p in enumerate(parts):
        if p.startswith("_") and not p.startswith("__"):
            return ".".join(parts[:i])
    return None


def violations(root: Path = ROOT) -> list[str]:
    files = [*(root / "src").rglob("*.py"), *(root / "benchmarks").rglob("*.py"),
             *(root / "scripts").rglob("*.py")]
    assert files, f"no Python files under {root}"
    out = []
    for f in files:
        here = _module_of(f, root) if f.is_relative_to(root / "src") else ""
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if not name.startswith("veil."):
                    continue
                owner = _owner(name)
                if owner is not None and not (here == owner or here.startswith(owner + ".")):
                    out.append(f"{f.relative_to(root)}:{node.lineno}: {name}")
    return sorted(set(out))


def test_no_module_imports_another_packages_private_modules():
    found = violations()
    assert not found, "imports of another package's private modules:\n" + "\n".join(found)


def test_the_check_finds_a_private_import(tmp_path):
    assert _owner("veil.privacy._measure.obfuscators") == "veil.privacy"
    assert _owner("veil.solutions.face_privacy._job") == "veil.solutions.face_privacy"
    assert _owner("veil.data") is None
    pkg = tmp_path / "src" / "veil"
    for d in ("privacy", "cli", "solutions/lane"):
        (pkg / d).mkdir(parents=True)
    (pkg / "privacy" / "_measure.py").write_text("from veil.privacy._util import bar\n")
    (pkg / "cli" / "ok.py").write_text("from veil.privacy import Obfuscator\n")
    (pkg / "cli" / "bad.py").write_text("import json\nfrom veil.privacy._measure import x\n")
    (pkg / "solutions" / "lane" / "m.py").write_text("import veil.solutions.face._job\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "b.py").write_text("from veil.data._drivers import copy\n")
    assert violations(tmp_path) == [
        "benchmarks/b.py:1: veil.data._drivers",
        "benchmarks/b.py:1: veil.data._drivers.copy",
        "src/veil/cli/bad.py:2: veil.privacy._measure",
        "src/veil/cli/bad.py:2: veil.privacy._measure.x",
        "src/veil/solutions/lane/m.py:1: veil.solutions.face._job",
    ]
