"""The seam between the recipe and the per-record stages (readers, synthesis, filters, dedup, decontam).

The pipeline talks to those modules only through :class:`Stages`, so each stage module keeps its own
small API and the orchestration stays readable. Also here: what the manifest records about the inputs
(path, kind, sha256) and the package versions a build ran with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from bayling.config import from_dict
from bayling.data.recipe import DedupSettings, InstructionSet, ParallelSet, Recipe
from bayling.hashing import sha256_tree

PACKAGES = ("bayling", "numpy", "pyarrow", "py3langid", "datasets", "transformers", "tokenizers", "matplotlib")


def enabled_sources(recipe: Recipe) -> list[tuple[str, str, Any]]:
    """(name, kind, spec) in recipe order; the cross-lingual arm is skipped when switched off."""
    out: list[tuple[str, str, Any]] = [(n, "instructions", s) for n, s in recipe.instructions.items() if s.enabled]
    if recipe.cross_lingual and recipe.synth.enabled:
        out += [(n, "parallel", s) for n, s in recipe.parallel.items() if s.enabled]
    return out


def _spec(name: str, src: InstructionSet | ParallelSet) -> Any:
    from bayling.data.records import SourceSpec

    if isinstance(src, InstructionSet):
        return SourceSpec(path=src.path, format=src.format, name=name, category=src.category, task=src.task,
                          split=src.split, config=src.config, files=src.files)
    return SourceSpec(path=src.path, format=src.format, name=name, category="cross_lingual",
                      langs=list(src.langs), tgt_path=src.tgt_path, split=src.split, config=src.config,
                      files=src.files)


def _read(name: str, src: InstructionSet | ParallelSet, on_bad: Callable[[Any], None]) -> Iterator[Any]:
    from bayling.data.readers import read_source

    return read_source(_spec(name, src), on_bad)


def _with_hint(key: str, make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Offline hub errors also name the recipe key that takes a local copy (``key=DIR``)."""
    from bayling.errors import OfflineError

    try:
        yield from make()
    except OfflineError as err:
        raise OfflineError(f"{err.message}; or override it: {key}=DIR", path=err.path, line=err.line,
                           field=err.field) from None


def _window(items: Iterator[Any], skip: int, limit: int) -> Iterator[Any]:
    return itertools.islice(items, skip, skip + limit if limit else None)


class Stages:
    """Per-record stages configured from one recipe (built once per shard)."""

    def __init__(self, recipe: Recipe) -> None:
        from bayling.data.decontam import ContaminationIndex
        from bayling.data.dedup import Deduplicator

        self.recipe = recipe
        # One seed for the whole build: the synthesiser follows the recipe's (and --seed's) seed.
        self.synth_cfg = dataclasses.replace(recipe.synth, seed=recipe.seed)
        self._pair_memo: dict[tuple[str, str], str | None] = {}
        self._memo_row: dict[str, str] | None = None
        d = recipe.dedup
        self.dedup = Deduplicator(threshold=d.threshold, num_perm=d.num_perm, ngram=d.ngram,
                                  bands=_dedup_bands(d) or None)
        self.decontam = (ContaminationIndex.from_paths(recipe.decontaminate.paths, ngram=recipe.decontaminate.ngram)
                         if recipe.decontaminate.paths else None)

    def instructions(self, name: str, src: InstructionSet, on_bad: Callable[[Any], None]) -> Iterator[dict]:
        return _with_hint(f"instructions.{name}.path", lambda: _window(_read(name, src, on_bad), 0, src.limit))

    def parallel_rows(self, name: str, src: ParallelSet, on_bad: Callable[[Any], None]) -> Iterator[Any]:
        return _with_hint(f"parallel.{name}.path",
                          lambda: _window(_read(name, src, on_bad), src.skip_rows, src.limit))

    def synthesize(self, row: Any, source: str, stats: Any = None) -> Iterator[dict]:
        from bayling.data.synth import synthesize

        return synthesize([(row.key, row.texts)], self.synth_cfg, source, stats)

    def pivot_rows(self, x_src: ParallelSet, x_name: str, pivot_src: ParallelSet, pivot_name: str,
                   on_bad: Callable[[Any], None]) -> Iterator[Any]:
        """X<->zh rows joined on identical English from an X<->en and an en<->zh source."""
        from bayling.data.pivot import pivot_join
        from bayling.data.records import ParallelRow

        x_rows = ((r.key, r.texts) for r in self.parallel_rows(x_name, x_src, on_bad))
        zh_rows = ((r.key, r.texts) for r in self.parallel_rows(pivot_name, pivot_src, on_bad))
        for key, texts in pivot_join(x_rows, zh_rows):
            yield ParallelRow(key, dict(texts))

    def check(self, record: dict, texts: dict[str, str] | None = None) -> str | None:
        """Record-level checks; for translation records also the sentence pair(s) they were made from."""
        from bayling.data.filters import check_record

        if texts is not None:
            reason = self._check_pairs(record, texts)
            if reason:
                return reason
        return check_record(record, self.recipe.filters)

    def _check_pairs(self, record: dict, texts: dict[str, str]) -> str | None:
        """check_pair on (first language, each other language) of the record, memoised per row."""
        from bayling.data.filters import check_pair

        if texts is not self._memo_row:  # a new row: the memo belongs to one row only
            self._memo_row, self._pair_memo = texts, {}
        langs = record.get("langs") or []
        for other in langs[1:]:
            a, b = sorted((langs[0], other))
            key = (a, b)
            if key not in self._pair_memo:
                self._pair_memo[key] = check_pair(texts[a].strip(), texts[b].strip(), a, b, self.recipe.filters)
            if self._pair_memo[key]:
                return self._pair_memo[key]
        return None

    def contamination(self, record: dict) -> str | None:
        if self.decontam is None:
            return None
        return self.decontam.check([m["content"] for m in record["messages"]])

    def signature(self, record: dict, texts: dict[str, str] | None = None) -> list[Any]:
        """JSON-able dedup signature (stored in the shard files between the two phases).

        Instruction records are compared on their prompt side. Translation records share a long prompt
        template, so they are compared on what varies: the languages in order plus the source sentence
        (``deu->eng`` and ``deu->zho`` of one sentence are different examples, not duplicates).
        """
        from bayling.data.dedup import hash64, prompt_text

        if texts is None or not record.get("langs"):
            sig = self.dedup.signature_text(prompt_text(record))
            return [sig.exact, list(sig.bands) if self.recipe.dedup.near else []]
        # Compare the source sentence, but only among records with the same language sequence: the
        # salt keeps deu->eng and deu->zho of one sentence apart in both the exact and the LSH keys.
        langs = record["langs"]
        sig = self.dedup.signature_text(texts[langs[0]])
        salt = "->".join(langs)
        bands = [hash64(f"{salt}:{b}") for b in sig.bands] if self.recipe.dedup.near else []
        return [hash64(f"{salt}:{sig.exact}"), bands]


def _dedup_bands(cfg: DedupSettings) -> int:
    from bayling.data.dedup import choose_bands

    return choose_bands(cfg.threshold, cfg.num_perm)[0] if cfg.near else 0


def load_signature(data: list[Any]) -> Any:
    from bayling.data.dedup import Signature

    return Signature(data[0], tuple(data[1]))


class _NoDedup:
    def add(self, sig: Any) -> None:
        return None


def new_dedup_index(recipe: dict[str, Any]) -> Any:
    """A fresh global dedup index configured from the (plain-dict) recipe stored in the shard states."""
    from bayling.data.dedup import DedupIndex

    cfg = from_dict(DedupSettings, recipe["dedup"])
    return DedupIndex(num_bands=_dedup_bands(cfg)) if cfg.enabled else _NoDedup()


def _read_files(src: InstructionSet | ParallelSet, path: Path) -> list[Path]:
    """The files a source reads: a snapshot folder holds many configs, only this one's files count."""
    if path.is_dir() and src.format != "flores":
        from bayling.data.snapshot import data_files

        return data_files(path, src.config, src.split, src.files)
    return [path]


def describe_inputs(recipe: Recipe) -> list[dict[str, Any]]:
    """What went in: name, kind, path(s), hub id if read from a snapshot, and sha256 of the files read
    (None for hub ids: their revision is on the hub). Digests are cached, so 100 sources of one snapshot
    folder hash each file once."""
    out = []
    memo: dict[Path, str] = {}

    def digest(files: list[Path]) -> str:
        for f in files:
            if f not in memo:
                memo[f] = sha256_tree(f)
        if len(files) == 1:
            return memo[files[0]]
        return hashlib.sha256("".join(f"{f.name}\0{memo[f]}" for f in files).encode()).hexdigest()

    for name, kind, src in enabled_sources(recipe):
        for key in ("path", "tgt_path"):
            value = getattr(src, key, "")
            if not value:
                continue
            p = Path(value)
            entry = {"name": name if key == "path" else f"{name}:tgt", "kind": kind, "path": value,
                     "sha256": digest(_read_files(src, p)) if p.exists() else None}
            if getattr(src, "hub_id", None) and key == "path":
                entry["hub_id"] = src.hub_id
            out.append(entry)
    for value in recipe.decontaminate.paths:
        p = Path(value)
        out.append({"name": p.name, "kind": "decontaminate", "path": value,
                    "sha256": sha256_tree(p) if p.exists() else None})
    return out


def package_versions() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out

