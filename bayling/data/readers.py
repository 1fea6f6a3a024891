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

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.data.fileio import BadRecord, OnBad, iter_json_records, open_lines, report_bad
from bayling.errors import BaylingError, DataError
from bayling.hub import looks_like_hub_id

_SURROGATE = re.compile("[\ud800-\udfff]")
ROLE_ALIASES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system",
}
CATEGORIES = ("zh", "en", "cross_lingual")
CATEGORY_LANGS = {"zh": ["zho_Hans"], "en": ["eng_Latn"], "cross_lingual": []}
INSTRUCT_FORMATS = ("auto", "alpaca", "sharegpt", "messages")
PARALLEL_FORMATS = ("flores", "tsv", "pair", "translation")




@dataclass
class ParallelRow:
    """Sentences with the same meaning in several languages (canonical code -> text)."""

    key: str
    texts: dict[str, str]


@dataclass
class SourceSpec:
    """One input of a recipe. ``path`` is a local file/dir or a hub dataset id ("org/name").

    format: auto|alpaca|sharegpt|messages (instruction data) or flores|tsv|pair|translation (parallel).
    ``langs``: for flores the languages to take (empty = all files); for tsv/pair/translation exactly
    [src, tgt]. ``tgt_path``: second file of a ``pair``. ``split``: FLORES split (devtest/dev) or hub split;
    ``config``: hub config name (e.g. "de-en" of Helsinki-NLP/opus-100).
    """

    path: str = ""
    format: str = "auto"
    name: str = ""
    category: str = "cross_lingual"
    task: str = ""
    langs: list[str] = field(default_factory=list)
    tgt_path: str = ""
    split: str = ""
    config: str = ""

    @property
    def kind(self) -> str:
        return "parallel" if self.format in PARALLEL_FORMATS else "instruct"

    @property
    def source_name(self) -> str:
        return self.name or Path(self.path.rstrip("/")).name.split(".")[0] or "source"

    def validate(self) -> None:
        if self.format not in INSTRUCT_FORMATS + PARALLEL_FORMATS:
            raise DataError(f"unknown format '{self.format}'; choose from "
                            f"{', '.join(INSTRUCT_FORMATS + PARALLEL_FORMATS)}", field="format")
        if self.category not in CATEGORIES:
            raise DataError(f"unknown category '{self.category}'; choose from {', '.join(CATEGORIES)}",
                            field="category")
        if not self.path:
            raise DataError("a source needs a path (local file/dir or hub dataset id)", field="path")


# ------------------------------------------------------------------------------------ instructions


class _Bad(Exception):
    def __init__(self, reason: str, field_name: str | None) -> None:
        super().__init__(reason)
        self.reason, self.field = reason, field_name


def _str_field(obj: dict, key: str, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise _Bad(f"missing field '{key}'", key)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise _Bad(f"field '{key}' must be a string, got {type(value).__name__}", key)
    return value


def _alpaca_messages(obj: dict) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    system = _str_field(obj, "system", required=False)
    if system.strip():
        msgs.append({"role": "system", "content": system})
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise _Bad("field 'history' must be a list of [user, assistant] pairs", "history")
    for turn in history:
        if not (isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise _Bad("field 'history' must be a list of [user, assistant] string pairs", "history")
        msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    instruction = _str_field(obj, "instruction")
    extra = _str_field(obj, "input", required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": _str_field(obj, "output")}]
    return msgs


def _turns(obj: dict, key: str, role_key: str, text_key: str) -> list[dict[str, str]]:
    turns = obj.get(key)
    if turns is None:
        raise _Bad(f"missing field '{key}'", key)
    if not isinstance(turns, list):
        raise _Bad(f"field '{key}' must be a list, got {type(turns).__name__}", key)
    if not turns:
        raise _Bad("empty conversation", key)
    msgs = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _Bad(f"{where} must be an object", where)
        role = _str_field(turn, role_key) if role_key in turn else None
        if role is None:
            raise _Bad(f"missing field '{role_key}' in {where}", f"{where}.{role_key}")
        if role.lower() not in ROLE_ALIASES:
            raise _Bad(f"unknown role '{role}' in {where}", f"{where}.{role_key}")
        if text_key not in turn:
            raise _Bad(f"missing field '{text_key}' in {where}", f"{where}.{text_key}")
        text = turn[text_key]
        if not isinstance(text, str):
            raise _Bad(f"{where}.{text_key} must be a string, got {type(text).__name__}", f"{where}.{text_key}")
        msgs.append({"role": ROLE_ALIASES[role.lower()], "content": text})
    if obj.get("system") and isinstance(obj["system"], str) and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": obj["system"]})
    return msgs


def _check_roles(msgs: list[dict[str, str]], key: str) -> None:
    body = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
    if not body:
        raise _Bad("empty conversation", key)
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise _Bad(f"roles must alternate user/assistant: turn {i + 1} is '{m['role']}'", key)
    if body[-1]["role"] != "assistant":
        raise _Bad("last turn must be from the assistant", key)


def to_messages(obj: Any, fmt: str) -> list[dict[str, str]]:
    """Canonical message list of one raw record, or raises _Bad(reason, field)."""
    if not isinstance(obj, dict):
        raise _Bad(f"record must be a JSON object, got {type(obj).__name__}", None)
    if fmt == "auto":
        fmt = ("sharegpt" if "conversations" in obj else "messages" if "messages" in obj
               else "alpaca" if "instruction" in obj else "")
        if not fmt:
            raise _Bad("unknown record format: expected 'instruction', 'conversations' or 'messages'",
                       "instruction")
    if fmt == "alpaca":
        msgs, key = _alpaca_messages(obj), "output"
    elif fmt == "sharegpt":
        msgs, key = _turns(obj, "conversations", "from", "value"), "conversations"
    elif fmt == "messages":
        msgs, key = _turns(obj, "messages", "role", "content"), "messages"
    else:
        raise DataError(f"unknown instruction format '{fmt}'; choose from {', '.join(INSTRUCT_FORMATS)}")
    _check_roles(msgs, key)
    for i, m in enumerate(msgs):
        if _SURROGATE.search(m["content"]):  # "\ud800" escapes decode to text no UTF-8 file can hold
            raise _Bad(f"turn {i + 1} holds an invalid unicode escape (lone surrogate)", key)
    return msgs


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
    for index, line, obj in iter_json_records(path, on_bad):
        try:
            msgs = to_messages(obj, fmt)
        except _Bad as bad:
            raw = json.dumps(obj, ensure_ascii=False)
            report_bad(on_bad, BadRecord(str(path), line, bad.reason, raw, bad.field))
            continue
        yield make_record(f"{source}:{index}", msgs, source, category, task)


def make_record(rid: str, msgs: list[dict[str, str]], source: str, category: str,
                task: str | None = None) -> dict[str, Any]:
    return {"id": rid, "messages": msgs, "source": source, "category": category,
            "task": task or "general", "langs": list(CATEGORY_LANGS.get(category, []))}


# ---------------------------------------------------------------------------------------- parallel


def _canonical(code: str, path: str | Path | None = None, field_name: str | None = "langs") -> str:
    from bayling.languages import get_language

    try:
        return get_language(code).code
    except BaylingError as err:
        raise DataError(err.message, path=path, field=field_name) from None


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
        code = _canonical(f.name.removesuffix(".gz").removesuffix(".zst")[: -len(suffix)], f, field_name=None)
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
        wanted = [_canonical(code, path) for code in langs]
        missing = [c for c in wanted if c not in files]
        if missing:
            raise DataError(f"no FLORES file for language(s) {', '.join(missing)}", path=path, field="langs")
        files = {c: files[c] for c in wanted}
    return _aligned(source, files)


def read_aligned_files(src_path: str | Path, tgt_path: str | Path, src_lang: str, tgt_lang: str, *,
                       source: str) -> Iterator[ParallelRow]:
    """Two line-aligned files; different lengths -> DataError naming both files and their line counts."""
    src, tgt = _canonical(src_lang), _canonical(tgt_lang)
    if src == tgt:
        raise DataError(f"source and target language are the same ({src})", path=src_path, field="langs")
    return _aligned(source, {src: Path(src_path), tgt: Path(tgt_path)})


def read_tsv_pairs(path: str | Path, src_lang: str, tgt_lang: str, *, source: str,
                   on_bad: OnBad = None) -> Iterator[ParallelRow]:
    """``src<TAB>tgt`` lines; a line with another column count is a bad record."""
    src, tgt = _canonical(src_lang, path), _canonical(tgt_lang, path)
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
    """Read one recipe source: a local path or, when it is not a local path, a hub dataset id."""
    spec.validate()
    local = Path(spec.path).expanduser()
    if not local.exists():
        if looks_like_hub_id(spec.path):
            from bayling.data.hub_reader import read_hub_dataset  # imports this module: load on use

            return read_hub_dataset(spec, on_bad)
        raise DataError("input not found (neither a local path nor a hub dataset id)", path=spec.path)
    name = spec.source_name
    if spec.kind == "instruct":
        return read_instructions(local, spec.format, source=name, category=spec.category,
                                 task=spec.task or None, on_bad=on_bad)
    if spec.format == "flores":
        return read_flores_dir(local, spec.langs or None, split=spec.split or "devtest", source=name)
    if len(spec.langs) != 2:
        raise DataError(f"format '{spec.format}' needs langs: [src, tgt]", path=spec.path, field="langs")
    if spec.format == "tsv":
        return read_tsv_pairs(local, spec.langs[0], spec.langs[1], source=name, on_bad=on_bad)
    if spec.format == "pair":
        if not spec.tgt_path:
            raise DataError("format 'pair' needs tgt_path (the second aligned file)", path=spec.path,
                            field="tgt_path")
        return read_aligned_files(local, spec.tgt_path, spec.langs[0], spec.langs[1], source=name)
    raise DataError("format 'translation' is for hub datasets; use tsv, pair or flores for local files",
                    path=spec.path, field="format")
