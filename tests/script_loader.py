"""Load a repository script (benchmarks/, scripts/, a test harness) as a module by its path.

Why: those folders are not packages, and several tests exercise a script's functions directly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_script(relpath: str, name: str):
    """``relpath`` from the repository root, imported as module ``name`` (registered in ``sys.modules``:
    dataclasses look their module up while a class is built)."""
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
