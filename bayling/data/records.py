"""Canonical records and rows, shared by every reader (local files, snapshot folders, hub datasets).

Why a module of its own: the local-file readers, the snapshot reader and the hub reader all turn a raw row
into the same canonical record (docs/data-format.md) with the same checks, and none of them should import
another reader to do so (that was an import cycle). ``RecordError`` is what a row-level check raises; each
reader turns it into a :class:`~bayling.data.fileio.BadRecord` with the row's file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.data.fileio import BadRecord, OnBad, report_bad
from bayling.errors import BaylingError, ConfigError, DataError

_SURROGATE = re.compile("[\ud800-\udfff]")
ROLE_ALIASES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system",
}
CATEGORIES = ("zh", "en", "cross_lingual")
CATEGORY_LANGS = {"zh": ["zho_Hans"], "en": ["eng_Latn"], "cross_lingual": []}


@dataclass(frozen=True)
class ReaderFormat:
    """One input format: which recipe section takes it (instructions/parallel) and what it reads."""

    section: str
    help: str


# The one registry of input formats: recipe validation, the readers' dispatch checks, --help and
# docs/data-builder.md's format table all derive from it (docs/extending.md: how to add one).
FORMATS: dict[str, ReaderFormat] = {
    "auto": ReaderFormat("instructions", "per record: 'conversations' -> sharegpt, 'messages' -> messages, "
                                         "'instruction' -> alpaca"),
    "alpaca": ReaderFormat("instructions", "{instruction, input, output[, system, history]} records"),
    "sharegpt": ReaderFormat("instructions", "{conversations: [{from, value}, ...]} records"),
    "messages": ReaderFormat("instructions", "OpenAI-style {messages: [{role, content}, ...]} records"),
    "flores": ReaderFormat("parallel", "a FLORES-101/200 folder of line-aligned NAME.devtest files"),
    "tsv": ReaderFormat("parallel", "one 'src<TAB>tgt' pair per line; langs: [src, tgt]"),
    "pair": ReaderFormat("parallel", "two line-aligned files, path and tgt_path; langs: [src, tgt]"),
    "translation": ReaderFormat("parallel", "OPUS-style rows {translation: {l1: s1, l2: s2}} from a hub id, a "
                                            "snapshot folder or a parquet/arrow/JSON(L) file; langs: [src, tgt]"),
}
INSTRUCT_FORMATS = tuple(k for k, v in FORMATS.items() if v.section == "instructions")
PARALLEL_FORMATS = tuple(k for k, v in FORMATS.items() if v.section == "parallel")


def check_format(fmt: str, section: str, where: str) -> None:
    """A recipe source's format must be one of the registry's formats for its section."""
    allowed = [k for k, v in FORMATS.items() if v.section == section]
    if fmt not in allowed:
        raise ConfigError(f"unknown format '{fmt}' for {section}; choose from {', '.join(allowed)}", field=where)




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
    files: str = ""  # snapshot folders: glob of the data files to read (default: found from the layout)
    offset: int = 0  # first row index of this file in the source (ids stay unique across a snapshot's files)

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


class RecordError(Exception):
    """A row that cannot become a record: the reason and the field at fault (a counted reject)."""

    def __init__(self, reason: str, field_name: str | None) -> None:
        super().__init__(reason)
        self.reason, self.field = reason, field_name


def _str_field(obj: dict, key: str, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise RecordError(f"missing field '{key}'", key)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}", key)
    return value


def _alpaca_messages(obj: dict) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    system = _str_field(obj, "system", required=False)
    if system.strip():
        msgs.append({"role": "system", "content": system})
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise RecordError("field 'history' must be a list of [user, assistant] pairs", "history")
    for turn in history:
        if not (isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise RecordError("field 'history' must be a list of [user, assistant] string pairs", "history")
        msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    instruction = _str_field(obj, "instruction")
    extra = _str_field(obj, "input", required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": _str_field(obj, "output")}]
    return msgs


def _turns(obj: dict, key: str, role_key: str, text_key: str) -> list[dict[str, str]]:
    turns = obj.get(key)
    if turns is None:
        raise RecordError(f"missing field '{key}'", key)
    if not isinstance(turns, list):
        raise RecordError(f"field '{key}' must be a list, got {type(turns).__name__}", key)
    if not turns:
        raise RecordError("empty conversation", key)
    msgs = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(f"{where} must be an object", where)
        role = _str_field(turn, role_key) if role_key in turn else None
        if role is None:
            raise RecordError(f"missing field '{role_key}' in {where}", f"{where}.{role_key}")
        if role.lower() not in ROLE_ALIASES:
            raise RecordError(f"unknown role '{role}' in {where}", f"{where}.{role_key}")
        if text_key not in turn:
            raise RecordError(f"missing field '{text_key}' in {where}", f"{where}.{text_key}")
        text = turn[text_key]
        if not isinstance(text, str):
            raise RecordError(f"{where}.{text_key} must be a string, got {type(text).__name__}", f"{where}.{text_key}")
        msgs.append({"role": ROLE_ALIASES[role.lower()], "content": text})
    if obj.get("system") and isinstance(obj["system"], str) and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": obj["system"]})
    return msgs


def _check_roles(msgs: list[dict[str, str]], key: str) -> None:
    body = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
    if not body:
        raise RecordError("empty conversation", key)
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise RecordError(f"roles must alternate user/assistant: turn {i + 1} is '{m['role']}'", key)
    if body[-1]["role"] != "assistant":
        raise RecordError("last turn must be from the assistant", key)


def to_messages(obj: Any, fmt: str) -> list[dict[str, str]]:
    """Canonical message list of one raw record, or raises RecordError(reason, field)."""
    if not isinstance(obj, dict):
        raise RecordError(f"record must be a JSON object, got {type(obj).__name__}", None)
    if fmt == "auto":
        fmt = ("sharegpt" if "conversations" in obj else "messages" if "messages" in obj
               else "alpaca" if "instruction" in obj else "")
        if not fmt:
            raise RecordError("unknown record format: expected 'instruction', 'conversations' or 'messages'",
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
            raise RecordError(f"turn {i + 1} holds an invalid unicode escape (lone surrogate)", key)
        if "\x00" in m["content"]:  # an escaped \u0000 is as broken as a raw NUL byte (malformed JSON)
            raise RecordError(f"turn {i + 1} holds a NUL character (\\u0000)", key)
    return msgs


def make_record(rid: str, msgs: list[dict[str, str]], source: str, category: str,
                task: str | None = None) -> dict[str, Any]:
    return {"id": rid, "messages": msgs, "source": source, "category": category,
            "task": task or "general", "langs": list(CATEGORY_LANGS.get(category, []))}


def canonical_code(code: str, path: str | Path | None = None, field_name: str | None = "langs") -> str:
    from bayling.languages import get_language

    try:
        return get_language(code).code
    except BaylingError as err:
        raise DataError(err.message, path=path, field=field_name) from None




def instruction_records(rows: Iterable[tuple[int, int, Any]], spec: SourceSpec, where: str,
                        on_bad: OnBad = None) -> Iterator[dict[str, Any]]:
    """Records from (index, line or row number, raw row) of one file or dataset; bad rows reported, not dropped.
    The index counts every row of the file (bad ones too), so ids do not shift when a row is rejected."""
    for index, line, row in rows:
        try:
            msgs = to_messages(row, spec.format)
        except RecordError as bad:
            raw = json.dumps(row, ensure_ascii=False, default=str)
            report_bad(on_bad, BadRecord(where, line, bad.reason, raw, bad.field))
            continue
        yield make_record(f"{spec.source_name}:{spec.offset + index}", msgs, spec.source_name, spec.category,
                          spec.task or None)


def translation_rows(rows: Iterable[tuple[int, int, Any]], spec: SourceSpec, where: str,
                     on_bad: OnBad = None) -> Iterator[ParallelRow]:
    """ParallelRows from OPUS-style rows ``{"translation": {"en": ..., "de": ...}}`` (or the two language columns
    at the top level); keys may be any code the registry knows (ISO 639-1, FLORES-200, ...)."""
    if len(spec.langs) != 2:
        raise DataError(f"format '{spec.format}' needs langs: [src, tgt]", path=spec.path, field="langs")
    raw_codes = list(spec.langs)
    codes = [canonical_code(c) for c in raw_codes]
    for index, line, row in rows:
        pair = row.get("translation", row) if isinstance(row, dict) else None
        texts = language_texts(pair, raw_codes, codes)
        if texts is None:
            report_bad(on_bad, BadRecord(where, line, f"row lacks a text for each of {raw_codes}",
                                         json.dumps(row, ensure_ascii=False, default=str), "translation"))
            continue
        yield ParallelRow(f"{spec.source_name}:{spec.offset + index}", texts)


def language_texts(pair: Any, raw_codes: list[str], codes: list[str]) -> dict[str, str] | None:
    """Find each language's text in an OPUS-style {'en': ..., 'de': ...} mapping (keys may be ISO 639-1)."""
    if not isinstance(pair, dict):
        return None
    by_canon = {}
    for k, v in pair.items():
        try:
            by_canon[canonical_code(str(k))] = v
        except DataError:
            continue
    texts = {}
    for raw, canon in zip(raw_codes, codes):
        value = pair.get(raw, by_canon.get(canon))
        if not isinstance(value, str):
            return None
        texts[canon] = value
    return texts
