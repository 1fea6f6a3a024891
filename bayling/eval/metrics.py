"""Translation metrics with sacrebleu: every score carries its signature, and no metric switches silently.

Why the care: BLEU numbers are only comparable when the tokenizer is the same, and spBLEU (the FLORES
convention) needs a sentencepiece model that is downloaded on first use. When that model is missing offline
the score is reported as ``bleu_13a`` *with the reason*, never under the name ``spbleu``. Chinese targets
use sacrebleu's ``zh`` tokenizer and Japanese ``char`` (what WMT22's published figures used), so scores
do not depend on optional packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.errors import BaylingError, ConfigError, DataError
from bayling.hub import is_offline
from bayling.languages import Language

SPM_FILES = {
    "flores101": "sacrebleu_tokenizer_spm.model",
    "flores200": "flores200sacrebleuspm",
}
_SPM_FAILED: dict[str, str] = {}


@dataclass
class Score:
    """One corpus-level score: ``name`` says exactly which metric (e.g. ``spbleu_flores101``, ``bleu_13a``)."""

    name: str
    score: float
    signature: str
    note: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "score": self.score, "signature": self.signature}
        if self.note:
            out["note"] = self.note
        if self.details:
            out["details"] = self.details
        return out


#: ISO 15924 script (the registry's ``script`` column) -> the tokenizer family BLEU needs. WHY the script and
#: not the code: ``jav_Latn`` (Javanese) starts like ``ja`` but is written in Latin script with spaces.
SCRIPT_FAMILY = {"Hans": "zh", "Hant": "zh", "Hani": "zh", "Jpan": "ja", "Hira": "ja", "Kana": "ja"}


def tokenizer_family(lang: str | Language | None) -> str:
    """``zh``, ``ja`` or ``other``, from the language registry's script; unknown codes are ``other``."""
    if lang is None:
        return "other"
    if isinstance(lang, str):
        from bayling.languages import get_language

        try:
            lang = get_language(lang)
        except BaylingError:
            return "other"
    return SCRIPT_FAMILY.get(lang.script, "other")


def check_tokenizer(name: str) -> None:
    """An explicit ``--tokenize`` must be one sacrebleu knows and can run here (one line otherwise)."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.metrics.bleu import _TOKENIZERS as SACREBLEU_TOKENIZERS  # sacrebleu's own registry

    if name not in SACREBLEU_TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenizer '{name}'; sacrebleu knows: {', '.join(SACREBLEU_TOKENIZERS)}",
                          field="tokenize")
    try:
        BLEU(tokenize=name)
    except (KeyError, ValueError, RuntimeError, AssertionError, TypeError, ImportError) as err:
        raise ConfigError(f"BLEU tokenizer '{name}' is not usable here: {' '.join(str(err).split())[:200]}",
                          field="tokenize") from None


def target_language(code: str, explicit_tokenizer: str | None) -> tuple[str, Language | None]:
    """(code, registry entry) of a target; a code outside the registry is allowed with an explicit tokenizer.

    WHY: WMT22 has targets the FLORES registry does not list (Livonian ``liv``, Yakut ``sah``); their BLEU
    needs no language knowledge once the user names the tokenizer, so refusing them would be needless.
    """
    from bayling.languages import get_language

    try:
        lang = get_language(code)
    except BaylingError as err:
        if explicit_tokenizer:
            return code, None
        raise BaylingError(f"{err.message}; for a target outside the registry pass --tokenize "
                           "(e.g. 13a for a space-separated script)", field="tgt_lang") from None
    return lang.code, lang


def sacrebleu_dir() -> Path:
    """Where sacrebleu itself looks for models (it reads $SACREBLEU once, at import)."""
    from sacrebleu.tokenizers import tokenizer_spm

    return Path(tokenizer_spm.SACREBLEU_DIR)


def spm_available(flavour: str, allow_download: bool = True) -> tuple[bool, str | None]:
    """Is the FLORES sentencepiece model present (or fetchable)? Returns (ok, reason-if-not)."""
    path = sacrebleu_dir() / "models" / SPM_FILES[flavour]
    if path.is_file() and path.stat().st_size > 0:
        return True, None
    if not allow_download or is_offline():
        return False, f"spBLEU ({flavour}) unavailable: {path} not found and downloads are off (offline)"
    if str(path) in _SPM_FAILED:  # one failed download per run, not one per direction
        return False, _SPM_FAILED[str(path)]
    try:
        from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
        from sacrebleu.utils import download_file

        download_file(SPM_MODELS[flavour]["url"], str(path))
    except (Exception, SystemExit) as err:  # urllib raises many types; sacrebleu may sys.exit on SSL errors
        _SPM_FAILED[str(path)] = f"spBLEU ({flavour}) unavailable: download failed ({type(err).__name__})"
        return False, _SPM_FAILED[str(path)]
    if path.is_file() and path.stat().st_size > 0:
        return True, None
    return False, f"spBLEU ({flavour}) unavailable: download produced no model at {path}"


def choose_bleu_tokenizer(tgt_lang: str | Language | None, policy: str = "field",
                          spm: str | None = "flores101") -> tuple[str, str | None]:
    """Pick the sacrebleu tokenizer for a target language and say why when it is a fallback.

    ``policy='wmt22'``: the tokenizers behind WMT22's published BLEU (wmt22-news-systems,
    scores/automatic-scores.tsv): ``zh`` for Chinese, ``char`` for Japanese, ``13a`` otherwise. WHY ``char``
    for Japanese: it reproduces the published en-ja figures, while ``ja-mecab`` (sacrebleu's default for
    ``-l en-ja``) gives about 14 BLEU less; and it needs no optional package, so the figure is the same in
    any install. ``policy='field'`` (FLORES): ``zh`` for Chinese, spBLEU (the FLORES sentencepiece model)
    when available, else ``char`` for Japanese (no spaces between words) and ``13a`` otherwise, with a note.
    The family comes from the registry's script (``jav_Latn`` is Latin-script Javanese, not Japanese).
    """
    family = tokenizer_family(tgt_lang)
    if family == "zh":
        return "zh", None
    if policy == "wmt22":
        return ("char" if family == "ja" else "13a"), None
    note = None
    if spm:
        ok, reason = spm_available(spm)
        if ok:
            return spm, None
        note = reason
    if family == "ja":
        return "char", f"{note}; using char tokenization (Japanese has no spaces)" if note else None
    return "13a", note


def metric_name(tokenize: str) -> str:
    return f"spbleu_{tokenize}" if tokenize.startswith("flores") else f"bleu_{tokenize}"


def check_lines(hyps: list[str], refs: list[list[str]], *, hyp_path: str | None = None,
                ref_paths: list[str] | None = None, allow_empty: bool = False) -> None:
    """Line counts must match and the hypothesis must not be empty: a one-line error otherwise.

    ``allow_empty``: a model that outputs nothing is a (bad) result to score, not a user error.
    """
    if not allow_empty and (not hyps or all(not h.strip() for h in hyps)):
        raise DataError("hypothesis file is empty", path=hyp_path)
    for i, ref in enumerate(refs):
        if len(ref) != len(hyps):
            where = ref_paths[i] if ref_paths else None
            raise DataError(
                f"reference has {len(ref)} lines but the hypothesis has {len(hyps)}"
                + (f" ({hyp_path})" if hyp_path else ""),
                path=where,
            )


def bleu(hyps: list[str], refs: list[list[str]], tokenize: str, note: str | None = None) -> Score:
    from sacrebleu.metrics import BLEU

    try:
        metric = BLEU(tokenize=tokenize)
    except RuntimeError as err:  # missing optional tokenizer dependency
        raise ConfigError(f"BLEU tokenizer '{tokenize}' is not usable: {' '.join(str(err).split())}") from None
    res = metric.corpus_score(hyps, refs)
    return Score(metric_name(tokenize), res.score, str(metric.get_signature()), note,
                 {"bp": round(res.bp, 4), "sys_len": res.sys_len, "ref_len": res.ref_len})


def chrf(hyps: list[str], refs: list[list[str]], word_order: int = 2) -> Score:
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=word_order)
    res = metric.corpus_score(hyps, refs)
    return Score("chrf++" if word_order == 2 else "chrf", res.score, str(metric.get_signature()))


def comet(srcs: list[str], hyps: list[str], refs: list[str], model_path: str, batch_size: int = 16) -> Score:
    """COMET from a *local* checkpoint (unbabel-comet must be installed); never downloads."""
    try:
        from comet import load_from_checkpoint
    except ImportError:
        raise ConfigError("--comet-model needs unbabel-comet: pip install unbabel-comet") from None
    p = Path(model_path)
    ckpt = p if p.is_file() else p / "checkpoints" / "model.ckpt"
    if not ckpt.is_file():
        raise ConfigError("no COMET checkpoint (expected a .ckpt file or DIR/checkpoints/model.ckpt)", path=p)
    model = load_from_checkpoint(str(ckpt))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(srcs, hyps, refs)]
    gpus = 1 if _cuda() else 0
    out = model.predict(data, batch_size=batch_size, gpus=gpus, progress_bar=False)
    return Score("comet", float(out.system_score) * 100, f"comet:{p.name}|unbabel-comet")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def score_translation(
    hyps: list[str],
    refs: list[list[str]],
    tgt_lang: str,
    *,
    policy: str = "field",
    spm: str | None = "flores101",
    tokenize: str | None = None,
    srcs: list[str] | None = None,
    comet_model: str | None = None,
) -> dict[str, dict[str, Any]]:
    """BLEU (target-appropriate tokenizer), chrF++ (or chrF for WMT22) and optional COMET, as dicts."""
    check_lines(hyps, refs, allow_empty=True)
    if tokenize is None:
        tokenize, note = choose_bleu_tokenizer(tgt_lang, policy, spm)
    else:
        note = None
    out = {"bleu": bleu(hyps, refs, tokenize, note).to_dict()}
    out["chrf"] = chrf(hyps, refs, word_order=0 if policy == "wmt22" else 2).to_dict()
    if comet_model:
        if srcs is None:
            raise BaylingError("COMET needs the source sentences")
        out["comet"] = comet(srcs, hyps, refs[0], comet_model).to_dict()
    return out


def read_lines(path: str | Path, what: str = "file") -> list[str]:
    """Read a line-per-segment text file (UTF-8) with one-line errors for missing/undecodable files."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{what} is a folder, not a file", path=p)
    if not p.is_file():
        raise DataError(f"{what} not found", path=p)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError("invalid UTF-8", path=p, line=line) from None
    if "\x00" in text:  # a binary file given by mistake: a NUL is never part of a segment
        raise DataError("contains a NUL character (is this a binary file?)", path=p,
                        line=text[: text.index("\x00")].count("\n") + 1)
    text = text.removeprefix("\ufeff")  # a BOM is stripped, as the data builder does
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


