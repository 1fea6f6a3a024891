"""The language registry: every FLORES-101 and FLORES-200 language, looked up by any code.

Why one registry: the builder, the trainer's data and the evaluator must agree on what ``de``, ``deu``,
``deu_Latn`` or ``zho_simpl`` mean, and the instructions must name languages the same way everywhere. The
canonical code is the FLORES-200 code (``deu_Latn``, ``zho_Hans``); everything else is an alias.

The table lives in ``data/languages.tsv`` (tab-separated, editable by hand, documented in its own header):
``code, name_en, name_zh, script, iso639_1, iso639_3, flores101, flores200, tier, aliases``.

Look-up (``get_language``) is case-insensitive and treats ``-`` like ``_`` (``zh-TW`` == ``zh_tw``). Keys,
in order of precedence:

1. explicit keys: the canonical code, the FLORES-101 file stem (``deu``, ``zho_simpl``, ``ara``) and the
   ``aliases`` column (``zh``, ``zh_tw``, ``cmn``, ISO 639-2/B codes ...);
2. ISO 639-3 and ISO 639-1 codes, when they name exactly one language. Where two rows share one (``ace``
   has an Arabic- and a Latin-script row, ``zh`` covers Simplified and Traditional), the ``aliases`` column
   must say which row wins; the loader refuses an unresolved ambiguity, so a look-up never depends on row order.

Resource tiers (``high``/``medium``/``low``) are an ASSUMPTION: BayLing 2 publishes none. They are
hand-assigned from the approximate amount of public English-aligned bitext (OPUS scale): high >~10M
sentence pairs, medium ~1M-10M, low <~1M, mirroring the resource classes of the FLORES-101 paper (its
"very low" merged into low); every language that is only in FLORES-200 is low. Edit the TSV to change them.
"""

from __future__ import annotations

import csv
import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

from bayling.errors import BaylingError
from bayling.paths import DATA_DIR

LANGUAGES_TSV = DATA_DIR / "languages.tsv"

TIERS = ("high", "medium", "low")

# ISO 15924 codes a row may use (the scripts of FLORES-200 plus common ones a user may add).
ISO15924 = frozenset(
    "Adlm Arab Armn Beng Bopo Cans Cher Cyrl Deva Ethi Geor Grek Gujr Guru Hang Hani Hans Hant Hebr Hira Jpan "
    "Kana Khmr Knda Kore Laoo Latn Mlym Mong Mymr Nkoo Olck Orya Sinh Syrc Taml Telu Tfng Tglg Thaa Thai Tibt "
    "Vaii Yiii".split()
)

_COLUMNS = (
    "code",
    "name_en",
    "name_zh",
    "script",
    "iso639_1",
    "iso639_3",
    "flores101",
    "flores200",
    "tier",
    "aliases",
)


@dataclass(frozen=True)
class Language:
    """One language variety (a FLORES-200 row). ``code`` is canonical; ``flores101`` is '' when absent."""

    code: str
    name_en: str
    name_zh: str
    script: str
    iso639_1: str
    iso639_3: str
    flores101: str
    flores200: str
    tier: str
    aliases: tuple[str, ...] = ()

    def flores_file(self, version: int) -> str:
        """The file stem of this language in a FLORES release: ``deu`` for 101, ``deu_Latn`` for 200."""
        if version == 200:
            return self.flores200
        if version == 101:
            if not self.flores101:
                raise BaylingError(
                    f"language '{self.code}' ({self.name_en}) is not part of FLORES-101; use FLORES-200"
                )
            return self.flores101
        raise BaylingError(f"unknown FLORES version {version!r}; expected 101 or 200")

    def name(self, in_lang: str = "en") -> str:
        """Shortcut for :func:`display_name`."""
        return display_name(self, in_lang)

    def __str__(self) -> str:
        return self.code


def _norm(code: str) -> str:
    return code.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class _Registry:
    languages: tuple[Language, ...]
    index: dict[str, Language]


def _parse_rows(path: Path) -> list[Language]:
    """Read the TSV (``#`` lines are comments) into validated Language rows."""
    if not path.is_file():
        raise BaylingError("language table not found (the repository's data/ folder is missing)", path=path)
    lines = path.read_text(encoding="utf-8").splitlines()
    body = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")]
    if not body:
        raise BaylingError("language table is empty", path=path)
    header_no, header = body[0]
    cols = header.split("\t")
    if tuple(cols) != _COLUMNS:
        raise BaylingError(
            "header must be the columns " + ", ".join(_COLUMNS) + " (tab-separated)",
            path=path,
            line=header_no,
        )
    out = []
    for lineno, row in zip(
        (n for n, _ in body[1:]),
        csv.reader([ln for _, ln in body[1:]], delimiter="\t", quoting=csv.QUOTE_NONE),
    ):
        if len(row) != len(cols):
            raise BaylingError(
                f"expected {len(cols)} tab-separated columns, got {len(row)}", path=path, line=lineno
            )
        rec = dict(zip(cols, (c.strip() for c in row)))
        for key in ("code", "name_en", "name_zh", "script", "iso639_3", "flores200", "tier"):
            if not rec[key]:
                raise BaylingError("must not be empty", path=path, line=lineno, field=key)
        if rec["script"] not in ISO15924:
            raise BaylingError(
                f"'{rec['script']}' is not a known ISO 15924 script code",
                path=path,
                line=lineno,
                field="script",
            )
        if rec["tier"] not in TIERS:
            raise BaylingError(
                f"'{rec['tier']}' is not one of {', '.join(TIERS)}", path=path, line=lineno, field="tier"
            )
        aliases = tuple(_norm(a) for a in rec.pop("aliases").split(",") if a.strip())
        out.append(Language(**rec, aliases=aliases))
    return out


def _build_index(langs: list[Language], path: Path) -> dict[str, Language]:
    """Map every accepted key to its row; explicit keys first, ISO codes only where unambiguous."""
    index: dict[str, Language] = {}
    for lang in langs:
        for key in (lang.code, lang.flores200, lang.flores101, *lang.aliases):
            k = _norm(key)
            if not k:
                continue
            if k in index and index[k] is not lang:
                raise BaylingError(
                    f"look-up key '{k}' is used by both {index[k].code} and {lang.code}", path=path
                )
            index[k] = lang
    iso_owners: dict[str, list[Language]] = {}
    for lang in langs:
        for key in (lang.iso639_3, lang.iso639_1):
            if key:
                iso_owners.setdefault(_norm(key), []).append(lang)
    for key, owners in iso_owners.items():
        if key in index:
            continue
        if len(owners) > 1:
            names = ", ".join(o.code for o in owners)
            raise BaylingError(
                f"ISO code '{key}' is shared by {names}; add it to one row's aliases", path=path
            )
        index[key] = owners[0]
    return index


@functools.lru_cache(maxsize=4)
def _load(path: str) -> _Registry:
    p = Path(path)
    langs = _parse_rows(p)
    return _Registry(tuple(langs), _build_index(langs, p))


def _registry() -> _Registry:
    return _load(str(LANGUAGES_TSV))


def get_language(code: str | Language) -> Language:
    """Resolve any code (canonical, FLORES-101/200, ISO 639-1/3, alias; any case) to its Language.

    An unknown code raises BaylingError naming the closest known codes, so a typo is fixed in one go.
    """
    if isinstance(code, Language):
        return code
    reg = _registry()
    key = _norm(str(code))
    lang = reg.index.get(key)
    if lang is not None:
        return lang
    close = difflib.get_close_matches(key, list(reg.index), n=8, cutoff=0.6)
    names = {lg.name_en.lower(): lg for lg in reg.languages} | {lg.name_zh: lg for lg in reg.languages}
    wanted = key.replace("_", " ")
    near = [wanted] if wanted in names else difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.8)
    by_name = [names[n] for n in near]
    suggested = list(dict.fromkeys(by_name or [reg.index[c] for c in close]))[:4]
    hint = ", ".join(f"{lg.code} ({lg.name_en})" for lg in suggested)
    suffix = f"; did you mean: {hint}?" if hint else "; see data/languages.tsv for the known codes"
    raise BaylingError(f"unknown language code '{code}'{suffix}")


def all_languages() -> list[Language]:
    """Every registered language (FLORES-200 order: sorted by canonical code)."""
    return list(_registry().languages)


def flores101_languages() -> list[Language]:
    """The 102 FLORES-101 languages, ordered by FLORES-101 file stem (the order of the release's files)."""
    return sorted((lg for lg in _registry().languages if lg.flores101), key=lambda lg: lg.flores101)


def languages_in_tier(tier: str) -> list[Language]:
    """All languages of one resource tier (see the module docstring for how tiers were assigned)."""
    if tier not in TIERS:
        raise BaylingError(f"unknown tier '{tier}'; expected one of {', '.join(TIERS)}")
    return [lg for lg in _registry().languages if lg.tier == tier]


def parse_languages(spec: str | list[str] | tuple[str, ...]) -> list[Language]:
    """Turn a user's language selection into Language rows, de-duplicated in the given order.

    Accepted: ``all`` (or ``flores200``), ``flores101``, a tier name (``high``/``medium``/``low``), or a
    comma-separated list / Python list of codes, where each item may itself be one of those group names.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if not parts:
        raise BaylingError(
            "empty language list; give codes (de,fr), 'all', 'flores101' or a tier (high/medium/low)"
        )
    out: dict[str, Language] = {}
    for part in parts:
        low = part.lower()
        if low in ("all", "flores200"):
            group = all_languages()
        elif low == "flores101":
            group = flores101_languages()
        elif low in TIERS:
            group = languages_in_tier(low)
        else:
            group = [get_language(part)]
        for lg in group:
            out.setdefault(lg.code, lg)
    return list(out.values())


def display_name(lang: str | Language, in_lang: str | Language = "en") -> str:
    """The language's name written in English or in Chinese (the two pivot languages of BayLing)."""
    lg = get_language(lang)
    pivot = get_language(in_lang)
    if pivot.iso639_3 == "eng":
        return lg.name_en
    if pivot.iso639_3 in ("zho", "yue"):
        return lg.name_zh
    raise BaylingError(f"language names are available in English and Chinese only, not in {pivot.name_en}")


ENGLISH = get_language("eng_Latn")
CHINESE = get_language("zho_Hans")
