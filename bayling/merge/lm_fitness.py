"""lm-eval accuracy as (part of) the merge fitness: bayling-eval's knowledge evaluator on a *validation* split.

Why validation and only it: PSO keeps whatever scores best on the fitness, so the fitness must never read the
split the reports use. lm-eval (and so ``bayling-eval --suite knowledge``) scores a task's ``test_split``
when it has one, else its ``validation_split``; the fitness therefore needs a task with both, distinct, and
scores the validation split by setting the loaded task's ``test_split`` to it (never the reverse). A task
with no other split than the reported one is refused with one line.

Everything else is bayling-eval's, through its public functions: tasks are staged and loaded by
``load_tasks`` (same few-shot rules, datasets read before any model), the model is lm-eval's ``HFLM`` from
``load_model`` (loaded once from the base; each candidate's weights are copied into it), scoring is lm-eval's
``evaluate`` via ``evaluate_specs``, and the per-task score is the primary metric bayling-eval's report shows
(``acc`` for multiple-choice tasks), read from ``build_results``' document. Scores are in percent so they sit
on chrF++'s 0-100 scale when both are mixed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from bayling.atomic import atomic_write_text
from bayling.eval.knowledge import (
    build_results,
    config_hash,
    data_hash,
    evaluate_specs,
    load_model,
    load_tasks,
)
from bayling.eval.knowledge_report import primary_metric
from bayling.merge.checkpoint import MergeError

SUITE = "knowledge"  # only picks the paper's few-shot defaults for known task names


def parse_task_list(value: str) -> list[str]:
    """``TASK[,TASK...]`` of ``--fitness lm-eval:...``."""
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise MergeError("--fitness lm-eval: takes a comma list of lm-eval task names", field="fitness")
    return names


def score_validation_split(task) -> None:
    """Point a loaded task at its validation split, or refuse a task whose only scored split is the test one."""
    cfg = task.config
    scored = cfg.test_split or cfg.validation_split
    if not cfg.test_split or not cfg.validation_split or cfg.validation_split == cfg.test_split:
        raise MergeError(f"lm-eval task '{cfg.task}' has no validation split apart from '{scored}', the split "
                         "bayling-eval reports; a fitness must not read it (use a task with a validation_split)",
                         field="fitness")
    cfg.test_split = cfg.validation_split


class LmEvalScorer:
    """The tasks are loaded at construction (bad names and data fail before any model); the model on first use."""

    def __init__(self, base_dir: Path, tasks: list[str], task_dir: str | None, num_fewshot: int | None,
                 limit: int | None, batch_size: int, device: str | None, dtype: str | None) -> None:
        self.base_dir, self.limit, self.batch_size = base_dir, limit, batch_size
        self.num_fewshot, self.device, self.dtype = num_fewshot, device, dtype
        # the staged YAML (and its !function modules) live as long as the scorer
        self._staging = tempfile.TemporaryDirectory(prefix="bayling-merge-tasks-")
        self.loaded, _ = load_tasks(SUITE, tasks, task_dir, num_fewshot, None, Path(self._staging.name),
                                    adjust=score_validation_split)
        self.tasks = {name: task for item in self.loaded for name, task in item.loaded["tasks"].items()}
        self.lm = None
        self.model_info: dict = {}

    def fingerprint(self) -> list[list]:
        """Per task: name, scored split, config hash, data hash (what a cached score belongs to)."""
        out = []
        for name in sorted(self.tasks):
            cfg = self.tasks[name].dump_config()
            out.append([name, cfg.get("test_split"), config_hash(cfg), data_hash(cfg)])
        return out

    def score(self, key: str, state: Callable[[], dict[str, torch.Tensor]], out: Path) -> dict[str, float]:
        """Primary metric x 100 per task of the model ``state()``; bayling-eval's ``results.json`` lands in ``out``."""
        if self.lm is None:
            self.lm, self.model_info = load_model(str(self.base_dir), self.batch_size, self.device, self.dtype)
        _, unexpected = self.lm.model.load_state_dict(state(), strict=False)
        if unexpected:
            raise MergeError(f"the merged weights have tensors the model lacks: {unexpected[:3]}")
        raw = evaluate_specs(self.lm, self.loaded, self.limit)
        doc = build_results(raw, self.loaded, {}, SUITE, f"bayling-merge:{key}", self.model_info, self.limit,
                            self.batch_size, self.num_fewshot)
        out.mkdir(parents=True, exist_ok=True)  # bayling-eval's results.json (its plots would cost per candidate)
        atomic_write_text(out / "results.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        scores = {}
        for name, row in doc["tasks"].items():
            metric = primary_metric(row["benchmark"], row["metrics"])
            if metric is None:
                raise MergeError(f"lm-eval task '{name}' reports no metric to use as a fitness", field="fitness")
            scores[name] = 100.0 * row["metrics"][metric]
        return scores
