"""SHA-256 of files: the one place that reads files into a hash.

Why one home: the token cache key, checkpoint manifests, the data build's manifest, the eval model
fingerprint and the merge swarm state all prove "these are the same bytes" with a file digest; five private
copies differed only in block size. :func:`sha256_file_cached` adds the (size, mtime_ns) cache the eval
fingerprint uses so an unchanged multi-GB model is not re-read on every resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

BLOCK = 1 << 22  # 4 MiB reads: large enough for throughput, small enough to never hold a weight file


def update_from_file(h, path: str | Path) -> None:
    """Feed a file's bytes into the hash object ``h`` (streamed, never the whole file in memory)."""
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            h.update(block)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of one file's bytes."""
    h = hashlib.sha256()
    update_from_file(h, path)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Digest of a file, or of a directory's files (relative names + contents, sorted)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode("utf-8") + b"\0")
        h.update(sha256_file(p).encode("ascii"))
    return h.hexdigest()


def sha256_file_cached(path: Path, cache: MutableMapping[str, Any]) -> dict[str, Any]:
    """``{"size", "mtime_ns", "sha256"}`` of ``path``, reusing ``cache[str(path)]`` when size and mtime match.

    ``cache`` is the caller's persisted JSON mapping; the (possibly new) entry is stored back into it. A file
    rewritten in place gets a new size or mtime and is hashed again.
    """
    st = path.stat()
    key = str(path)
    entry = cache.get(key)
    if not (isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns):
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
    cache[key] = entry
    return entry
