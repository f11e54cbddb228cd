"""Public surfaces: outside a package, code imports only the names its `__init__` exports. A
module whose dotted name has a private part (`veil.privacy._measure`) belongs to the package
above that part (`veil.privacy`); only modules inside that package may import it. Checked over
src/, benchmarks/ and scripts/ (tests may look inside, as white-box tests do)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "src").with_suffix("")
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


def violations() -> list[str]:
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"),
             *(ROOT / "scripts").rglob("*.py")]
    out = []
    for f in files:
        here = _module_of(f) if f.is_relative_to(ROOT / "src") else ""
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
                    out.append(f"{f.relative_to(ROOT)}:{node.lineno}: {name}")
    return sorted(set(out))


def test_no_module_imports_another_packages_private_modules():
    found = violations()
    assert not found, "imports of another package's private modules:\n" + "\n".join(found)


def test_the_check_finds_a_private_import(tmp_path):
    assert _owner("veil.privacy._measure.obfuscators") == "veil.privacy"
    assert _owner("veil.solutions.face_privacy._job") == "veil.solutions.face_privacy"
    assert _owner("veil.data") is None
