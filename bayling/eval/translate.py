"""The resumable translation loop shared by the FLORES and WMT22 suites.

Why resumable per direction: a 100-language FLORES run is hundreds of directions and hours of GPU time; a
pre-emption must not lose more than the direction in progress. Each direction writes ``hyp/<name>.txt``
(atomically: temp file + rename) and then ``directions/<name>.json`` (scores + a fingerprint of what
produced the hypotheses). A rerun reuses a direction whose fingerprint and hypothesis checksum match,
re-scores it if only the scoring settings changed, and regenerates it otherwise. ``eval.log`` records
which directions were generated, re-scored or skipped.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text
from bayling.data.synth import bayling_prompt
from bayling.eval.metrics import score_translation
from bayling.languages import Language

PIVOTS = ("eng_Latn", "zho_Hans")


@dataclass
class Task:
    """One direction: sources, references (one list per reference set) and how to name/score it."""

    name: str
    src: Language
    tgt: Language
    sources: list[str]
    refs: list[list[str]]
    families: list[str] = field(default_factory=list)
    prompt_lang: str = "en"
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def x_lang(self) -> Language:
        """The non-pivot side, used for per-tier averages (en<->zh counts as the target side)."""
        return self.tgt if self.src.code in PIVOTS else self.src


def make_prompt(src_text: str, tgt: Language, prompt_lang: str) -> str:
    """BayLing 1's translation instruction, in English or (zh-pivot directions) Chinese: the first phrasing of
    data/prompts/translation_{en,zh}, the same text the data stage puts first (one home for the prompt)."""
    return bayling_prompt(tgt, src_text, "zh" if prompt_lang == "zh" else "en")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_fingerprint(task: Task) -> str:
    """Hash of sources and references, so changed data (or --limit) forces regeneration."""
    h = hashlib.sha256()
    for line in task.sources:
        h.update(line.encode("utf-8") + b"\n")
    for ref in task.refs:
        h.update(b"\x00REF\x00")
        for line in ref:
            h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


class RunLog:
    """Append-only human-readable log of what each (re)run did, in ``eval.log``."""

    def __init__(self, out: Path, quiet: bool = False) -> None:
        self.path = out / "eval.log"
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if not self.quiet:
            print(line, file=sys.stderr)


def _load_done(out: Path, task: Task, gen_fp: dict[str, Any]) -> dict[str, Any] | None:
    """The saved record of a finished direction, if it is complete and was produced the same way."""
    rec_path = out / "directions" / f"{task.name}.json"
    hyp_path = out / "hyp" / f"{task.name}.txt"
    if not (rec_path.is_file() and hyp_path.is_file()):
        return None
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if rec.get("generation") != gen_fp:
        return None
    if rec.get("hyp_sha256") != sha256_text(hyp_path.read_text(encoding="utf-8")):
        return None
    return rec


def run_tasks(
    tasks: list[Task],
    out: Path,
    *,
    make_generator: Callable[[], Any],
    gen_settings: dict[str, Any],
    batch_size: int,
    score_settings: dict[str, Any],
    log: RunLog,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Generate + score every task, skipping finished ones; returns the per-direction records."""
    generator = None
    records = []
    for i, task in enumerate(tasks, 1):
        gen_fp = {**gen_settings, "data_sha256": data_fingerprint(task), "prompt_lang": task.prompt_lang}
        rec = _load_done(out, task, gen_fp)
        hyp_path = out / "hyp" / f"{task.name}.txt"
        if rec is not None and rec.get("scoring") == score_settings:
            log(f"skip {task.name} ({i}/{len(tasks)}): finished in an earlier run")
            records.append(rec)
            continue
        if rec is not None:
            hyps = hyp_path.read_text(encoding="utf-8").split("\n")[:-1]
            log(f"rescore {task.name} ({i}/{len(tasks)}): hypotheses reused, scoring settings changed")
            seconds = rec.get("seconds")
        else:
            if generator is None:
                generator = make_generator()
            prompts = [generator.render(make_prompt(s, task.tgt, task.prompt_lang)) for s in task.sources]
            start = time.perf_counter()
            hyps = generator.generate(
                prompts, beams=gen_settings["beams"], batch_size=batch_size,
                max_new_tokens=gen_settings["max_new_tokens"], desc=task.name, progress=progress,
                repetition_penalty=gen_settings.get("repetition_penalty", 1.0),
            )
            seconds = round(time.perf_counter() - start, 3)
            atomic_write_text(hyp_path, "".join(h + "\n" for h in hyps))
            log(f"generated {task.name} ({i}/{len(tasks)}): {len(hyps)} segments in {seconds:.1f}s")
        rec = _score_record(task, hyps, gen_fp, score_settings, seconds)
        atomic_write_text(out / "directions" / f"{task.name}.json", json.dumps(rec, ensure_ascii=False, indent=1))
        records.append(rec)
    return records


def _score_record(task: Task, hyps: list[str], gen_fp: dict[str, Any], score_settings: dict[str, Any],
                  seconds: float | None) -> dict[str, Any]:
    scores = score_translation(
        hyps, task.refs, task.tgt.code, policy=score_settings["policy"], spm=score_settings.get("spm"),
        srcs=task.sources, comet_model=score_settings.get("comet_model"),
    )
    return {
        "direction": task.name,
        "src": task.src.code,
        "tgt": task.tgt.code,
        "x_lang": task.x_lang.code,
        "x_name": task.x_lang.name_en,
        "tier": task.x_lang.tier,
        "families": task.families,
        "n": len(hyps),
        "prompt_lang": task.prompt_lang,
        "hyp_file": f"hyp/{task.name}.txt",
        "hyp_sha256": sha256_text("".join(h + "\n" for h in hyps)),
        "files": task.files,
        "scores": scores,
        "seconds": seconds,
        "generation": gen_fp,
        "scoring": score_settings,
    }
