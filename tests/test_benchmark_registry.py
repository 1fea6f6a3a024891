"""`make bench` runs what BENCHMARKS.md documents: every registered command appears there verbatim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from script_loader import load_script

REPO = Path(__file__).resolve().parent.parent


def _run_all():
    return load_script("benchmarks/run_all.py", "run_all")


def test_every_registered_benchmark_is_documented_with_its_command():
    listed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--list"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    doc = (REPO / "BENCHMARKS.md").read_text()
    registry = _run_all().BENCHMARKS
    assert len(listed) == len(registry) >= 4
    for command in listed:
        assert command in doc, f"not documented in BENCHMARKS.md: {command}"


def test_every_script_in_benchmarks_is_registered():
    registry = _run_all().BENCHMARKS
    scripts = {b.script for b in registry.values()}
    on_disk = {p.name for p in (REPO / "benchmarks").glob("*.py")} - {"run_all.py"}
    helpers = {p.name for p in (REPO / "benchmarks").glob("_*.py")}
    assert on_disk - helpers <= scripts, f"benchmark scripts missing from run_all.py: {on_disk - helpers - scripts}"
