"""WMT22 general task: the 14 directions, from a local copy in the wmt22-news-systems ``txt/`` layout.

Layout: ``DIR/sources/generaltest2022.<pair>.src.<src>`` and ``DIR/references/generaltest2022.<pair>.ref.<X>.<tgt>``
(X = translator id). Reference choice: ``first`` (default) uses reference A, or the alphabetically first one
when a pair has no A (cs-en and en-cs have B and C; B is also what sacrebleu's ``-t wmt22`` uses for them);
``all`` scores against every reference (multi-reference BLEU/chrF) in WMT22's order: translator ids in
REVERSE alphabetical order (B, A; C, B), the order of the published "-all" figures. WHY the order matters:
multi-reference chrF keeps, per segment, the first reference with the best score, so ties resolve
differently and A, B gives chrF off in the 3rd-4th decimal. Scoring follows the WMT22 convention: BLEU with
tokenize ``zh`` for Chinese targets, ``char`` for Japanese and ``13a`` otherwise, chrF with sacrebleu
defaults (see bayling.eval.metrics.choose_bleu_tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.errors import DataError
from bayling.eval.config import WMT22_PAIRS, EvalConfig
from bayling.eval.metrics import read_lines
from bayling.eval.translate import Task
from bayling.languages import get_language

PREFIX = "generaltest2022"


def reference_files(root: Path, pair: str) -> list[Path]:
    """All reference files of a pair, sorted by translator id (A, B, C...)."""
    tgt = pair.split("-")[1]
    return sorted((root / "references").glob(f"{PREFIX}.{pair}.ref.*.{tgt}"))


def official_order(refs: list[Path]) -> list[Path]:
    """Several references in the order WMT22 scored "-all": translator ids reverse-alphabetical (B before A)."""
    return sorted(refs, key=lambda p: p.name.split(".ref.")[1].split(".")[0], reverse=True)


def build_tasks(cfg: EvalConfig) -> list[Task]:
    """One task per requested pair; every file is checked before a model is loaded."""
    root = Path(cfg.wmt_dir or "")
    if not root.is_dir():
        raise DataError("WMT22 directory not found", path=root, field="wmt_dir")
    tasks = []
    for pair in cfg.pairs or list(WMT22_PAIRS):
        s, t = pair.split("-")
        src_path = root / "sources" / f"{PREFIX}.{pair}.src.{s}"
        if not src_path.is_file():
            raise DataError(f"WMT22 source file for {pair} not found (expected DIR/sources/{src_path.name})",
                            path=src_path)
        refs = reference_files(root, pair)
        if not refs:
            raise DataError(f"no WMT22 reference for {pair} (expected DIR/references/{PREFIX}.{pair}.ref.A.{t})",
                            path=root / "references")
        refs = refs[:1] if cfg.wmt_refs == "first" else official_order(refs)
        sources = read_lines(src_path, "WMT22 source")
        ref_lines = [read_lines(p, "WMT22 reference") for p in refs]
        for p, lines in zip(refs, ref_lines):
            if len(lines) != len(sources):
                raise DataError(f"reference has {len(lines)} lines but the source has {len(sources)}", path=p)
        if cfg.limit:
            sources, ref_lines = sources[: cfg.limit], [r[: cfg.limit] for r in ref_lines]
        src_lang, tgt_lang = get_language(s), get_language(t)
        tasks.append(Task(
            name=pair, src=src_lang, tgt=tgt_lang, sources=sources, refs=ref_lines,
            families=[_family(s, t)], prompt_lang="zh" if cfg.prompt_lang == "zh" else "en",
            files={"source": str(src_path), "references": [str(p) for p in refs],
                   "reference_ids": [p.name.split(".ref.")[1].split(".")[0] for p in refs]},
        ))
    return tasks


def _family(s: str, t: str) -> str:
    if s == "en":
        return "en-x"
    if t == "en":
        return "x-en"
    return "x-x"


def score_settings(cfg: EvalConfig) -> dict[str, Any]:
    return {"policy": "wmt22", "spm": None, "comet_model": cfg.comet_model}
