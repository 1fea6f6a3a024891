"""The recipe: one typed YAML file that says which sources go in and how they are mixed.

It is a dataclass tree loaded by :mod:`bayling.config`, so an unknown key is an error with a suggestion
and every value can be overridden on the command line (``mix.target_total=10000``,
``instructions.belle_zh.path=/data/belle.json``). Sources are *mappings by name* rather than lists
precisely so that a single source can be pointed at a local copy with one ``key=value``.

Relative paths written in a recipe file are relative to that file's directory (a recipe and its data
travel together); relative paths given as overrides or on the command line are relative to the
current directory, as a user typing them expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bayling.config import deep_merge, from_dict, load_yaml, parse_overrides
from bayling.data.filters import FilterConfig
from bayling.data.records import check_format
from bayling.data.synth import SynthConfig
from bayling.errors import ConfigError

PAPER_PROPORTIONS = {"zh": 0.432, "en": 0.262, "cross_lingual": 0.306}


@dataclass
class InstructionSet:
    """An instruction-tuning set (Alpaca, ShareGPT or OpenAI-messages records) of one category."""

    path: str  # local file (.json/.jsonl, optionally .gz/.zst), snapshot folder, or hub dataset id
    category: Literal["zh", "en"]
    format: str = "auto"  # an instructions format of bayling.data.records.FORMATS
    task: str = ""  # task label written into the records ("" = general)
    split: str = ""  # hub split (default train)
    config: str = ""  # hub config name
    files: str = ""  # snapshot folders: glob of the files to read (default: found from the layout)
    limit: int = 0  # read at most this many records (0 = all)
    enabled: bool = True


@dataclass
class ParallelSet:
    """Line-aligned parallel text that the synthesiser turns into cross-lingual instructions."""

    path: str  # FLORES-style directory, TSV of pairs, first file of a pair, snapshot folder, or hub dataset id
    format: str = "flores"  # a parallel format of bayling.data.records.FORMATS
    langs: list[str] = field(default_factory=list)  # flores: languages to read ([] = all); others: [src, tgt]
    tgt_path: str = ""  # the second file of a pair
    split: str = ""  # FLORES split (devtest/dev) or hub split
    config: str = ""  # hub config name, e.g. "de-en" for Helsinki-NLP/opus-100
    files: str = ""  # snapshot folders: glob of the files to read (default: found from the layout)
    skip_rows: int = 0  # drop the first N aligned rows (e.g. lines held out for evaluation)
    limit: int = 0  # at most this many rows after skip_rows (0 = all)
    pivot_with: str = ""  # name of an en<->zh parallel source: also make X<->zh rows joined on English
    fetch: str = ""  # command that fetches it, for --dry-run ({id}, {config}, {dir}); default: hf download
    enabled: bool = True


CODE_SYSTEMS = ("iso639_1", "iso639_3", "flores200", "flores101")


@dataclass
class ParallelGroup:
    """Many languages from one corpus, said once ("these languages, from this corpus, config pattern ...").

    Expands (:func:`expand_groups`) into one ``parallel`` source per language, named ``GROUP_CODE`` (e.g.
    ``opus100_deu_Latn``), which a ``parallel.GROUP_CODE.*`` entry or override may still change. Patterns in
    ``config`` and ``files``: ``{x}`` = the language's code in the corpus, ``{pivot}`` = the pivot's,
    ``{pair}`` = both sorted and joined by '-' (OPUS-100's ``de-en``, ``en-fr``).
    """

    path: str  # hub dataset id, snapshot folder, or local root
    langs: list[str] = field(default_factory=list)  # codes or groups: flores101, flores200, high/medium/low
    exclude: list[str] = field(default_factory=list)
    corpus_langs: list[str] = field(default_factory=list)  # codes the corpus has ([] = assume every language)
    pivot: str = "eng_Latn"
    code: str = "iso639_1"  # how the corpus spells a language: one of CODE_SYSTEMS
    codes: dict[str, str] = field(default_factory=dict)  # exceptions: canonical code -> corpus code
    format: str = "translation"
    config: str = "{pair}"
    files: str = ""
    split: str = ""
    skip_rows: int = 0
    limit: int = 0
    pivot_with: str = ""
    fetch: str = ""  # command that fetches one language's data, for --dry-run ({id}, {config}, {dir})
    enabled: bool = True

    def corpus_code(self, lang: Any) -> str:
        return self.codes.get(lang.code) or getattr(lang, self.code)

    def members(self) -> tuple[list[Any], list[str]]:
        """(languages this group links to its pivot, languages it asked for that the corpus lacks)."""
        from bayling.languages import get_language, parse_languages

        try:
            wanted = parse_languages(self.langs)
            dropped = {lg.code for lg in parse_languages(self.exclude)} if self.exclude else set()
            pivot = get_language(self.pivot)
        except ConfigError:
            raise
        except Exception as err:  # the registry's BaylingError: name the recipe key
            raise ConfigError(str(err), field="langs") from None
        have = set(self.corpus_langs)
        out, lacking = [], []
        for lg in wanted:
            if lg.code in dropped or lg.code == pivot.code:
                continue
            code = self.corpus_code(lg)
            if not code or (have and code not in have):
                lacking.append(lg.code)
            else:
                out.append(lg)
        return out, lacking

    def entry(self, lang: Any) -> dict[str, Any]:
        """The ``parallel`` source this group makes for one language."""
        from bayling.languages import get_language

        pivot = get_language(self.pivot)
        x, pv = self.corpus_code(lang), self.corpus_code(pivot)
        fill = {"x": x, "pivot": pv, "pair": "-".join(sorted((x, pv)))}
        out: dict[str, Any] = {"path": self.path, "format": self.format, "langs": [lang.code, pivot.code],
                               "config": self.config.format(**fill), "files": self.files.format(**fill),
                               "split": self.split, "skip_rows": self.skip_rows, "limit": self.limit,
                               "pivot_with": self.pivot_with, "fetch": self.fetch, "enabled": self.enabled}
        return out


@dataclass
class DedupSettings:
    """Global, prompt-side dedup (bayling/data/dedup.py); the first occurrence in recipe order wins."""

    enabled: bool = True
    near: bool = True  # MinHash LSH near duplicates as well as exact (normalised) duplicates
    threshold: float = 0.8  # character 5-gram Jaccard similarity around which LSH starts to collide
    num_perm: int = 64
    ngram: int = 5

    def validate(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError("must be in (0, 1]", field="dedup.threshold")
        if self.num_perm < 1 or self.ngram < 1:
            raise ConfigError("num_perm and ngram must be >= 1", field="dedup")


@dataclass
class DecontamSettings:
    paths: list[str] = field(default_factory=list)  # FLORES dirs, WMT files, any text files
    ngram: int = 13  # tokens shared with an eval sentence that count as contamination


@dataclass
class MixSettings:
    proportions: dict[str, float] = field(default_factory=lambda: dict(PAPER_PROPORTIONS))
    target_total: int = 3_200_000  # paper: 3.2M instructions
    temperature_alpha: float = 0.3  # cross-lingual languages: p ∝ n^alpha (assumption; XLM-R/mT5 use 0.3)
    upsample_cap: float = 3.0  # no record repeated more than this many times (assumption)
    valid_fraction: float = 0.01  # of the distinct selected records (assumption)
    valid_max: int = 5000

    def validate(self) -> None:
        unknown = set(self.proportions) - set(PAPER_PROPORTIONS)
        if unknown:
            raise ConfigError(f"unknown categories {sorted(unknown)}; known: zh, en, cross_lingual",
                              field="mix.proportions")
        if any(v < 0 for v in self.proportions.values()) or sum(self.proportions.values()) <= 0:
            raise ConfigError("proportions must be >= 0 and not all 0", field="mix.proportions")
        if self.target_total < 1:
            raise ConfigError("must be at least 1", field="mix.target_total")
        if self.upsample_cap < 1:
            raise ConfigError("must be >= 1 (1 = never repeat a record)", field="mix.upsample_cap")
        if not 0 <= self.valid_fraction < 1:
            raise ConfigError("must be in [0, 1)", field="mix.valid_fraction")
        if self.temperature_alpha < 0:
            raise ConfigError("must be >= 0", field="mix.temperature_alpha")


@dataclass
class OutputSettings:
    shard_size: int = 100_000  # training records per train/part-NNNNN.jsonl
    plot: bool = True  # languages.png


@dataclass
class Recipe:
    name: str = "custom"
    seed: int = 1
    cross_lingual: bool = True  # false = the paper's ablation without the cross-lingual arm
    instructions: dict[str, InstructionSet] = field(default_factory=dict)
    parallel: dict[str, ParallelSet] = field(default_factory=dict)
    parallel_groups: dict[str, ParallelGroup] = field(default_factory=dict)
    synth: SynthConfig = field(default_factory=SynthConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    decontaminate: DecontamSettings = field(default_factory=DecontamSettings)
    mix: MixSettings = field(default_factory=MixSettings)
    output: OutputSettings = field(default_factory=OutputSettings)

    def validate(self) -> None:
        if self.output.shard_size < 1:
            raise ConfigError("must be at least 1", field="output.shard_size")
        for section, sources in (("instructions", self.instructions), ("parallel", self.parallel)):
            for name, src in sources.items():
                check_format(src.format, section, f"{section}.{name}.format")
                for key in ("limit", "skip_rows"):
                    value = getattr(src, key, 0)
                    if value < 0:
                        raise ConfigError(f"must be >= 0 (0 = no {'limit' if key == 'limit' else 'rows skipped'})"
                                          f", got {value}", field=f"{section}.{name}.{key}")


def _resolve(value: str, base: Path) -> str:
    """Make a relative local path absolute against ``base``; leave hub ids and absolute paths alone."""
    if not value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = base / p
    if candidate.exists() or not _hub_like(value):
        return str(candidate.resolve()) if candidate.exists() else str(candidate)
    return value


def _hub_like(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "~"))


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve every path-valued key of a raw recipe mapping against ``base``."""
    out = dict(data)
    for section in ("instructions", "parallel", "parallel_groups"):
        srcs = out.get(section)
        if isinstance(srcs, dict):
            out[section] = {
                name: {k: (_resolve(v, base) if k in ("path", "tgt_path") and isinstance(v, str) else v)
                       for k, v in src.items()} if isinstance(src, dict) else src
                for name, src in srcs.items()
            }
    dec = out.get("decontaminate")
    if isinstance(dec, dict) and isinstance(dec.get("paths"), list):
        out["decontaminate"] = {**dec, "paths": [_resolve(str(p), base) for p in dec["paths"]]}
    return out


def expand_groups(data: dict[str, Any], source: str | None) -> dict[str, Any]:
    """Raw recipe mapping with every ``parallel_groups`` entry expanded into ``parallel`` sources.

    Explicit ``parallel`` entries come first and are merged over a generated entry of the same name, so one
    language of a group can be re-pointed (``parallel.opus100_deu_Latn.path=DIR``) or switched off.
    """
    groups = data.get("parallel_groups")
    if not isinstance(groups, dict) or not groups:
        return data
    explicit = data.get("parallel") if isinstance(data.get("parallel"), dict) else {}
    generated: dict[str, Any] = {}
    for gname, raw in groups.items():
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a section (mapping), got {raw!r}", path=source, field=f"parallel_groups.{gname}")
        group = from_dict(ParallelGroup, raw, source=source, prefix=f"parallel_groups.{gname}.")
        where = f"parallel_groups.{gname}"
        if group.code not in CODE_SYSTEMS:
            raise ConfigError(f"must be one of {', '.join(CODE_SYSTEMS)}, got '{group.code}'", path=source,
                              field=f"{where}.code")
        for key in ("limit", "skip_rows"):
            if getattr(group, key) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(group, key)}", path=source, field=f"{where}.{key}")
        if not group.langs:
            raise ConfigError("needs langs (codes, or groups such as flores101)", path=source, field=f"{where}.langs")
        try:
            langs, _ = group.members()
        except ConfigError as err:
            raise ConfigError(err.message, path=source, field=f"parallel_groups.{gname}.{err.field}") from None
        for lg in langs:
            generated[f"{gname}_{lg.code}"] = group.entry(lg)
    parallel = {k: (deep_merge(generated[k], v) if k in generated and isinstance(v, dict) else v)
                for k, v in explicit.items()}
    parallel.update({k: v for k, v in generated.items() if k not in parallel})
    return {**data, "parallel": parallel}


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Recipe file (paths relative to it) < overrides (paths relative to the current directory).

    An error names the recipe file when the file alone has it, else the command line (an override's)."""
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        data = _resolve_paths(load_yaml(path), Path(path).resolve().parent)
        source = str(path)

    def build(raw: dict[str, Any]) -> Recipe:
        try:
            return from_dict(Recipe, expand_groups(raw, source), source=source)
        except ConfigError as err:
            if err.path is None and source is not None:  # a validate() check: still the file's
                raise ConfigError(err.message, path=source, line=err.line, field=err.field) from None
            raise

    extra = _resolve_paths(parse_overrides(overrides or []), Path.cwd())
    if not extra:
        return build(data)
    try:
        return build(deep_merge(data, extra))
    except ConfigError as err:
        try:
            build(data)
        except ConfigError as file_err:
            if file_err.message == err.message and file_err.field == err.field:
                raise file_err from None
        raise ConfigError(err.message, path="command line (key=value)", field=err.field) from None
