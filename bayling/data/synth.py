"""Cross-lingual instructions from parallel text: the BayLing 2 arm that links 100+ languages to en and zh.

API (what the pipeline calls)
-----------------------------
- A parallel *row* is ``(key, {canonical_code: sentence, ...})``: multi-way for a FLORES-style directory,
  two-way for a TSV or a pair of files. ``key`` is stable and unique within a source, e.g.
  ``"flores101:17"`` or ``"opus100:deu+eng:17"``; codes may be any code :func:`get_language` accepts.
- ``synthesize(rows, cfg, source, stats=None) -> Iterator[dict]`` yields canonical records (see
  docs/data-format.md): one-turn ``task="translation"`` records with ``direction="src-tgt"``, and
  ``task="multiturn_translation"`` chains (no ``direction``; ``langs`` lists the chain's languages in order).
  ``category`` is always ``"cross_lingual"``; ids are ``{source}:{key}:{src}-{tgt}`` and
  ``{source}:{key}:chain{i}``. ``stats`` (a :class:`SynthStats`) counts what was made and skipped.
  Records come row by row, in a fixed order inside a row (sorted codes), whatever the column order.
- ``SynthConfig`` is the recipe's ``synth`` section; ``cfg.seed`` drives every choice (a pipeline with one
  recipe-wide seed sets it with ``dataclasses.replace(cfg, seed=recipe.seed)``).
- ``pivot_join`` (bayling/data/pivot.py) makes X<->zh rows from X<->en and en<->zh bitexts.
- ``group_language(record)`` is the language a record counts for in per-language sampling.

Choices (assumptions where BayLing 2 is silent)
-----------------------------------------------
- Directions per language X: ``x-en``, ``en-x``, ``x-zh``, ``zh-x``, plus ``en-zh``/``zh-en`` when a row has
  both pivots (``SynthConfig.directions`` picks a subset). zh means ``zho_Hans``; ``zho_Hant`` is an X.
- The instruction is written in the pivot language: English for directions with en, Chinese for directions
  with zh, and for en<->zh each record draws English or Chinese with equal odds (so both pivots learn to ask
  for the other). Languages are named in that pivot (registry ``name_en``/``name_zh``). Phrasings come from
  data/prompts/translation_{en,zh}.txt (BayLing 1's prompt first); the answer is the reference sentence.
- Multi-turn chains (BayLing's interactive translation): from rows with >= 3 languages, about
  ``multiturn_fraction`` chains per one-turn record of that row. Turn 1 asks for a translation of one
  sentence into X; each later turn asks for the same sentence in another language Y, or back into the
  original language (data/prompts/followup_*.txt, back_*.txt). Every answer is a sentence of the row.
- Determinism: every random choice uses ``random.Random(sha256(seed, row key, tag))`` where the tag names
  the direction (or chain number). No global stream, so any subset or shard of the rows yields exactly the
  records a full build makes for those rows, and the same seed gives the same output.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.errors import BaylingError, ConfigError, DataError
from bayling.languages import CHINESE, ENGLISH, Language, get_language
from bayling.paths import DATA_DIR

PROMPTS_DIR = DATA_DIR / "prompts"
DIRECTIONS = ("x-en", "en-x", "x-zh", "zh-x", "en-zh", "zh-en")
PIVOTS = {"en": ENGLISH, "zh": CHINESE}
_PLACEHOLDERS = ("{src_lang}", "{tgt_lang}", "{text}")

Row = tuple[str, Mapping[str, str]]


@dataclass
class SynthConfig:
    """Recipe section ``synth``: how parallel rows become cross-lingual instructions."""

    enabled: bool = True  # false drops the whole cross-lingual arm (the paper's ablation)
    directions: list[str] = field(default_factory=lambda: list(DIRECTIONS))  # subset of DIRECTIONS
    multiturn_fraction: float = 0.1  # chains per one-turn record of a >=3-language row (assumption)
    multiturn_max_turns: int = 3  # user/assistant exchanges per chain, >= 2
    phrasings: int = 0  # use only the first N translation phrasings (1 = BayLing 1's prompt only); 0 = all
    seed: int = 1

    def validate(self) -> None:
        for d in self.directions:
            if d not in DIRECTIONS:
                close = difflib.get_close_matches(d, DIRECTIONS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"unknown direction '{d}' (known: {', '.join(DIRECTIONS)}){hint}",
                    field="synth.directions",
                )
        if self.enabled and not self.directions:
            raise ConfigError(
                "at least one direction is needed (or set synth.enabled=false)", field="synth.directions"
            )
        if not 0 <= self.multiturn_fraction <= 10:
            raise ConfigError("must be between 0 and 10", field="synth.multiturn_fraction")
        if self.phrasings < 0:
            raise ConfigError("must be 0 (all phrasings) or a positive count", field="synth.phrasings")
        if self.multiturn_max_turns < 2:
            raise ConfigError("must be at least 2", field="synth.multiturn_max_turns")


@dataclass
class SynthStats:
    """What synthesis made and skipped, for the manifest (nothing is dropped silently)."""

    rows: int = 0
    rows_without_direction: int = 0  # rows where no enabled direction applies (e.g. no en/zh column)
    empty_sentences: int = 0  # (row, language) cells with an empty sentence, left out of that row
    records: Counter = field(default_factory=Counter)  # per direction family, plus "multiturn"
    empty_by_language: Counter = field(default_factory=Counter)  # empty_sentences per language
    no_direction_by_language: Counter = field(default_factory=Counter)  # rows_without_direction per row language


# ----------------------------------------------------------------------------------------------- prompts
@functools.lru_cache(maxsize=32)
def load_phrasings(name: str, prompts_dir: str = str(PROMPTS_DIR)) -> tuple[str, ...]:
    """Phrasings of data/prompts/NAME.txt: one per line, ``#`` comments, literal ``\\n`` = line break."""
    path = Path(prompts_dir) / f"{name}.txt"
    if not path.is_file():
        raise BaylingError("prompt file not found", path=path)
    required = ("{tgt_lang}", "{text}") if name.startswith("translation") else ("{tgt_lang}",)
    out = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        missing = [p for p in required if p not in line]
        stripped = line
        for p in _PLACEHOLDERS:
            stripped = stripped.replace(p, "")
        if missing or "{" in stripped or "}" in stripped:
            what = f"missing {', '.join(missing)}" if missing else "unknown {placeholder}"
            raise BaylingError(
                f"bad phrasing ({what}); allowed: {', '.join(_PLACEHOLDERS)}", path=path, line=lineno
            )
        out.append(line.replace("\\n", "\n"))
    if not out:
        raise BaylingError("no phrasings in file", path=path)
    return tuple(out)


def fill(phrasing: str, *, src_lang: str = "", tgt_lang: str = "", text: str = "") -> str:
    """Fill placeholders by plain replacement (the sentence may itself contain braces)."""
    return phrasing.replace("{src_lang}", src_lang).replace("{tgt_lang}", tgt_lang).replace("{text}", text)


def bayling_prompt(tgt: str | Language, text: str, pivot: str = "en") -> str:
    """BayLing 1's translation prompt (the evaluation prompt), in English or Chinese."""
    phr = load_phrasings(f"translation_{pivot}")[0]
    return fill(phr, tgt_lang=get_language(tgt).name(pivot), text=text)


# ----------------------------------------------------------------------------------------------- helpers
def _digest(seed: int, key: str, tag: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{key}\x1f{tag}".encode()).digest()


def rng_for(seed: int, key: str, tag: str) -> random.Random:
    """A private random stream for one decision, so records never depend on which other rows were seen."""
    return random.Random(int.from_bytes(_digest(seed, key, tag)[:8], "big"))


@functools.lru_cache(maxsize=1024)
def _name(code: str, pivot: str) -> str:
    return get_language(code).name(pivot)


def family(src: str, tgt: str) -> str | None:
    """Direction family of a concrete pair (``deu_Latn``, ``eng_Latn`` -> ``x-en``); None if neither is a pivot."""
    en, zh = ENGLISH.code, CHINESE.code
    s = "en" if src == en else "zh" if src == zh else "x"
    t = "en" if tgt == en else "zh" if tgt == zh else "x"
    fam = f"{s}-{t}"
    return fam if fam in DIRECTIONS else None


def _clean_row(key: str, row: Mapping[str, str], stats: SynthStats) -> dict[str, str]:
    """Canonical codes -> stripped sentences; empty cells counted and left out."""
    out: dict[str, str] = {}
    for code, text in row.items():
        lang = get_language(code).code
        if not isinstance(text, str):
            raise DataError(f"row '{key}': sentence for {lang} is {type(text).__name__}, not text")
        if lang in out:
            raise DataError(f"row '{key}': two columns resolve to the same language {lang}")
        if text.strip():
            out[lang] = text.strip()
        else:
            stats.empty_sentences += 1
            stats.empty_by_language[lang] += 1
    return out


def translation_phrasings(pivot: str, limit: int = 0) -> tuple[str, ...]:
    """The translation phrasings in use: all of them, or the first ``limit`` (a small model learns one faster)."""
    phrasings = load_phrasings(f"translation_{pivot}")
    return phrasings[:limit] if limit > 0 else phrasings


def translation_record(
    key: str, source: str, src: str, tgt: str, row: Mapping[str, str], seed: int, phrasings: int = 0
) -> dict:
    """One one-turn translation record src -> tgt from a cleaned row (canonical codes)."""
    fam = family(src, tgt)
    if fam is None:
        raise ValueError(f"{src}-{tgt} involves no pivot language")
    # one hash gives both choices (no Random object: this runs once per record of the whole arm)
    digest = _digest(seed, key, f"{src}-{tgt}")
    pivot = (
        ("en" if digest[0] & 1 else "zh") if fam in ("en-zh", "zh-en") else ("en" if "en" in fam else "zh")
    )
    choices = translation_phrasings(pivot, phrasings)
    phrasing = choices[int.from_bytes(digest[1:9], "big") % len(choices)]
    user = fill(phrasing, src_lang=_name(src, pivot), tgt_lang=_name(tgt, pivot), text=row[src])
    return {
        "id": f"{source}:{key}:{src}-{tgt}",
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": row[tgt]}],
        "source": source,
        "category": "cross_lingual",
        "task": "translation",
        "langs": [src, tgt],
        "direction": f"{src}-{tgt}",
    }


def chain_record(
    key: str, source: str, index: int, row: Mapping[str, str], cfg: SynthConfig, pivots: list[str]
) -> dict | None:
    """Chain ``index`` of a multi-way row: translate into X, then into Y (or back), all answers from the row."""
    rng = rng_for(cfg.seed, key, f"chain{index}")
    pivot = rng.choice(pivots)
    enabled_pivots = {PIVOTS[p].code for p in pivots}
    allowed = sorted(c for c in row if c not in (ENGLISH.code, CHINESE.code) or c in enabled_pivots)
    if len(allowed) < 3:
        return None
    turns = rng.randint(2, cfg.multiturn_max_turns)
    order = rng.sample(allowed, min(len(allowed), turns + 1))
    src, targets = order[0], order[1:]
    name = {c: _name(c, pivot) for c in order}
    first = rng.choice(translation_phrasings(pivot, cfg.phrasings))
    messages = [
        {
            "role": "user",
            "content": fill(first, src_lang=name[src], tgt_lang=name[targets[0]], text=row[src]),
        },
        {"role": "assistant", "content": row[targets[0]]},
    ]
    for tgt in targets[1:]:
        if len(messages) // 2 >= turns:
            break
        follow = rng.choice(load_phrasings(f"followup_{pivot}"))
        messages += [
            {"role": "user", "content": fill(follow, tgt_lang=name[tgt])},
            {"role": "assistant", "content": row[tgt]},
        ]
    if len(messages) // 2 < turns:  # not enough languages left: ask for the original back
        back = rng.choice(load_phrasings(f"back_{pivot}"))
        messages += [
            {"role": "user", "content": fill(back, tgt_lang=name[src])},
            {"role": "assistant", "content": row[src]},
        ]
    langs = list(dict.fromkeys([src, *targets[: len(messages) // 2]]))
    return {
        "id": f"{source}:{key}:chain{index}",
        "messages": messages,
        "source": source,
        "category": "cross_lingual",
        "task": "multiturn_translation",
        "langs": langs,
    }


def _row_pairs(row: Mapping[str, str], directions: set[str]) -> list[tuple[str, str, str]]:
    """(src, tgt, family) for every enabled direction this row supports, in a fixed order."""
    en, zh = ENGLISH.code, CHINESE.code
    others = sorted(c for c in row if c not in (en, zh))
    pairs = []
    for x in others:
        for pivot in (en, zh):
            if pivot in row:
                pairs += [(x, pivot, family(x, pivot)), (pivot, x, family(pivot, x))]
    if en in row and zh in row:
        pairs += [(en, zh, "en-zh"), (zh, en, "zh-en")]
    return [p for p in pairs if p[2] in directions]


def synthesize(
    rows: Iterable[Row], cfg: SynthConfig, source: str, stats: SynthStats | None = None
) -> Iterator[dict]:
    """Cross-lingual records of every row, row by row (streaming; memory of one row)."""
    if not cfg.enabled:
        return
    stats = stats if stats is not None else SynthStats()
    directions = set(cfg.directions)
    pivots = [p for p in ("en", "zh") if any(p in d.split("-") for d in directions)]
    for key, raw in rows:
        stats.rows += 1
        row = _clean_row(key, raw, stats)
        pairs = _row_pairs(row, directions)
        if not pairs:
            stats.rows_without_direction += 1
            for lang in row_groups(raw):
                stats.no_direction_by_language[lang] += 1
            continue
        for src, tgt, fam in pairs:
            stats.records[fam] += 1
            yield translation_record(key, source, src, tgt, row, cfg.seed, cfg.phrasings)
        row_pivots = [p for p in pivots if PIVOTS[p].code in row]
        if len(row) < 3 or not row_pivots or cfg.multiturn_fraction <= 0:
            continue
        expected = cfg.multiturn_fraction * len(pairs)
        n_chains = int(expected) + (rng_for(cfg.seed, key, "chains").random() < expected - int(expected))
        for i in range(n_chains):
            rec = chain_record(key, source, i, row, cfg, row_pivots)
            if rec is not None:
                stats.records["multiturn"] += 1
                yield rec


def group_language(record: Mapping[str, Any]) -> str:
    """The language a cross-lingual record counts for: its first non-pivot language, else ``eng_Latn-zho_Hans``."""
    langs = record.get("langs") or []
    for code in langs:
        if code not in (ENGLISH.code, CHINESE.code):
            return code
    return f"{ENGLISH.code}-{CHINESE.code}"


def record_group(record: Mapping[str, Any]) -> str:
    """Sampling and accounting group of any record: its category for zh/en, else :func:`group_language`."""
    if record.get("category") != "cross_lingual":
        return str(record.get("category"))
    return group_language(record)


def row_groups(texts: Mapping[str, str]) -> list[str]:
    """Accounting groups of a parallel row: its non-pivot languages, or ``eng_Latn-zho_Hans`` for en-zh rows."""
    codes = [get_language(c).code for c in texts]
    xs = sorted(c for c in codes if c not in (ENGLISH.code, CHINESE.code))
    return xs or [f"{ENGLISH.code}-{CHINESE.code}"]
