"""Readers: every input format -> canonical instruction records or aligned parallel rows.

Why one module: the builder must treat every source the same way -- strict UTF-8, compressed or not, every
bad record either raised as a one-line :class:`DataError` (``file:line: field 'x': problem``) or handed to the
caller's ``on_bad`` callback as a :class:`BadRecord` (the pipeline writes it to ``rejects.jsonl`` and counts it).
Nothing is ever dropped silently.

API (what the pipeline calls)
-----------------------------
``open_lines(path) -> Iterator[(line_no, str)]`` (from bayling.data.fileio)
    Lines of a plain/.gz/.zst file, decoded strictly (bad bytes -> DataError naming file and line).
``BadRecord(path, line, reason, raw, field)``, ``.to_json()`` for rejects.jsonl (from bayling.data.fileio).
    Errors that make the rest of a file unreadable (invalid UTF-8, a syntax error inside a JSON array, a
    corrupt archive, a file without a single record) are always raised, even with ``on_bad``.
``read_instructions(path, fmt="auto", *, source, category, task=None, on_bad=None) -> Iterator[dict]``
    fmt: ``auto`` (per record: ``conversations`` -> sharegpt, ``messages`` -> messages, ``instruction`` ->
    alpaca), ``alpaca``, ``sharegpt``, ``messages``. The file is a JSON array (streamed element by element,
    never loaded whole) or JSON lines. Records are canonical (docs/data-format.md): ids ``f"{source}:{index}"``
    where index counts elements/lines of the file (stable across runs and filters); ``langs`` is
    ``["zho_Hans"]`` for category zh, ``["eng_Latn"]`` for en, ``[]`` otherwise; ``task`` defaults to
    ``"general"``.
``read_flores_dir(path, langs=None, *, split="devtest", source="flores") -> Iterator[ParallelRow]``
``read_tsv_pairs(path, src_lang, tgt_lang, *, source, on_bad=None) -> Iterator[ParallelRow]``
``read_aligned_files(src_path, tgt_path, src_lang, tgt_lang, *, source) -> Iterator[ParallelRow]``
    ``ParallelRow(key, texts)``: ``key`` is ``f"{source}:{index}"`` (0-based line index), ``texts`` maps
    canonical language codes (bayling.languages) to sentences.
``read_hub_dataset(spec, on_bad=None)`` (bayling.data.hub_reader): a hub id through ``datasets.load_dataset`` (cached as Arrow, so
    shards do not download twice); offline (HF_*_OFFLINE or no connection) -> a one-line OfflineError naming
    the id and the ``huggingface-cli download --repo-type dataset ID --local-dir DIR`` fix. Instruction
    formats map each row like a file record; parallel hub data uses format ``translation`` (OPUS-style rows
    ``{"translation": {"en": ..., "de": ...}}``) with ``langs: [src, tgt]``.
``read_source(spec: SourceSpec, on_bad=None)``: dispatch on ``spec.format``; ``spec.kind`` says whether it
    yields instruction records (``"instruct"``) or ParallelRows (``"parallel"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bayling.data.fileio import BadRecord, OnBad, iter_json_records, open_lines, report_bad
from bayling.data.records import (
    CATEGORIES,
    INSTRUCT_FORMATS,
    ParallelRow,
    SourceSpec,
    canonical_code,
    instruction_records,
)
from bayling.errors import DataError
from bayling.hub import looks_like_hub_id

__all__ = ["BadRecord", "ParallelRow", "SourceSpec", "flores_files", "read_aligned_files", "read_flores_dir",
           "read_instructions", "read_source", "read_tsv_pairs"]


def read_instructions(
    path: str | Path, fmt: str = "auto", *, source: str, category: str, task: str | None = None,
    on_bad: OnBad = None,
) -> Iterator[dict[str, Any]]:
    """Canonical records from an Alpaca/ShareGPT/messages file (JSON array or JSONL, plain/.gz/.zst)."""
    if fmt not in INSTRUCT_FORMATS:
        raise DataError(f"unknown instruction format '{fmt}'; choose from {', '.join(INSTRUCT_FORMATS)}",
                        path=path)
    if category not in CATEGORIES:
        raise DataError(f"unknown category '{category}'; choose from {', '.join(CATEGORIES)}", path=path)
    spec = SourceSpec(path=str(path), format=fmt, name=source, category=category, task=task or "")
    yield from instruction_records(iter_json_records(path, on_bad), spec, str(path), on_bad)


# ---------------------------------------------------------------------------------------- parallel


def _count_rest(it: Iterator) -> int:
    return sum(1 for _ in it)


FLORES_SUFFIXES = (".devtest", ".dev")


def flores_files(path: str | Path, split: str = "devtest") -> dict[str, Path]:
    """Canonical code -> file for a FLORES-101/200 style directory (NAME.split[.gz|.zst], maybe under split/)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("FLORES directory not found", path=root)
    base = root / split if (root / split).is_dir() else root
    files: dict[str, Path] = {}
    suffix = f".{split}"
    for f in sorted(p for p in base.iterdir() if p.name.removesuffix(".gz").removesuffix(".zst").endswith(suffix)):
        code = canonical_code(f.name.removesuffix(".gz").removesuffix(".zst")[: -len(suffix)], f, field_name=None)
        if code in files:
            raise DataError(f"two files for language {code}: {files[code].name} and {f.name}", path=base)
        files[code] = f
    if not files:
        raise DataError(f"no *.{split} files in the FLORES directory", path=base, field="split")
    return files


def _aligned(key_prefix: str, files: dict[str, Path]) -> Iterator[ParallelRow]:
    codes = list(files)
    iters = [open_lines(files[c]) for c in codes]
    index = 0
    while True:
        rows = [next(it, None) for it in iters]
        ended = [r is None for r in rows]
        if all(ended):
            return
        if any(ended):
            counts = {c: index + (0 if e else 1 + _count_rest(it)) for c, e, it in zip(codes, ended, iters)}
            short = codes[ended.index(True)]
            long_ = codes[ended.index(False)]
            raise DataError(
                f"parallel files have different line counts: {files[short]} has {counts[short]} lines, "
                f"{files[long_]} has {counts[long_]}", path=files[short], line=counts[short] + 1,
            )
        yield ParallelRow(f"{key_prefix}:{index}", {c: r[1] for c, r in zip(codes, rows)})
        index += 1


def read_flores_dir(path: str | Path, langs: list[str] | None = None, *, split: str = "devtest",
                    source: str = "flores") -> Iterator[ParallelRow]:
    """Line-aligned per-language files (deu.devtest, zho_simpl.devtest, deu_Latn.devtest, ...)."""
    files = flores_files(path, split or "devtest")
    if langs:
        wanted = [canonical_code(code, path) for code in langs]
        missing = [c for c in wanted if c not in files]
        if missing:
            raise DataError(f"no FLORES file for language(s) {', '.join(missing)}", path=path, field="langs")
        files = {c: files[c] for c in wanted}
    return _aligned(source, files)


def read_aligned_files(src_path: str | Path, tgt_path: str | Path, src_lang: str, tgt_lang: str, *,
                       source: str) -> Iterator[ParallelRow]:
    """Two line-aligned files; different lengths -> DataError naming both files and their line counts."""
    src, tgt = canonical_code(src_lang), canonical_code(tgt_lang)
    if src == tgt:
        raise DataError(f"source and target language are the same ({src})", path=src_path, field="langs")
    return _aligned(source, {src: Path(src_path), tgt: Path(tgt_path)})


def read_tsv_pairs(path: str | Path, src_lang: str, tgt_lang: str, *, source: str,
                   on_bad: OnBad = None) -> Iterator[ParallelRow]:
    """``src<TAB>tgt`` lines; a line with another column count is a bad record."""
    src, tgt = canonical_code(src_lang, path), canonical_code(tgt_lang, path)
    if src == tgt:
        raise DataError(f"source and target language are the same ({src})", path=path, field="langs")
    for no, text in open_lines(path, on_bad):
        cols = text.split("\t")
        if len(cols) != 2:
            report_bad(on_bad, BadRecord(str(path), no, f"expected 2 tab-separated columns, got {len(cols)}", text))
            continue
        yield ParallelRow(f"{source}:{no - 1}", {src: cols[0], tgt: cols[1]})


# ------------------------------------------------------------------------------------------ dispatch


def read_source(spec: SourceSpec, on_bad: OnBad = None) -> Iterator[Any]:
    """Read one recipe source: a local file, a FLORES folder, a snapshot folder, or a hub dataset id."""
    spec.validate()
    local = Path(spec.path).expanduser()
    if not local.exists():
        if looks_like_hub_id(spec.path):
            from bayling.data.hub_reader import read_hub_dataset

            return read_hub_dataset(spec, on_bad)
        raise DataError("input not found (neither a local path nor a hub dataset id)", path=spec.path)
    name = spec.source_name
    if spec.format == "flores":
        return read_flores_dir(local, spec.langs or None, split=spec.split or "devtest", source=name)
    if local.is_dir():
        from bayling.data.snapshot import read_snapshot

        return read_snapshot(local, spec, on_bad)
    if spec.kind == "instruct":
        return read_instructions(local, spec.format, source=name, category=spec.category,
                                 task=spec.task or None, on_bad=on_bad)
    if len(spec.langs) != 2:
        raise DataError(f"format '{spec.format}' needs langs: [src, tgt]", path=spec.path, field="langs")
    if spec.format == "tsv":
        return read_tsv_pairs(local, spec.langs[0], spec.langs[1], source=name, on_bad=on_bad)
    if spec.format == "pair":
        if not spec.tgt_path:
            raise DataError("format 'pair' needs tgt_path (the second aligned file)", path=spec.path,
                            field="tgt_path")
        return read_aligned_files(local, spec.tgt_path, spec.langs[0], spec.langs[1], source=name)
    from bayling.data.records import translation_rows
    from bayling.data.snapshot import file_rows

    return translation_rows(file_rows(local, on_bad), spec, str(local), on_bad)
