"""Helpers for the data-builder tests: a small real recipe, running the CLI, comparing data directories."""

from __future__ import annotations

import json
from pathlib import Path

from bayling.cli.build_data import main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "recipes" / "demo.yaml"

# The demo recipe on real samples, shrunk so a build takes a second or two.
SMALL = [
    "instructions.alpaca_en.limit=150",
    "instructions.sharegpt_en.limit=100",
    "instructions.belle_zh.limit=150",
    "parallel.flores_demo.limit=30",
    "parallel.flores_demo.langs=[eng,zho_simpl,deu,fra,rus]",
    "mix.target_total=600",
    "output.shard_size=150",
]


def build(out: Path, *extra: str, overrides: list[str] | None = None, recipe: Path = DEMO) -> int:
    """Run ``bayling-build-data`` in-process on the small demo recipe; returns the exit code."""
    argv = ["--no-progress", "--recipe", str(recipe), "--out", str(out), *extra, *SMALL, *(overrides or [])]
    return main(argv)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), hidden ones included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def train_records(out: Path) -> list[dict]:
    rows: list[dict] = []
    for p in sorted((out / "train").glob("*.jsonl")):
        rows += records(p)
    return rows


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))
