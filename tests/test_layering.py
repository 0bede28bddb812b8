"""The package graph of DESIGN.md: traces, rtl_models and mapping are leaves; cosim may import them; nas may
import everything; nothing imports upward (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("traces", "rtl_models", "mapping", "cosim", "nas")
ALLOWED = {
    "traces": set(),
    "rtl_models": set(),
    "mapping": set(),
    "cosim": {"traces", "rtl_models", "mapping"},
    "nas": {"traces", "rtl_models", "mapping", "cosim"},
}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_upward(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, mod in _imports(path):
            top = mod.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)
