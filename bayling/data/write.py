"""Writing a data directory so that nothing half-written ever looks finished.

Everything goes into a hidden temporary sibling of the destination (``.NAME.tmp-PID``) and becomes
visible with one ``rename`` at the very end; manifest.json is the last file written inside it. A build
killed with ``kill -9`` therefore leaves only a hidden ``*.tmp-*`` folder (removed by the next build),
never a directory that a trainer could mistake for a complete one.

Records are serialised one way only (:func:`dumps_record`) so the same records give the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bayling.errors import BaylingError
from bayling.hashing import sha256_file

CANONICAL_KEYS = ("id", "messages", "source", "category", "task", "langs", "direction")


def canonical_order(record: dict[str, Any]) -> dict[str, Any]:
    """The documented key order first, any extra keys after, sorted (stable bytes for equal records)."""
    out = {k: record[k] for k in CANONICAL_KEYS if k in record}
    for k in sorted(record):
        if k not in out and not k.startswith("_"):
            out[k] = record[k]
    return out


def dumps_record(record: dict[str, Any]) -> str:
    """One JSON line (UTF-8 text, not \\u-escaped, so Chinese stays readable in the files)."""
    return json.dumps(canonical_order(record), ensure_ascii=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> None:
    """Remove temporary siblings of ``out`` left by builds that were killed (their PID is gone)."""
    if not out.parent.is_dir():
        return
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


TOOL = "bayling-build-data"


def made_by_tool(folder: Path, markers: tuple[str, ...] = ("manifest.json",)) -> bool:
    """Whether ``folder`` holds a marker file this tool wrote there before (a finished build's manifest.json,
    or a shard folder's state.json): only such a folder may be replaced."""
    for name in markers:
        p = folder / name
        if not p.is_file():
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and (data.get("tool") == TOOL or str(data.get("format", "")).startswith(
                ("bayling-data/", "bayling-build-data-shard/"))):
            return True
    return False


def check_out_dir(out: Path, markers: tuple[str, ...] = ("manifest.json",)) -> None:
    """The folder-replacing rule: ``out`` may be replaced only if it is absent, empty, or carries a marker
    this tool wrote. Anything else is a user's folder (``--out runs`` typed for ``--out runs/data``): refuse
    before touching anything."""
    out = Path(out)
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        raise BaylingError("--out is the current directory or one of its parents; the build replaces its output "
                           "folder as a whole, so give a new or previously built folder", path=out)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a regular file" if parent == out else f"is under {parent}, which is a regular file"
            raise BaylingError(f"output path {what}; --out must be a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not made_by_tool(out, markers):
        raise BaylingError(f"output folder exists, is not empty and was not written by {TOOL} (no "
                           f"{' or '.join(markers)} of it); it is left untouched: choose a new --out, or "
                           f"empty/remove it yourself", path=out)


@contextmanager
def atomic_dir(out: Path, markers: tuple[str, ...] = ("manifest.json",)) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``out`` only if the block finishes.

    ``out`` is checked first (:func:`check_out_dir`): a folder this tool did not write is never replaced.
    """
    out = Path(out)
    check_out_dir(out, markers)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as err:
        raise BaylingError(f"cannot create the output folder: {err.strerror or err}", path=out) from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


class ShardWriter:
    """Write JSONL lines into ``train/part-NNNNN.jsonl`` files of at most ``shard_size`` lines."""

    def __init__(self, folder: Path, shard_size: int, prefix: str = "part") -> None:
        self.folder = folder
        self.shard_size = max(1, shard_size)
        self.prefix = prefix
        self.files: list[dict[str, Any]] = []
        self._fh = None
        self._count = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write_line(self, line: bytes) -> None:
        if self._fh is None or self._count >= self.shard_size:
            self._open_next()
        assert self._fh is not None
        self._fh.write(line)
        self._count += 1
        self.files[-1]["records"] += 1

    def _open_next(self) -> None:
        self.close()
        name = f"{self.prefix}-{len(self.files):05d}.jsonl"
        self._fh = open(self.folder / name, "wb")
        self._count = 0
        self.files.append({"path": f"{self.folder.name}/{name}", "records": 0})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_json(path: Path, data: Any) -> None:
    """Pretty, key-stable JSON with a final newline (diffs and byte comparisons stay meaningful)."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def file_entries(root: Path, rel_paths: list[str]) -> list[dict[str, Any]]:
    """``[{path, bytes, sha256}]`` for the manifest, so a user can verify the shards they train on."""
    out = []
    for rel in rel_paths:
        p = root / rel
        out.append({"path": rel, "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    return out
