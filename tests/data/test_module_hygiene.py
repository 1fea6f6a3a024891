"""The data stage's modules: no import cycles (top-level or deferred), no private names imported across
modules, none much over 400 lines (issue 12: one obvious home per concern)."""

from __future__ import annotations

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "bayling" / "data"


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in DATA.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayling.data."):
                deps.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = deps
    return graph


def test_no_import_cycles_in_the_data_stage():
    graph = imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for dep in graph.get(start, ()):
            if dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep})):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not cycles, cycles


def test_no_private_names_imported_across_modules():
    bad = []
    for path in DATA.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayling"):
                bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, bad


def test_modules_stay_small():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in DATA.glob("*.py")}
    assert max(sizes.values()) <= 420, sizes
