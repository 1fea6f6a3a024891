"""Helpers shared by tests/train (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "data" / "conversations.jsonl"


def make_data_dir(root: Path, n_train: int = 300) -> Path:
    """A bayling-build-data-shaped dir (train/*.jsonl + valid.jsonl) from the shipped real-text fixture."""
    lines = FIXTURE.read_text(encoding="utf-8").splitlines(keepends=True)
    (root / "train").mkdir(parents=True)
    half = n_train // 2
    (root / "train" / "00000.jsonl").write_text("".join(lines[:half]), encoding="utf-8")
    (root / "train" / "00001.jsonl").write_text("".join(lines[half:n_train]), encoding="utf-8")
    (root / "valid.jsonl").write_text("".join(lines[n_train:]), encoding="utf-8")
    return root
