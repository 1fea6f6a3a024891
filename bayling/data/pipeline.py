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

import json
import shutil
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bayling.config import to_dict
from bayling.data import sources as src_mod
from bayling.data.assemble import assemble
from bayling.data.recipe import Recipe
from bayling.data.shards import STATE_FORMAT, load_states
from bayling.data.synth import SynthStats, record_group, row_groups
from bayling.data.write import TOOL, atomic_dir, write_json
from bayling.errors import BaylingError, ConfigError, DataError


@dataclass
class BuildOptions:
    skip_bad_records: bool = False
    tokenizer: str | None = None
    shard: tuple[int, int] = (0, 1)
    progress: bool = True
    workers: int = 1


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
        # Per-language accounting (the sampling group: zh/en for instructions, X for cross-lingual records).
        self.langs: dict[str, Counter[str]] = defaultdict(Counter)
        self.synth_stats = SynthStats()
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
                        self.langs[spec.category]["rows_read"] += 1
                        yield [s, i, 0], rec, None
                continue
            for i, row in enumerate(self._rows(name, spec)):
                if owns(shard, name, i):
                    self.read[name] += 1
                    for lang in row_groups(row.texts):
                        self.langs[lang]["rows_read"] += 1
                    for j, rec in enumerate(self.stages.synthesize(row, name, self.synth_stats)):
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
        counts = self.langs[record_group(rec)]
        counts["records"] += 1
        reason = self.stages.check(rec, texts)
        if reason:
            self.filtered[reason] += 1
            counts[f"filtered:{reason}"] += 1
            return None
        hit = self.stages.contamination(rec)
        if hit:
            self.decontaminated[hit] += 1
            counts["decontaminated"] += 1
            return None
        self.kept += 1
        counts["kept"] += 1
        row: dict[str, Any] = {"k": key, "sig": self.stages.signature(rec, texts), "r": rec}
        if self.count_tokens is not None:
            row["tok"] = self.count_tokens(rec)
        return row


def process_shard(recipe: Recipe, opts: BuildOptions, out: Path) -> dict[str, Any]:
    """Phase 1 into ``out`` (atomically): records.jsonl, rejects.jsonl, state.json."""
    with atomic_dir(Path(out), markers=("state.json",)) as tmp:
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
        "tool": TOOL,
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
        "languages": language_counts(work.langs, work.synth_stats),
    }
    write_json(folder / "state.json", state)
    return state


def merge(shard_dirs: list[Path], out: Path, progress: bool = True) -> dict[str, Any]:
    """Phase 2: shard folders -> the finished data directory ``out`` (atomically)."""
    states = load_states([Path(d) for d in shard_dirs])
    target = Path(out).resolve()
    for d in shard_dirs:
        if Path(d).resolve() == target or target in Path(d).resolve().parents:
            raise DataError("--out is one of the shard folders being merged (or holds one); choose a new folder",
                            path=out)
    with atomic_dir(Path(out)) as tmp:
        return assemble(states, tmp, progress=progress)


def language_counts(langs: dict[str, Counter[str]], stats: SynthStats) -> dict[str, dict[str, int]]:
    """Phase-1 counters per language, synthesis drops included (summed over shards at the merge)."""
    out: dict[str, Counter[str]] = {k: Counter(v) for k, v in langs.items()}
    for lang, n in stats.empty_by_language.items():
        out.setdefault(lang, Counter())["synth:empty_sentence"] += n
    for lang, n in stats.no_direction_by_language.items():
        out.setdefault(lang, Counter())["synth:row_without_direction"] += n
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def _die_with_parent() -> None:
    """Worker initialiser: a worker is killed when its parent dies (kill -9 leaves no orphans writing)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _slice_job(job: tuple[Recipe, BuildOptions, Path]) -> dict[str, Any] | str:
    """One worker's slice; a user error comes back as its one-line text (exceptions lose their fields
    when pickled), so the parent prints exactly one error line however many workers there are."""
    recipe, opts, folder = job
    try:
        return _process_into(recipe, opts, folder)
    except BaylingError as err:
        return f"{type(err).__name__}\t{err}"


def _process_slices(recipe: Recipe, opts: BuildOptions, work: Path) -> list[dict[str, Any]]:
    """Phase 1 as ``opts.workers`` slices in parallel processes (or in this process for one worker)."""
    import dataclasses
    import multiprocessing

    n = max(1, opts.workers)
    jobs = []
    for i in range(n):
        folder = work / f"shard-{i}"
        folder.mkdir(parents=True)
        jobs.append((recipe, dataclasses.replace(opts, shard=(i, n), progress=opts.progress and n == 1), folder))
    if n == 1:
        results: list[Any] = [_process_into(*jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(n, initializer=_die_with_parent) as pool:
            results = []
            for res in pool.imap(_slice_job, jobs):
                if isinstance(res, str):
                    pool.terminate()
                    raise BaylingError(res.split("\t", 1)[1])
                results.append(res)
    for state, (_, _, folder) in zip(results, jobs):
        state["_dir"] = folder
    return results


def build(recipe: Recipe, opts: BuildOptions, out: Path) -> dict[str, Any]:
    """Both phases on this machine, through the same code as a sharded build: phase 1 as ``opts.workers``
    slices (parallel processes), then the same merge, so any worker count gives the same bytes."""
    with atomic_dir(Path(out)) as tmp:
        states = _process_slices(recipe, opts, tmp / ".work")
        manifest = assemble(states, tmp, progress=opts.progress)
        shutil.rmtree(tmp / ".work", ignore_errors=True)
        return manifest


