"""``bayling-eval --suite knowledge|english``: log-likelihood benchmarks through the lm-eval harness.

The protocol (docs/knowledge-eval.md): lm-eval's own task formulations, no chat template, few-shot counts of
the BayLing 2 / Okapi setup (ARC 25, HellaSwag 0, Okapi MMLU 25, English MMLU 5, the others 0) unless
``num_fewshot`` overrides them. Every task's data is loaded BEFORE the model, so a missing dataset fails in
seconds with a one-line error instead of after an hour of scoring.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bayling.errors import BaylingError, OfflineError
from bayling.eval import lm_tasks
from bayling.eval.knowledge_report import summarize, write_reports
from bayling.eval.labels import Labeller
from bayling.hashing import update_from_file

log = logging.getLogger(__name__)

SKIP_METRIC_KEYS = {"alias", "sample_len", "name", "sample_count"}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def run_knowledge_suite(
    model_dir: str,
    suite: str,
    out_dir: Path,
    tasks: list[str] | None = None,
    task_dir: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    num_fewshot: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    data_dir: str | None = None,
) -> dict:
    """Evaluate ``model_dir`` (local dir or hub id) on a knowledge suite; write results into ``out_dir``.

    ``tasks`` names lm-eval tasks/groups (or ``xcopa``/``okapi`` aliases): each must load or it is an error.
    Without it the suite's defaults run and those whose data is unreachable are skipped and listed.
    ``task_dir`` adds a folder of lm-eval YAML tasks; alone (no ``tasks``), every task in it runs.
    ``device``/``dtype`` default to cuda+bfloat16 when a GPU is visible, else cpu+float32.
    Returns the results.json document.
    """
    out_dir = Path(out_dir)
    if limit is not None and limit <= 0:
        raise BaylingError(f"--limit must be a positive number of examples, got {limit}", field="limit")
    from bayling.eval.checks import prepare_out_dir
    from bayling.hub import resolve_model

    prepare_out_dir(out_dir, create=False)  # a folder we may not write into fails now, not after the whole run
    model_path = resolve_model(model_dir)  # a bad path fails now; loading waits until the data is known good
    with tempfile.TemporaryDirectory(prefix="bayling-tasks-") as tmp:
        staged = [lm_tasks.stage_task_dir(lm_tasks.LOCAL_TASKS_DIR, Path(tmp) / "bayling")]
        local_names = set(lm_tasks.make_task_manager(staged, need_defaults=False).all_tasks)
        user_tasks, user_names = None, frozenset()
        if task_dir is not None:
            staged.append(lm_tasks.stage_task_dir(task_dir, Path(tmp) / "user"))
            user_tasks = lm_tasks.local_task_names(staged[-1])
            user_names = frozenset(lm_tasks.make_task_manager(staged[-1:], need_defaults=False).all_tasks)
            local_names |= user_names
        specs = lm_tasks.expand_specs(suite, tasks, user_tasks, num_fewshot, user_names)
        builtin = lm_tasks.needs_defaults(specs, local_names)
        tm = lm_tasks.make_task_manager(staged, bool(builtin), builtin)
        if data_dir is not None:  # built-in tasks over local `hf download` folders, protocol unchanged
            from bayling.eval.local_data import stage_local_data

            overrides = stage_local_data(tm, data_dir, Path(tmp) / "local_data", builtin)
            if overrides is not None:
                staged.append(overrides)
                tm = lm_tasks.make_task_manager(staged, bool(builtin), builtin)
        loaded, skipped = lm_tasks.load_all(tm, specs)
        if not loaded:
            raise nothing_loaded_error(suite, skipped)
        for item in loaded:
            for task in item.loaded["tasks"].values():
                apply_fewshot(task, item.spec.num_fewshot)
        lm, model_info = load_model(model_path, batch_size, device, dtype)
        raw = evaluate_specs(lm, loaded, limit)
    group_map: dict[str, list[str]] = {}
    for item in loaded:
        for group, members in (item.loaded.get("group_map") or {}).items():
            group_map[str(group)] = [str(m) for m in members]
    labeller = Labeller(task_dir, group_map)
    doc = build_results(raw, loaded, skipped, suite, model_dir, model_info, limit, batch_size, num_fewshot,
                        labeller)
    write_reports(doc, out_dir)
    return doc


def nothing_loaded_error(suite: str, skipped: dict[str, dict[str, Any]]) -> BaylingError:
    """One line for a suite none of whose datasets is reachable: the datasets, and how to supply them."""
    datasets = sorted({str(v["dataset"]) for v in skipped.values() if v["dataset"]})
    if not datasets:
        return BaylingError(f"no task of suite '{suite}' could load its data: "
                            + " | ".join(str(v["reason"]) for v in skipped.values()), field="tasks")
    return OfflineError(
        f"no task of suite '{suite}' could load its data; datasets not in the Hugging Face cache and not "
        f"reachable: {', '.join(datasets)}; on a machine with internet run "
        f"`hf download --repo-type dataset ID` for each and point HF_HOME at that cache, or pass --task-dir DIR "
        f"with local lm-eval YAML tasks", field="tasks")


def load_model(path: str, batch_size: int, device: str | None = None, dtype: str | None = None):
    """HFLM on cuda (bf16) when available, else cpu (fp32); every sequence starts with BOS when there is one.

    WHY the BOS: Llama checkpoints are scored with a leading BOS in the usual harness setup (their hub
    tokenizers add it), but tokenizers saved by transformers 5 do not add it unless told to, and lm-eval's
    ``add_bos_token`` only forwards ``add_special_tokens``; so the tokenizer itself is switched on here.
    """
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise BaylingError(f"cannot load a tokenizer: {' '.join(str(err).split())[:200]}", path=path) from err
    bos = tok.bos_token_id
    if bos is not None and tok.encode("a")[:1] != [bos]:
        tok.add_bos_token = True
    adds_bos = bos is not None and tok.encode("a")[:1] == [bos]
    lm = HFLM(pretrained=path, tokenizer=tok, device=device, dtype=dtype, batch_size=batch_size,
              add_bos_token=adds_bos or None)
    return lm, {"path": str(path), "device": device, "dtype": dtype, "bos": adds_bos}


def evaluate_specs(lm, loaded: list[lm_tasks.LoadedSpec], limit: int | None) -> dict[str, Any]:
    """One lm-eval ``evaluate`` over all pre-loaded tasks (few-shot already set per task)."""
    from lm_eval.evaluator import evaluate

    task_dict: dict[str, Any] = {"tasks": {}, "groups": {}, "group_map": {}}
    for item in loaded:
        for key in task_dict:
            task_dict[key].update(item.loaded.get(key) or {})
    res = evaluate(lm=lm, task_dict=task_dict, limit=limit, log_samples=False, bootstrap_iters=1000,
                   verbosity="WARNING")
    keys = ("results", "groups", "configs", "versions", "n-shot", "n-samples", "higher_is_better")
    return {key: dict((res or {}).get(key) or {}) for key in keys}  # res is None off rank 0


def apply_fewshot(task, shots: int | None) -> None:
    """Same rules as ``simple_evaluate`` (an explicit count wins unless the task pins 0; fixed sampler seed),
    checked against the few-shot pool now, not after the model is loaded (English MMLU's dev split has 5)."""
    current = task.get_config("num_fewshot")
    if shots is not None and current != 0:
        task.set_config(key="num_fewshot", value=shots)
    elif current is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=1234)
    wanted = task.get_config("num_fewshot") or 0
    if wanted > 0:
        source, scored = fewshot_source(task), scored_split(task)
        if source is None or source == scored:
            raise BaylingError(
                f"task '{task.config.task}' has no few-shot split of its own (no fewshot_split, training or "
                f"validation split apart from the scored one): its {wanted} examples would be drawn from the "
                f"scored split '{scored}'; set fewshot_split in the task or use --num-fewshot 0",
                field="num_fewshot")
        pool = task.fewshot_docs()
        if pool is not None and len(pool) < wanted:
            raise BaylingError(f"task '{task.config.task}' has only {len(pool)} few-shot examples, "
                               f"{wanted} asked for; lower --num-fewshot", field="num_fewshot")


def scored_split(task) -> str | None:
    """The split lm-eval scores: the test split when the task has one, else its validation split (HellaSwag,
    XNLI, XStoryCloze score validation-type splits)."""
    if task.has_test_docs():
        return task.config.test_split
    if task.has_validation_docs():
        return task.config.validation_split
    return None


def fewshot_source(task) -> str | None:
    """The split lm-eval draws few-shot examples from (its own order of preference), None when it would fall
    back to the test split. WHY checked against :func:`scored_split`: examples from the scored split leak
    answers into the prompt (Okapi HellaSwag has no train split: its only split is the scored one)."""
    cfg = task.config
    if cfg.fewshot_split:
        return cfg.fewshot_split
    if task.has_training_docs():
        return cfg.training_split
    if task.has_validation_docs():
        return cfg.validation_split
    return None


def _metrics(entry: dict[str, Any]) -> tuple[dict[str, float], str | None]:
    """``{"acc,none": .5, "acc_stderr,none": .1}`` -> ``({"acc": .5, "acc_stderr": .1}, "none")``.

    Generative tasks report one value per answer filter (e.g. ``strict-match``); the first filter is kept so
    that a metric and its stderr always come from the same filter.
    """
    out: dict[str, float] = {}
    chosen: str | None = None
    for key, value in entry.items():
        name, _, filt = key.partition(",")
        if name in SKIP_METRIC_KEYS or not filt or not isinstance(value, (int, float)):
            continue
        chosen = chosen or filt
        if filt == chosen:
            out[name] = float(value)
    return out, chosen


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the task config with data locations removed (those are machine-specific paths)."""
    cfg = {k: v for k, v in config.items() if k not in ("dataset_kwargs", "metadata")}
    blob = json.dumps(cfg, sort_keys=True, default=str, ensure_ascii=False)
    blob = _ADDRESS.sub("", blob)  # reprs of functions carry memory addresses
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def data_hash(config: dict[str, Any]) -> str | None:
    """sha256 over the local data files of a task (None for hub datasets): proves which data was scored."""
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if not files:
        return None
    paths: list[str] = []
    stack = [files]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item[k] for k in sorted(item, reverse=True))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            paths.append(item)
    # WHY expand: a pattern's text says nothing about the data; edited files must change the hash.
    h = hashlib.sha256()
    for pattern in paths:
        matched = sorted(glob.glob(pattern, recursive=True)) or [pattern]
        for p in matched:
            files_here = sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)]
            for f in files_here:
                h.update(f.name.encode() + b"\0")
                if f.is_file():
                    update_from_file(h, f)
    return h.hexdigest()


def build_results(raw: dict[str, Any], loaded: list[lm_tasks.LoadedSpec], skipped: dict[str, Any], suite: str,
                  model_dir: str, model_info: dict[str, Any], limit: int | None, batch_size: int,
                  num_fewshot: int | None, labeller: Labeller | None = None) -> dict[str, Any]:
    """The results.json document (schema in docs/knowledge-eval.md)."""
    import lm_eval

    task_rows: dict[str, Any] = {}
    for name, entry in sorted(raw["results"].items()):
        if name in raw.get("groups", {}) or name not in raw["configs"]:
            continue
        cfg = raw["configs"][name]
        label = (labeller or Labeller()).label(name, cfg.get("metadata"))
        metrics, filt = _metrics(entry)
        task_rows[name] = {
            "benchmark": label.benchmark,
            "language": label.language,
            "label_source": label.source,
            **canonical_language(label.language),
            "metrics": metrics,
            "filter": filt,
            "n": int((raw["n-samples"].get(name) or {}).get("effective", 0)),
            "n_total": int((raw["n-samples"].get(name) or {}).get("original", 0)),
            "num_fewshot": raw["n-shot"].get(name),
            "output_type": cfg.get("output_type"),
            "dataset": cfg.get("dataset_path"),
            "dataset_name": cfg.get("dataset_name"),
            "version": raw["versions"].get(name),
            "config_hash": config_hash(cfg),
            "data_hash": data_hash(cfg),
        }
    groups = {name: {"metrics": _metrics(entry)[0]} for name, entry in sorted(raw.get("groups", {}).items())}
    return {
        "suite": suite,
        "model": model_dir,
        "model_info": model_info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lm_eval_version": lm_eval.__version__,
        "settings": {"limit": limit, "batch_size": batch_size, "num_fewshot_override": num_fewshot,
                     "chat_template": False, "fewshot_seed": 1234, "bootstrap_iters": 1000,
                     "requested": [s.spec.name for s in loaded]},
        "tasks": task_rows,
        "groups": groups,
        "benchmarks": summarize(task_rows),
        "skipped": skipped,
    }


def canonical_language(lang: str | None) -> dict[str, str | None]:
    """FLORES-200 code and resource tier from the project's registry, so runs line up with translation results."""
    if not lang:
        return {"language_code": None, "tier": None}
    try:
        from bayling.languages import get_language

        found = get_language(lang)
    except (ImportError, BaylingError):
        return {"language_code": None, "tier": None}
    return {"language_code": found.code, "tier": found.tier}
