"""Package-wide module hygiene (issue 12): no private names used across modules, modules under ~400 lines,
and ONE home for each shared piece, so a second copy (the way five file-hashing helpers and three dtype maps
grew) fails here instead of drifting. Import cycles are tests/test_package_imports.py's job."""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bayling"
MAX_LINES = 400


@functools.cache
def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE.parent)): ast.parse(p.read_text(encoding="utf-8"))
            for p in sorted(PACKAGE.rglob("*.py"))}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_names_imported_or_reached_across_modules():
    bad = []
    for path, tree in modules().items():
        imported: set[str] = set()  # local names bound to bayling modules/objects by an import
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayling"):
                bad += [f"{path}: from {node.module} import {a.name}" for a in node.names if private(a.name)]
                imported |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("bayling")}
        for node in ast.walk(tree):  # `from bayling.train import checkpoint as ckpt` ... `ckpt._helper`
            if isinstance(node, ast.Attribute) and private(node.attr):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in imported:
                    bad.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, bad


def test_modules_stay_small():
    sizes = {p: len((PACKAGE.parent / p).read_text(encoding="utf-8").splitlines()) for p in modules()}
    big = {p: n for p, n in sizes.items() if n > MAX_LINES}
    assert not big, f"split these by responsibility: {big}"


def where(predicate) -> dict[str, list[int]]:
    """Modules (and lines) whose AST has a node for which ``predicate(node)`` holds."""
    found: dict[str, list[int]] = defaultdict(list)
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if predicate(node):
                found[path].append(node.lineno)
    return dict(found)


def is_ignore_index(node: ast.AST) -> bool:
    """The literal -100 (the label every loss ignores), written anywhere."""
    return (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and node.operand.value == 100)


def is_torch_dtype_map(node: ast.AST) -> bool:
    """A dict literal whose values are ``torch.<dtype>`` attributes."""
    return isinstance(node, ast.Dict) and any(
        isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "torch"
        and v.attr in ("bfloat16", "float16", "float32") for v in node.values)


def is_own_file_lookup(node: ast.AST) -> bool:
    """``Path(__file__)`` (a module locating the checkout relative to itself)."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Path"
            and any(isinstance(a, ast.Name) and a.id == "__file__" for a in node.args))


def is_file_read_into_hash(node: ast.AST) -> bool:
    """A function that reads file bytes (open(..., "rb") or .read_bytes()) into a hash (sha256 or .update)."""
    if not isinstance(node, ast.FunctionDef):
        return False
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    hashes = any(isinstance(c.func, ast.Attribute) and c.func.attr in ("sha256", "update") for c in calls)
    reads = any((isinstance(c.func, ast.Attribute) and c.func.attr == "read_bytes")
                or (isinstance(c.func, ast.Name) and c.func.id == "open"
                    and any(isinstance(a, ast.Constant) and a.value == "rb" for a in c.args)) for c in calls)
    return hashes and reads


def is_rename_over(node: ast.AST) -> bool:
    """A temp file renamed over its target by hand: ``tmp.replace(path)`` (Path.replace) or ``os.fsync``."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    f = node.func
    if f.attr == "fsync" and isinstance(f.value, ast.Name) and f.value.id == "os":
        return True
    return f.attr == "replace" and len(node.args) == 1 and not node.keywords  # str.replace takes two


ONE_HOME = {
    "IGNORE_INDEX (-100)": (is_ignore_index, "bayling/train/tokenize.py"),
    "config dtype name -> torch dtype map": (is_torch_dtype_map, "bayling/dtypes.py"),
    "repo-root lookup (Path(__file__))": (is_own_file_lookup, "bayling/paths.py"),
    "sha256 of a file": (is_file_read_into_hash, "bayling/hashing.py"),
    "atomic write (temp file + rename)": (is_rename_over, "bayling/atomic.py"),
}


def test_each_shared_piece_has_one_home():
    problems = []
    for what, (predicate, home) in ONE_HOME.items():
        found = where(predicate)
        assert home in found, f"{what}: expected its definition in {home}; the check no longer sees it"
        problems += [f"{what}: {path}:{lines} (use {home})" for path, lines in found.items() if path != home]
    assert not problems, problems


def test_the_one_home_checks_catch_a_second_copy():
    """Each predicate recognises the duplicate shapes this issue removed (so a failing-open check is caught)."""
    copies = {
        "IGNORE_INDEX (-100)": "IGNORE_INDEX = -100",
        "config dtype name -> torch dtype map": 'd = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]',
        "repo-root lookup (Path(__file__))": "REPO = Path(__file__).resolve().parents[2]",
        "sha256 of a file": ("def f(p):\n    h = hashlib.sha256()\n    with open(p, 'rb') as fh:\n"
                             "        h.update(fh.read())\n    return h.hexdigest()"),
        "atomic write (temp file + rename)": "tmp.write_text(text)\ntmp.replace(path)",
    }
    for what, source in copies.items():
        predicate = ONE_HOME[what][0]
        assert any(predicate(n) for n in ast.walk(ast.parse(source))), what
    assert not any(is_rename_over(n) for n in ast.walk(ast.parse('s.replace("a", "b")')))
