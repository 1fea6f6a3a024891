"""The pivot join: X<->zh rows from an X<->en and an en<->zh bitext, matched on identical English sentences.

Why a module of its own: it is the one stage that holds a table of a whole source in memory (the smaller side),
and corpora such as OPUS-100 or NLLB have no X-zh data for most languages, so the paper's x-zh/zh-x directions
for 100 languages depend on it. Rows are ``(key, {canonical_code: sentence})`` as in bayling/data/synth.py.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping

from bayling.errors import DataError
from bayling.languages import CHINESE, ENGLISH, get_language

Row = tuple[str, Mapping[str, str]]


def normalise_pivot(text: str) -> str:
    """Join key for English sentences: NFC, whitespace collapsed (case and punctuation kept)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _side(rows: Iterator[Row], want_zh: bool) -> Iterator[tuple[str, str, str, str]]:
    """(norm_en, lang, key, text) per row; ``lang`` is zho_Hans on the en-zh side, X on the X-en side."""
    for key, raw in rows:
        codes = {get_language(c).code: t for c, t in raw.items()}
        en = codes.pop(ENGLISH.code, None)
        if want_zh:
            ok = en is not None and set(codes) == {CHINESE.code}
        else:
            ok = en is not None and len(codes) == 1 and CHINESE.code not in codes
        if not ok:
            need = "English and Chinese" if want_zh else "English and exactly one language other than zh"
            raise DataError(f"pivot join: row '{key}' must hold {need}, has {', '.join(sorted(raw))}")
        lang, text = next(iter(codes.items()))
        norm = normalise_pivot(en)
        if norm and text.strip():
            yield norm, lang, key, text.strip()


def pivot_join(x_en_rows: Iterable[Row], en_zh_rows: Iterable[Row]) -> Iterator[Row]:
    """X<->zh rows ``(f"pivot:{x_key}+{zh_key}", {X: x, "zho_Hans": zh})`` joined on identical English.

    Memory is proportional to the smaller input: both sides are read in lock-step into hash tables until one
    runs out; that (smaller) side's table is kept, the other is joined and freed, and the rest of the larger
    side is streamed past the kept table. For an English sentence that occurs several times on one side
    (per X language), its first occurrence is used, so the result does not depend on which side is smaller;
    output order follows the larger side. X may vary between x_en rows (one join for many languages).
    Run it before sharding: "first occurrence" is a property of the whole input.
    """
    sides = [_side(iter(x_en_rows), False), _side(iter(en_zh_rows), True)]
    tables: list[dict[tuple[str, str], tuple[str, str]]] = [{}, {}]
    zh_tab_key = CHINESE.code
    done = [False, False]
    while not any(done):
        for i in (0, 1):
            item = next(sides[i], None)
            if item is None:
                done[i] = True
                break
            norm, lang, key, text = item
            tables[i].setdefault((norm, lang), (key, text))
    small = 0 if done[0] else 1
    large = 1 - small
    kept, partial = tables[small], tables[large]
    if small == 0:  # x side is small: index x entries by English sentence for the zh stream
        by_en: dict[str, list[tuple[str, str, str]]] = {}
        for (norm, lang), (key, text) in kept.items():
            by_en.setdefault(norm, []).append((lang, key, text))
        kept.clear()
    emitted: set[tuple[str, str]] = set()

    def match(norm: str, lang: str, key: str, text: str) -> Iterator[Row]:
        if large == 1:  # streaming the zh side against x entries
            for x_lang, x_key, x_text in by_en.get(norm, ()):
                if (norm, x_lang) not in emitted:
                    emitted.add((norm, x_lang))
                    yield f"pivot:{x_key}+{key}", {x_lang: x_text, zh_tab_key: text}
        else:  # streaming the x side against zh entries
            hit = kept.get((norm, zh_tab_key))
            if hit is not None and (norm, lang) not in emitted:
                emitted.add((norm, lang))
                yield f"pivot:{key}+{hit[0]}", {lang: text, zh_tab_key: hit[1]}

    for (norm, lang), (key, text) in partial.items():
        yield from match(norm, lang, key, text)
    partial.clear()
    for norm, lang, key, text in sides[large]:
        yield from match(norm, lang, key, text)
