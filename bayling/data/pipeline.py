"""The build, as two phases that run the same way on one machine or on a Slurm array.

Phase 1, :func:`process_shard` (``--shard I/N``): read every source, keep the items whose stable hash
falls in slice I, and do all per-record work on them: synthesise translation instructions, filter,
decontaminate, compute dedup signatures (and token counts). It writes ``records.jsonl`` (kept records
tagged with their global order key), ``rejects.jsonl`` and ``state.json`` (counts, inputs).

Phase 2, :func:`merge`: stream all shards back in global order (a k-way merge on the order key), dedup
globally (first occurrence wins), spill unique records to one file while keeping only compact numpy
metadata in memory, then mix and write. A plain :func:`build` runs phase 1 as slice 0/1 and then the
very same merge, which is why a merged build equals a single-machine build byte for byte.
"""

from __future__ import annotations

import heapq
import json
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bayling.config import to_dict
from bayling.data import sources as src_mod
from bayling.data.recipe import Recipe
from bayling.data.write import atomic_dir, write_json
from bayling.errors import BaylingError, ConfigError, DataError, read_json

STATE_FORMAT = "bayling-build-data-shard/1"


@dataclass
class BuildOptions:
    skip_bad_records: bool = False
    tokenizer: str | None = None
    shard: tuple[int, int] = (0, 1)
    progress: bool = True


def owns(shard: tuple[int, int], *key: object) -> bool:
    """Slice membership by a process-independent hash of the item's key (source name + position)."""
    i, n = shard
    if n == 1:
        return True
    text = "\t".join(str(k) for k in key)
    return zlib.crc32(text.encode("utf-8")) % n == i


class TokenCounter:
    """Counts tokens of every message with ``--tokenizer`` (local dir or hub id)."""

    def __init__(self, name: str) -> None:
        from bayling.tokenizer import load_tokenizer

        self.name = name
        self.tok = load_tokenizer(name)

    def __call__(self, record: dict[str, Any]) -> int:
        texts = [m["content"] for m in record["messages"]]
        return sum(len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"])


class ShardWork:
    """Per-record work of phase 1; one instance per shard, counters summed at merge."""

    def __init__(self, recipe: Recipe, opts: BuildOptions, rejects: Any) -> None:
        self.recipe, self.opts, self.rejects = recipe, opts, rejects
        self.read: Counter[str] = Counter()
        self.bad: Counter[str] = Counter()
        self.filtered: Counter[str] = Counter()
        self.decontaminated: Counter[str] = Counter()
        self.synthesised = 0
        self.kept = 0
        self.stages = src_mod.Stages(recipe)
        self.count_tokens: Callable[[dict[str, Any]], int] | None = (
            TokenCounter(opts.tokenizer) if opts.tokenizer else None
        )

    def on_bad(self, source: str) -> Callable[[Any], None]:
        """Reader callback: stop with a one-line error, or (``--skip-bad-records``) log to rejects.jsonl."""

        def handle(bad: Any) -> None:
            if not self.opts.skip_bad_records:
                raise DataError(bad.reason, path=bad.path, line=bad.line)
            if owns(self.opts.shard, "bad", source, bad.path, bad.line):
                self.bad[source] += 1
                row = {"source": source, "path": str(bad.path), "line": bad.line, "reason": bad.reason,
                       "raw": bad.raw if isinstance(bad.raw, str) else repr(bad.raw)}
                self.rejects.write(json.dumps(row, ensure_ascii=False) + "\n")

        return handle

    def items(self) -> Iterator[tuple[list[int], dict[str, Any], dict[str, str] | None]]:
        """(order key, record, parallel row texts or None) for this shard, in global order.

        The order key is (source index, item index, sub index): item = record or parallel row of the
        source (pivot-joined rows continue the numbering after the source's own rows).
        """
        shard = self.opts.shard
        for s, (name, kind, spec) in enumerate(src_mod.enabled_sources(self.recipe)):
            if kind == "instructions":
                for i, rec in enumerate(self.stages.instructions(name, spec, self.on_bad(name))):
                    if owns(shard, name, i):
                        self.read[name] += 1
                        yield [s, i, 0], rec, None
                continue
            for i, row in enumerate(self._rows(name, spec)):
                if owns(shard, name, i):
                    self.read[name] += 1
                    for j, rec in enumerate(self.stages.synthesize(row, name)):
                        self.synthesised += 1
                        yield [s, i, j], rec, row.texts

    def _rows(self, name: str, spec: Any) -> Iterator[Any]:
        """The source's rows, then (with ``pivot_with``) its X<->zh rows joined through English."""
        yield from self.stages.parallel_rows(name, spec, self.on_bad(name))
        if spec.pivot_with:
            other = self.recipe.parallel.get(spec.pivot_with)
            if other is None:
                raise ConfigError(f"no parallel source named '{spec.pivot_with}'",
                                  field=f"parallel.{name}.pivot_with")
            yield from self.stages.pivot_rows(spec, name, other, spec.pivot_with, self.on_bad(name))

    def process(self, key: list[int], rec: dict[str, Any], texts: dict[str, str] | None) -> dict[str, Any] | None:
        """Filter and decontaminate one record; return the line to keep (with signature) or None."""
        reason = self.stages.check(rec, texts)
        if reason:
            self.filtered[reason] += 1
            return None
        hit = self.stages.contamination(rec)
        if hit:
            self.decontaminated[hit] += 1
            return None
        self.kept += 1
        row: dict[str, Any] = {"k": key, "sig": self.stages.signature(rec, texts), "r": rec}
        if self.count_tokens is not None:
            row["tok"] = self.count_tokens(rec)
        return row


def process_shard(recipe: Recipe, opts: BuildOptions, out: Path) -> dict[str, Any]:
    """Phase 1 into ``out`` (atomically): records.jsonl, rejects.jsonl, state.json."""
    with atomic_dir(Path(out)) as tmp:
        state = _process_into(recipe, opts, tmp)
        i, n = opts.shard
        summary = [f"# Shard {i}/{n} of recipe '{recipe.name}' (seed {recipe.seed})", "",
                   f"- records kept for the merge: {state['kept']:,} (records.jsonl)",
                   f"- read per source: {state['read']}", f"- bad records (rejects.jsonl): {state['bad_records']}",
                   f"- filtered: {state['filtered']}", f"- decontaminated: {state['decontaminated']}", "",
                   "Combine all N shard folders with `bayling-build-data merge --out DIR SHARD_DIR...`.", ""]
        (tmp / "SHARD.md").write_text("\n".join(summary), encoding="utf-8")
        return state


def _process_into(recipe: Recipe, opts: BuildOptions, folder: Path) -> dict[str, Any]:
    with open(folder / "rejects.jsonl", "w", encoding="utf-8") as rejects, \
            open(folder / "records.jsonl", "w", encoding="utf-8") as records:
        work = ShardWork(recipe, opts, rejects)
        bar = tqdm(desc=f"shard {opts.shard[0]}/{opts.shard[1]}: read, synthesise, filter", unit=" rec",
                   disable=None if opts.progress else True, mininterval=1.0)
        for key, rec, texts in work.items():
            bar.update()
            row = work.process(key, rec, texts)
            if row is not None:
                records.write(json.dumps(row, ensure_ascii=False) + "\n")
        bar.close()
    state = {
        "format": STATE_FORMAT,
        "shard": list(opts.shard),
        "recipe": to_dict(recipe),
        "tokenizer": opts.tokenizer,
        "skip_bad_records": opts.skip_bad_records,
        "inputs": src_mod.describe_inputs(recipe),
        "read": dict(sorted(work.read.items())),
        "bad_records": dict(sorted(work.bad.items())),
        "synthesised": work.synthesised,
        "filtered": dict(sorted(work.filtered.items())),
        "decontaminated": dict(sorted(work.decontaminated.items())),
        "kept": work.kept,
    }
    write_json(folder / "state.json", state)
    return state


def load_states(shard_dirs: list[Path]) -> list[dict[str, Any]]:
    """Read and cross-check the shard folders: same recipe, tokenizer and N, every slice exactly once."""
    states = []
    for d in shard_dirs:
        p = Path(d) / "state.json"
        if not p.is_file():
            raise DataError("not a finished shard folder (no state.json); rerun its `--shard I/N` job", path=d)
        st = read_json(p, "shard state")
        if st.get("format") != STATE_FORMAT:
            raise DataError(f"unknown shard format {st.get('format')!r}", path=p)
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


def merge(shard_dirs: list[Path], out: Path, progress: bool = True) -> dict[str, Any]:
    """Phase 2: shard folders -> the finished data directory ``out`` (atomically)."""
    from bayling.data.assemble import assemble

    states = load_states([Path(d) for d in shard_dirs])
    with atomic_dir(Path(out)) as tmp:
        return assemble(states, tmp, progress=progress)


def build(recipe: Recipe, opts: BuildOptions, out: Path) -> dict[str, Any]:
    """Both phases in one process (slice 0/1), through the same code as a sharded build."""
    from bayling.data.assemble import assemble

    opts.shard = (0, 1)
    with atomic_dir(Path(out)) as tmp:
        work = tmp / ".work" / "shard-0"
        work.mkdir(parents=True)
        state = _process_into(recipe, opts, work)
        state["_dir"] = work
        manifest = assemble([state], tmp, progress=opts.progress)
        shutil.rmtree(tmp / ".work", ignore_errors=True)
        return manifest


def check_not_empty(n: int, what: str) -> None:
    if n == 0:
        raise BaylingError(f"the build produced no {what}; check the sources, filters and decontamination "
                           f"counts (run with a smaller filter or more data)")
