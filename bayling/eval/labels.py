"""Which benchmark and which language a knowledge task belongs to: from definitions, never from its name.

WHY: guessing from names is wrong in ways nobody notices in a table: ``cmmlu_college_law`` is not benchmark
``cmmlu_college`` in language ``law``, a German ``mmlu_de`` is not English MMLU, and Javanese ``jav`` is not
Japanese ``ja``. A label comes, in this order of precedence, from:

1. the task's own YAML ``metadata`` (``metadata: {benchmark: okapi_arc, language: deu_Latn}``), which is how
   the project's own tasks (``eval/tasks``) and a user's ``--task-dir`` tasks declare it;
2. a ``labels.yaml`` mapping file in the ``--task-dir`` folder (``NAME: {benchmark: B, language: L}``, NAME a
   task or a group; a group's label applies to its members, a member's own entry wins);
3. the suite definitions of this module (``SUITE_LABELS``, built from the language lists the suites run) and the
   documented mapping of harness groups (``eval/tasks/labels.yaml``);
4. otherwise: the benchmark is the task's top-level group (or the task itself) and the language is unknown.

Languages are registry codes or aliases (bayling.languages); an unknown code is kept as written, unresolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bayling.errors import BaylingError, DataError
from bayling.paths import REPO_ROOT

REPO_LABELS = REPO_ROOT / "eval" / "tasks" / "labels.yaml"
LABEL_FILE = "labels.yaml"

#: Languages of the lm-eval groups the knowledge suite runs (lm-eval 0.4.13's task folders), by task suffix.
XSTORYCLOZE_LANGS = "ar en es eu hi id my ru sw te zh".split()
XNLI_LANGS = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
MGSM_LANGS = "bn de en es fr ja ru sw te th zh".split()


@dataclass(frozen=True)
class Label:
    benchmark: str
    language: str | None
    source: str  # metadata | labels.yaml | suite | group | task name


def _suite_labels() -> dict[str, tuple[str, str]]:
    """Task name -> (benchmark, language) for every task the built-in suites run (their language lists)."""
    from bayling.eval import lm_tasks

    table: dict[str, tuple[str, str]] = {}
    for lang in lm_tasks.OKAPI_LANGS:
        table[f"arc_{lang}"] = ("okapi_arc", lang)
        table[f"hellaswag_{lang}"] = ("okapi_hellaswag", lang)
        table[f"m_mmlu_{lang}"] = ("okapi_mmlu", lang)
    for code in lm_tasks.BELEBELE_LANGS:
        table[f"belebele_{code}"] = ("belebele", code)
    for lang in XSTORYCLOZE_LANGS:
        table[f"xstorycloze_{lang}"] = ("xstorycloze", lang)
    for lang in XNLI_LANGS:
        table[f"xnli_{lang}"] = ("xnli", lang)
    for lang in MGSM_LANGS:
        table[f"mgsm_direct_{lang}"] = ("mgsm", lang)
        table[f"mgsm_native_cot_{lang}"] = ("mgsm_native_cot", lang)
    for name in ("arc_challenge", "arc_easy", "hellaswag"):
        table[name] = (name, "eng_Latn")
    return table


def read_label_file(path: Path) -> dict[str, dict[str, Any]]:
    """A ``labels.yaml`` mapping: ``NAME: {benchmark: B, language: L}`` (either key may be left out)."""
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"not valid YAML: {' '.join(str(err).split())[:200]}", path=path) from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise DataError("expected a mapping NAME: {benchmark: ..., language: ...}", path=path)
    for name, entry in doc.items():
        unknown = set(entry) - {"benchmark", "language"}
        if unknown:
            raise DataError(f"unknown key(s) {sorted(unknown)} (known: benchmark, language)", path=path,
                            field=str(name))
    return {str(k): v for k, v in doc.items()}


def parent_groups(group_map: dict[str, list[str]]) -> dict[str, list[str]]:
    """Task -> its enclosing groups, innermost first (lm-eval's group_map is group -> members)."""
    parents: dict[str, list[str]] = {}
    for group, members in group_map.items():
        for member in members:
            parents.setdefault(str(member), []).append(str(group))
    chains: dict[str, list[str]] = {}
    for task in parents:
        chain, seen, current = [], set(), task
        while current in parents and parents[current][0] not in seen:
            current = parents[current][0]
            seen.add(current)
            chain.append(current)
        chains[task] = chain
    return chains


class Labeller:
    """Labels for one run: built once from the mapping files, then asked per task."""

    def __init__(self, task_dir: str | Path | None = None, group_map: dict[str, list[str]] | None = None) -> None:
        self.suite = _suite_labels()
        self.repo_map = read_label_file(REPO_LABELS)
        self.user_map = read_label_file(Path(task_dir) / LABEL_FILE) if task_dir else {}
        self.groups = parent_groups(group_map or {})

    def label(self, task: str, metadata: dict[str, Any] | None = None) -> Label:
        meta = metadata if isinstance(metadata, dict) else {}
        chain = self.groups.get(task, [])
        top = chain[-1] if chain else None
        for source, mapping in (("labels.yaml", self.user_map), ("labels.yaml", self.repo_map)):
            for name in [task, *chain]:
                if name in mapping:
                    entry = mapping[name]
                    return Label(str(meta.get("benchmark") or entry.get("benchmark") or name),
                                 _lang(meta.get("language") or entry.get("language")), source)
        if meta.get("benchmark") or meta.get("language"):
            return Label(str(meta.get("benchmark") or top or task), _lang(meta.get("language")), "metadata")
        if task in self.suite:
            bench, lang = self.suite[task]
            return Label(bench, lang, "suite")
        if top is not None:
            return Label(top, None, "group")
        return Label(task, None, "task name")


def _lang(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BaylingError(f"a task's language label must be a string, got {value!r}", field="language")
    return value
