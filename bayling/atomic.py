"""Atomic file writes shared by every stage: a reader (or a resumed run) sees the old file or the new one,
never half of one — the property checkpoints, resumable evaluation and build outputs rely on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_with(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary sibling that keeps ``path``'s suffix, then rename it over ``path``.

    For writers that take a file name (matplotlib's ``savefig`` picks the format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
