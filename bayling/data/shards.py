"""Shard folders between the two phases of a build: their state files, cross-checks and the k-way merge.

Why a module of its own: both the pipeline (phase 1 writes shards) and the assembler (phase 2 reads them)
need these, and neither should import the other for them (that was the assemble <-> pipeline cycle).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bayling.errors import BaylingError, DataError, read_json

STATE_FORMAT = "bayling-build-data-shard/1"
STATE_KEYS = ("shard", "recipe", "tokenizer", "skip_bad_records", "inputs", "read", "bad_records", "synthesised",
              "filtered", "decontaminated", "kept", "languages")


def load_states(shard_dirs: list[Path]) -> list[dict[str, Any]]:
    """Read and cross-check the shard folders: same recipe, tokenizer and N, every slice exactly once."""
    states = []
    for d in shard_dirs:
        p = Path(d) / "state.json"
        if not p.is_file():
            raise DataError("not a finished shard folder (no state.json); rerun its `--shard I/N` job", path=d)
        st = read_json(p, "shard state")
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
            raise DataError(f"unknown shard format {st.get('format') if isinstance(st, dict) else st!r}", path=p)
        absent = [k for k in STATE_KEYS if k not in st]
        if absent:
            raise DataError(f"shard state.json lacks {', '.join(absent)}; rerun that shard's `--shard I/N` job",
                            path=p)
        st["_dir"] = Path(d)
        states.append(st)
    first = states[0]
    for st in states[1:]:
        for key in ("recipe", "tokenizer", "skip_bad_records", "inputs"):
            if st[key] != first[key]:
                raise DataError(f"shard differs from {first['_dir']} in '{key}'; all shards must come from "
                                f"the same recipe, options and inputs", path=st["_dir"])
    n = first["shard"][1]
    seen = sorted(st["shard"][0] for st in states)
    if any(st["shard"][1] != n for st in states) or seen != list(range(n)):
        missing = sorted(set(range(n)) - set(seen))
        raise DataError(f"need each of the {n} shards exactly once; got slices {seen}"
                        + (f", missing {missing}" if missing else ""))
    return sorted(states, key=lambda st: st["shard"][0])


def iter_merged(states: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """All shards' kept records in global order (each shard file is already sorted by its key)."""

    def lines(st: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with open(st["_dir"] / "records.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    return heapq.merge(*(lines(st) for st in states), key=lambda row: row["k"])


def check_not_empty(n: int, what: str) -> None:
    if n == 0:
        raise BaylingError(f"the build produced no {what}; check the sources, filters and decontamination "
                           f"counts (run with a smaller filter or more data)")
