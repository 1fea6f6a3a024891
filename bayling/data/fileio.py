"""File access shared by the readers and decontamination: compressed files, strict UTF-8, streamed JSON.

Why a module of its own: every input goes through the same three guarantees -- plain/.gz/.zst read the
same way, invalid UTF-8 is a DataError naming file and line, and a JSON array is streamed element by element
(memory bounded by the largest element, not the file) -- plus the one place where a bad record is either
raised or handed to the caller's ``on_bad`` callback (never dropped silently).
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.errors import DataError

CHUNK = 1 << 20


@dataclass
class BadRecord:
    """One rejected input record: where it was, why, and its raw text (truncated) for rejects.jsonl."""

    path: str
    line: int | None
    reason: str
    raw: str = ""
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "field": self.field, "reason": self.reason,
                "raw": self.raw[:2000]}


OnBad = Callable[[BadRecord], None] | None


def report_bad(on_bad: OnBad, bad: BadRecord) -> None:
    """The single place where a bad record is raised or handed over: never silently dropped."""
    if on_bad is None:
        raise DataError(bad.reason, path=bad.path, line=bad.line, field=bad.field)
    on_bad(bad)


# ---------------------------------------------------------------------------------------------- files


def open_binary(path: str | Path) -> io.BufferedIOBase:
    """Open plain, .gz or .zst transparently; a missing file is a one-line DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found" if not p.exists() else "not a regular file", path=p)
    if p.suffix == ".gz":
        return gzip.open(p, "rb")
    if p.suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(p, "rb"), closefd=True))
    return open(p, "rb")


def _decode(raw: bytes, path: str | Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"invalid UTF-8 (byte {err.start + 1} of the line)", path=path, line=line) from None


def open_lines(path: str | Path, on_bad: OnBad = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without newline) for each line; strict UTF-8, BOM stripped.

    Record-per-line readers pass ``on_bad`` so a line with invalid UTF-8 becomes a counted reject;
    line-aligned parallel files do not (skipping a line would misalign every line after it)."""
    try:
        with open_binary(path) as fh:
            for no, raw in enumerate(fh, 1):
                if on_bad is None:
                    text = _decode(raw, path, no)
                else:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        reason = f"invalid UTF-8 (byte {err.start + 1} of the line)"
                        report_bad(on_bad, BadRecord(str(path), no, reason, raw.decode("utf-8", "replace")))
                        continue
                if no == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield no, text.rstrip("\r\n")
    except (OSError, EOFError) as err:  # truncated/corrupt .gz/.zst
        raise DataError(f"cannot read compressed file: {err}", path=path) from None
    except _zstd_error() as err:
        raise DataError(f"cannot read compressed file: {err}", path=path) from None


def _zstd_error() -> type[Exception]:
    import zstandard

    return zstandard.ZstdError


def _text_chunks(path: str | Path) -> Iterator[str]:
    """Decoded chunks of a file with strict UTF-8 and the line of any bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines = 0
    try:
        with open_binary(path) as fh:
            while True:
                raw = fh.read(CHUNK)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as err:
                    bad_line = lines + raw[: max(err.start, 0)].count(b"\n") + 1
                    raise DataError("invalid UTF-8", path=path, line=bad_line) from None
                lines += text.count("\n")
                if text:
                    yield text
                if not raw:
                    return
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read compressed file: {err}", path=path) from None
    except _zstd_error() as err:
        raise DataError(f"cannot read compressed file: {err}", path=path) from None


def _first_char(path: str | Path) -> str:
    """Only the format sniff: bad bytes further on are the record readers' business, not an error here."""
    try:
        with open_binary(path) as fh:
            while raw := fh.read(CHUNK):
                stripped = raw.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
                if stripped:
                    return stripped[0]
    except (OSError, EOFError, _zstd_error()) as err:  # truncated/corrupt .gz/.zst
        raise DataError(f"cannot read compressed file: {err}", path=path) from None
    return ""


def iter_json_array(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Stream the elements of a top-level JSON array as (line of the element's start, value).

    Elements are decoded one at a time with ``raw_decode`` on a sliding buffer, so memory is bounded by the
    largest element, not the file. A syntax error cannot be resynchronised inside an array, so it is always
    a DataError (the file is rejected as a whole, never half-read silently).
    """
    dec = json.JSONDecoder()
    chunks = _text_chunks(path)
    buf, pos, line, eof = "", 0, 1, False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        nxt = next(chunks, None)
        if nxt is None:
            eof = True
            return False
        buf = buf[pos:] + nxt
        pos = 0
        return True

    def skip_ws() -> None:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or not more():
                return

    skip_ws()
    if pos >= len(buf) or buf[pos] != "[":
        raise DataError("expected a JSON array ('[') or JSON lines", path=path, line=line)
    pos += 1
    first = True
    while True:
        skip_ws()
        if pos >= len(buf):
            raise DataError("unexpected end of file inside the JSON array", path=path, line=line)
        if buf[pos] == "]":
            pos += 1
            skip_ws()
            if pos < len(buf):
                raise DataError("unexpected data after the JSON array", path=path, line=line)
            return
        if not first:
            if buf[pos] != ",":
                raise DataError("expected ',' or ']' between array elements", path=path, line=line)
            pos += 1
            skip_ws()
        first = False
        while True:
            try:
                value, end = dec.raw_decode(buf, pos)
                break
            except RecursionError:
                raise DataError("malformed JSON: nested too deeply", path=path, line=line) from None
            except json.JSONDecodeError as err:
                # A truncated buffer fails at (or within a few characters of) its end, or inside an open
                # string; anything earlier is a real syntax error, reported without reading further.
                truncated = err.msg.startswith("Unterminated string") or err.pos >= len(buf) - 16
                if not (truncated and more()):
                    bad_line = line + buf.count("\n", pos, err.pos)
                    raise DataError(f"malformed JSON: {err.msg}", path=path, line=bad_line) from None
        yield line, value
        line += buf.count("\n", pos, end)
        pos = end
        if pos > CHUNK:
            buf, pos = buf[pos:], 0


def iter_json_records(path: str | Path, on_bad: OnBad) -> Iterator[tuple[int, int, Any]]:
    """(index, line, value) for a JSON array or JSON-lines file; malformed JSON lines are bad records.
    A file without a single record is an error: an empty input is almost always a wrong path or format."""
    if _first_char(path) == "[":
        index = -1
        for index, (line, value) in enumerate(iter_json_array(path)):
            yield index, line, value
        if index < 0:
            raise DataError("no records: the JSON array is empty", path=path)
        return
    index = 0
    for no, text in open_lines(path, on_bad):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            report_bad(on_bad, BadRecord(str(path), no, f"malformed JSON: {err.msg}", text))
            index += 1
            continue
        except RecursionError:
            report_bad(on_bad, BadRecord(str(path), no, "malformed JSON: nested too deeply", text[:2000]))
            index += 1
            continue
        yield index, no, value
        index += 1
    if index == 0:
        raise DataError("no records: the file is empty", path=path)
