"""FLORES-101/200 devtest translation suite: X->en, en->X, X->zh, zh->X with BayLing 1's prompt.

Data comes from a local directory in the layout of the official release (``<stem>.devtest`` files, stems
``deu``/``zho_simpl`` for FLORES-101 and ``deu_Latn``/``zho_Hans`` for FLORES-200, directly in the folder or
under ``devtest/``), or, when online, from the official tarball fetched with sacrebleu's own downloader
into ``$SACREBLEU`` (sacrebleu 2.6 has no FLORES test set of its own). Offline without ``--flores-dir`` is a
one-line error naming that option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.errors import BaylingError, DataError, OfflineError
from bayling.eval.config import FAMILIES, EvalConfig
from bayling.eval.metrics import read_lines
from bayling.eval.translate import PIVOTS, Task
from bayling.hub import is_offline
from bayling.languages import Language, flores101_languages, get_language, parse_languages

FLORES_URLS = {
    101: ("https://dl.fbaipublicfiles.com/flores101/dataset/flores101_dataset.tar.gz", "flores101_dataset"),
    200: ("https://tinyurl.com/flores200dataset", "flores200_dataset"),
}


def _devtest_dir(root: Path, version: int) -> Path | None:
    """The folder holding ``*.devtest`` files: ROOT, ROOT/devtest or ROOT/flores{v}_dataset/devtest."""
    for cand in (root, root / "devtest", root / FLORES_URLS[version][1] / "devtest"):
        if cand.is_dir() and any(cand.glob("*.devtest")):
            return cand
    return None


def locate_flores(flores_dir: str | None, version: int) -> Path:
    """A local FLORES devtest folder: the given one, or the official release downloaded via sacrebleu."""
    if flores_dir is not None:
        root = Path(flores_dir)
        if not root.is_dir():
            raise DataError("FLORES directory not found", path=root)
        found = _devtest_dir(root, version)
        if found is None:
            raise DataError("no *.devtest files here (expected the FLORES devtest layout)", path=root)
        return found
    from bayling.eval.metrics import sacrebleu_dir

    url, name = FLORES_URLS[version]
    base = sacrebleu_dir()
    found = _devtest_dir(base, version)
    if found is not None:
        return found
    hint = f"offline: FLORES-{version} is not in {base}; pass a local copy with --flores-dir DIR"
    if is_offline():
        raise OfflineError(hint)
    try:
        from sacrebleu.utils import download_file

        download_file(url, str(base / f"{name}.tar.gz"), extract_to=str(base))
    except (Exception, SystemExit) as err:  # network errors come in many types; sacrebleu may sys.exit
        raise OfflineError(f"could not download FLORES-{version} ({type(err).__name__}); "
                           "pass a local copy with --flores-dir DIR") from None
    found = _devtest_dir(base, version)
    if found is None:
        raise OfflineError(f"the FLORES-{version} download had no devtest files; pass --flores-dir DIR")
    return found


def select_languages(spec: str, version: int) -> list[Language]:
    """``all``/tier/list, restricted to the languages the chosen FLORES release has."""
    if version == 101 and spec.strip() in ("all", "flores101"):
        return flores101_languages()
    try:
        langs = parse_languages(spec)
    except BaylingError as err:
        if "unknown language" not in err.message:
            raise
        known = [lg.flores101 for lg in flores101_languages()] if version == 101 else ["see data/languages.tsv"]
        raise BaylingError(f"{err.message.split('; see ')[0]}; --langs takes all, high, medium, low or codes; "
                           f"FLORES-{version} has: {', '.join(known)}", field="langs") from None
    if version == 101:
        missing = [lg for lg in langs if not lg.flores101]
        explicit = spec.strip() not in ("high", "medium", "low", "flores200")
        if missing and explicit:
            names = ", ".join(f"{lg.code} ({lg.name_en})" for lg in missing)
            raise DataError(f"not in FLORES-101: {names}; use --flores 200 or choose among "
                            f"{len(flores101_languages())} FLORES-101 languages (--langs all)", field="langs")
        langs = [lg for lg in langs if lg.flores101]
    return langs


def plan_directions(langs: list[Language], families: list[str]) -> list[tuple[Language, Language, list[str]]]:
    """(src, tgt, families) for each direction, de-duplicated (en->zh is both en-x and x-zh)."""
    eng, zho = get_language("eng_Latn"), get_language("zho_Hans")
    plan: dict[tuple[str, str], tuple[Language, Language, list[str]]] = {}
    for x in langs:
        pairs = {"en-x": (eng, x), "x-en": (x, eng), "zh-x": (zho, x), "x-zh": (x, zho)}
        for fam in FAMILIES:
            if fam not in families:
                continue
            src, tgt = pairs[fam]
            if src.code == tgt.code:
                continue
            entry = plan.setdefault((src.code, tgt.code), (src, tgt, []))
            entry[2].append(fam)
    return list(plan.values())


def prompt_language(src: Language, tgt: Language, setting: str) -> str:
    """``auto``: Chinese instruction for zh-pivot directions (zh<->X, X not English), else English."""
    if setting != "auto":
        return setting
    codes = {src.code, tgt.code}
    return "zh" if "zho_Hans" in codes and "eng_Latn" not in codes else "en"


def read_flores(folder: Path, lang: Language, version: int) -> tuple[list[str], Path]:
    """All lines of one language's devtest file (``--limit`` is applied later, after the alignment check)."""
    stem = lang.flores_file(version)
    path = folder / f"{stem}.devtest"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.devtest"))
        shown = ", ".join(have[:20]) + (f", ... ({len(have)} in all)" if len(have) > 20 else "")
        raise DataError(f"no FLORES file for {lang.code} ({lang.name_en}); this folder has: {shown}", path=path)
    return read_lines(path, "FLORES file"), path


def build_tasks(cfg: EvalConfig) -> list[Task]:
    """Every requested direction with its sources and reference, checked before any model is loaded."""
    folder = locate_flores(cfg.flores_dir, cfg.flores)
    langs = select_languages(cfg.langs, cfg.flores)
    families = cfg.directions or list(FAMILIES)
    cache: dict[str, tuple[list[str], Path]] = {}

    def segs(lang: Language) -> tuple[list[str], Path]:
        if lang.code not in cache:
            cache[lang.code] = read_flores(folder, lang, cfg.flores)
        return cache[lang.code]

    tasks = []
    for src, tgt, fams in plan_directions(langs, families):
        (src_lines, src_path), (ref_lines, ref_path) = segs(src), segs(tgt)
        # WHY before --limit: a file with a line missing near its end is misaligned from that line on;
        # truncating first would hide it and score shifted references.
        if len(src_lines) != len(ref_lines):
            raise DataError(f"{src_path.name} has {len(src_lines)} lines but {ref_path.name} has "
                            f"{len(ref_lines)}; FLORES files must be line-aligned", path=ref_path)
        if cfg.limit:
            src_lines, ref_lines = src_lines[: cfg.limit], ref_lines[: cfg.limit]
        tasks.append(Task(
            name=f"{src.code}-{tgt.code}", src=src, tgt=tgt, sources=src_lines, refs=[ref_lines],
            families=fams, prompt_lang=prompt_language(src, tgt, cfg.prompt_lang),
            files={"source": str(src_path), "reference": str(ref_path)},
        ))
    if not tasks:
        raise DataError("no directions to evaluate (check --langs and --directions)", field="langs")
    return tasks


def score_settings(cfg: EvalConfig) -> dict[str, Any]:
    return {"policy": "field", "spm": f"flores{cfg.flores}", "comet_model": cfg.comet_model}


__all__ = ["PIVOTS", "build_tasks", "locate_flores", "plan_directions", "score_settings", "select_languages"]
