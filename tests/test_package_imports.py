"""No two modules of the package import each other, directly or through others, top-level or deferred
(issue 12: a shared part belongs in its own module). The data stage's own hygiene test adds size and
private-name rules; this one covers every stage, which is where the checkpoint <-> resume_guard cycle hid."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bayling"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayling"):
                for alias in node.names:  # `from bayling.train import resume_guard` names a module
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
        graph[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + ".")
                       and not d.endswith("__init__")} - {"bayling"}
    return graph


def test_no_import_cycles_anywhere_in_the_package():
    graph = import_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for dep in graph.get(start, ()):
            if dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep})):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not cycles, cycles


def test_the_graph_sees_module_imports_written_as_from_package_import_module():
    graph = import_graph()
    assert "bayling.train.resume_guard" in graph["bayling.train.checkpoint"]
