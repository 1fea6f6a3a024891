"""Fitness of a candidate merge: the project's own evaluators on dev splits, cached per model state.

Why dev splits and only them: PSO picks the model with the best fitness, so whatever the fitness reads is
fitted to. ``--fitness flores:DIR`` reads FLORES' *dev* files (``*.dev``: ``flores101_dataset/dev/`` or the
FLORES-200 ``dev/`` folder), while bayling-eval and the report's test table read ``*.devtest``; with
``--test-flores-dir`` any sentence shared by the two is an error. Scores are bayling-eval's (same prompt,
chat template, generation and sacrebleu chrF++), produced by its public ``run_tasks``.
``--fitness lm-eval:TASK,...`` scores lm-eval tasks on their validation split (``lm_fitness``). Each kind is
one component, the (optionally weighted) mean of its directions or tasks; the fitness is the (optionally
weighted) mean of the components, unweighted by default as in the paper.

The generator is loaded once from the base; each candidate's weights are copied into it, so a fitness call
costs one set of generations, not a model load. Results are cached by a digest of the candidate (its
coefficients, or its weights) in ``fitness_cache.json``; a resumed or repeated candidate costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bayling.atomic import atomic_write_text
from bayling.errors import read_json
from bayling.eval.flores import plan_directions, prompt_language, select_languages
from bayling.eval.metrics import read_lines
from bayling.eval.translate import RunLog, Task, run_tasks
from bayling.merge.checkpoint import MergeError


@dataclass
class GenSettings:
    beams: int = 1
    max_new_tokens: int = 256
    batch_size: int = 16
    repetition_penalty: float = 1.0


FITNESS_KINDS = ("flores", "lm-eval")


def parse_fitness_spec(spec: str) -> tuple[str, Path | list[str]]:
    """``flores:DIR`` (a FLORES dev folder) or ``lm-eval:TASK[,TASK...]`` (scored on their validation split)."""
    kind, sep, value = spec.partition(":")
    if not sep or kind not in FITNESS_KINDS or not value:
        raise MergeError(f"--fitness takes flores:DIR (a FLORES dev folder) or lm-eval:TASK[,TASK...], got {spec!r}",
                         field="fitness")
    if kind == "lm-eval":
        from bayling.merge.lm_fitness import parse_task_list

        return kind, parse_task_list(value)
    p = Path(value)
    if not p.is_dir():
        raise MergeError("FLORES dev folder does not exist", path=p, field="fitness")
    return kind, p


def build_dev_tasks(dev_dir: Path, langs: str, families: list[str], version: int,
                    limit: int | None) -> list[Task]:
    """Directions over the ``*.dev`` files, planned exactly as bayling-eval plans FLORES directions."""
    folder = dev_dir / "dev" if (dev_dir / "dev").is_dir() else dev_dir
    cache: dict[str, tuple[list[str], Path]] = {}

    def segs(lang) -> tuple[list[str], Path]:
        if lang.code not in cache:
            path = folder / f"{lang.flores_file(version)}.dev"
            if not path.is_file():
                hint = " (only *.devtest files: that is the test split; give the dev split)" \
                    if any(folder.glob("*.devtest")) else ""
                raise MergeError(f"no FLORES dev file for {lang.code} ({lang.name_en}){hint}", path=path,
                                 field="fitness")
            lines = read_lines(path, "FLORES dev file")
            cache[lang.code] = (lines[:limit] if limit else lines), path
        return cache[lang.code]

    tasks = []
    for src, tgt, fams in plan_directions(select_languages(langs, version), families):
        (s, sp), (r, rp) = segs(src), segs(tgt)
        if len(s) != len(r):
            raise MergeError(f"{sp.name} has {len(s)} lines but {rp.name} has {len(r)}; FLORES files must be "
                             "line-aligned", path=rp)
        tasks.append(Task(name=f"{src.code}-{tgt.code}", src=src, tgt=tgt, sources=s, refs=[r], families=fams,
                          prompt_lang=prompt_language(src, tgt, "auto"), files={"source": str(sp), "reference": str(rp)}))
    if not tasks:
        raise MergeError("no fitness directions (check --langs and --directions)", field="langs")
    return tasks


def check_disjoint(dev: list[Task], test: list[Task]) -> None:
    """The fitness must never see a test sentence."""
    test_sents = {s for t in test for s in t.sources}
    for t in dev:
        for i, s in enumerate(t.sources, 1):
            if s in test_sents:
                raise MergeError("this dev sentence is also in the test split (--test-flores-dir); the fitness "
                                 "must never read test data", path=t.files["source"], line=i, field="fitness")


@dataclass
class Weights:
    """Per FLORES direction, per lm-eval task, and per component (``flores``, ``lm-eval``); 1 unless given."""
    flores: dict[str, float]
    lm_eval: dict[str, float]
    kinds: dict[str, float]


def parse_weights(items: list[str], tasks: list[Task], lm_tasks: list[str] | None = None) -> Weights:
    """``NAME=W``: NAME a direction (deu_Latn-eng_Latn), a family (x-en), an lm-eval task, or a component."""
    lm_tasks = lm_tasks or []
    w = Weights({t.name: 1.0 for t in tasks}, {n: 1.0 for n in lm_tasks},
                {k: 1.0 for k, used in zip(FITNESS_KINDS, (tasks, lm_tasks)) if used})
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or weight < 0:
            raise MergeError(f"--fitness-weight takes NAME=W with W >= 0, got {item!r}", field="fitness_weight")
        hits = [(w.kinds, name)] if name in w.kinds else \
            [(w.flores, t.name) for t in tasks if name in (t.name, *t.families)] + \
            [(w.lm_eval, n) for n in lm_tasks if n == name]
        if not hits:
            known = [*w.kinds, *(t.name for t in tasks), *lm_tasks]
            raise MergeError(f"--fitness-weight {name!r} matches no fitness direction, lm-eval task or component; known: "
                             f"{', '.join(known)}", field="fitness_weight")
        for table, key in hits:
            table[key] = weight
    for label, table in (("direction", w.flores), ("lm-eval task", w.lm_eval), ("component", w.kinds)):
        if table and sum(table.values()) <= 0:
            raise MergeError(f"--fitness-weight leaves every {label} at weight 0", field="fitness_weight")
    return w


def state_digest(vec: torch.Tensor) -> str:
    return hashlib.sha256(vec.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:20]


class Scorer:
    """Loads the generator once; scores any weights on any task list with bayling-eval's loop."""

    def __init__(self, make_generator: Callable[[], Any], settings: GenSettings, work: Path,
                 progress: bool, template: str | None = None) -> None:
        self.template = template
        self.make_generator = make_generator
        self.generator = None
        self.settings = settings
        self.work = work
        self.progress = progress

    def score(self, key: str, state: Callable[[], dict[str, torch.Tensor]], tasks: list[Task],
              out: Path) -> dict[str, float]:
        """chrF++ per direction of the model ``state()``; hypotheses and records land in ``out``."""
        if self.generator is None:
            self.generator = self.make_generator()
        gen = self.generator
        loaded = {"loaded": False}

        def make():
            if not loaded["loaded"]:
                missing, unexpected = gen.model.load_state_dict(state(), strict=False)
                if unexpected:
                    raise MergeError(f"the merged weights have tensors the model lacks: {unexpected[:3]}")
                loaded["loaded"] = True
            return gen

        out.mkdir(parents=True, exist_ok=True)
        s = self.settings
        gen_settings = {"model": f"bayling-merge:{key}", "beams": s.beams, "max_new_tokens": s.max_new_tokens,
                        "template": self.template}
        if s.repetition_penalty != 1.0:
            gen_settings["repetition_penalty"] = s.repetition_penalty
        records = run_tasks(tasks, out, make_generator=make, gen_settings=gen_settings, batch_size=s.batch_size,
                            score_settings={"policy": "field", "spm": "flores101", "comet_model": None},
                            log=RunLog(out, quiet=True), progress=False)
        return {r["direction"]: r["scores"]["chrf"]["score"] for r in records}


class Fitness:
    """The fitness of a candidate, cached in ``fitness_cache.json`` by the candidate's digest.

    Each component (FLORES: mean dev chrF++ over the directions; lm-eval: mean validation accuracy in percent
    over the tasks) is a weighted mean of its items, and the fitness the weighted mean of the components:
    unweighted at every level by default, as the paper's mean over tasks.
    """

    def __init__(self, scorer: Scorer, tasks: list[Task], weights: Weights, cache_path: Path, identity: dict,
                 lm_scorer=None) -> None:
        """``identity``: the models, dev data and generation settings the cached scores belong to; a cache
        of anything else is refused (its keys would name other models). ``lm_scorer``: an
        ``lm_fitness.LmEvalScorer`` when lm-eval tasks are part of the fitness."""
        self.scorer = scorer
        self.lm_scorer = lm_scorer
        self.tasks = tasks
        self.weights = weights.flores
        self.all_weights = weights
        self.cache_path = cache_path
        self.identity = identity
        self.cache: dict[str, Any] = {}
        if cache_path.is_file():
            doc = read_json(cache_path, "fitness cache", MergeError)
            if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
                raise MergeError("fitness cache has an unknown format", path=cache_path)
            if doc.get("identity") != identity:
                changed = sorted(k for k in identity if identity[k] != (doc.get("identity") or {}).get(k))
                raise MergeError(f"this folder's fitness cache belongs to other models or settings "
                                 f"({', '.join(changed) or 'format'}); use another --out", path=cache_path)
            self.cache = doc["entries"]
        self.evaluations = 0

    def _save(self) -> None:
        doc = {"identity": self.identity, "entries": self.cache}
        atomic_write_text(self.cache_path, json.dumps(doc, indent=1, sort_keys=True))

    def __call__(self, key: str, state: Callable[[], dict[str, torch.Tensor]]) -> float:
        if key in self.cache:
            return float(self.cache[key]["fitness"])
        memo: dict[str, dict[str, torch.Tensor]] = {}

        def once() -> dict[str, torch.Tensor]:  # a candidate is materialised once for all components
            if "state" not in memo:
                memo["state"] = state()
            return memo["state"]

        entry: dict[str, Any] = {"chrf": {}}
        parts: dict[str, float] = {}
        if self.tasks:
            entry["chrf"] = self.scorer.score(key, once, self.tasks, self.scorer.work / "dev" / key)
            parts["flores"] = weighted_mean(entry["chrf"], self.all_weights.flores)
        if self.lm_scorer is not None:
            entry["lm_eval"] = self.lm_scorer.score(key, once, self.scorer.work / "dev-lm-eval" / key)
            parts["lm-eval"] = weighted_mean(entry["lm_eval"], self.all_weights.lm_eval)
        entry["fitness"] = weighted_mean(parts, self.all_weights.kinds)
        if len(parts) > 1:
            entry["components"] = parts
        self.cache[key] = entry
        self.evaluations += 1
        self._save()
        return float(entry["fitness"])

    def scores(self, key: str) -> dict[str, float]:
        """FLORES dev chrF++ per direction of a cached candidate."""
        return dict(self.cache[key]["chrf"])

    def lm_eval_scores(self, key: str) -> dict[str, float]:
        """lm-eval validation score (percent) per task of a cached candidate."""
        return dict(self.cache[key].get("lm_eval") or {})

    def alias(self, key: str, existing: str) -> None:
        """Record that ``key`` is the same model as ``existing`` (a starting model in the weights formulation)."""
        if key != existing and key not in self.cache:
            self.cache[key] = self.cache[existing]
            self._save()


def weighted_mean(scores: dict[str, float], weights: dict[str, float]) -> float:
    total = sum(weights[k] for k in scores)
    return sum(weights[k] * v for k, v in scores.items()) / total
