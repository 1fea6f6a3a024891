"""lm-eval task plumbing for ``bayling-eval --suite knowledge|english``: which tasks, where their data is.

Three jobs, kept apart from running the model so that every data problem surfaces BEFORE a long run:

* the suites' default task lists and few-shot counts (the BayLing 2 / Okapi protocol, ../docs/knowledge-eval.md);
* staging local task folders (the shipped ``eval/tasks`` and any ``--task-dir``): lm-eval 0.4.13 resolves
  ``dataset_kwargs.data_files`` against the process CWD, so a copy of the YAMLs is written with those paths made
  absolute relative to each YAML's own folder — a task folder then works from any directory;
* loading tasks through :class:`lm_eval.tasks.TaskManager` (which downloads/reads the datasets) and turning a
  hub/datasets failure into a one-line :class:`~bayling.errors.BaylingError` naming the dataset and how to supply it.
"""

from __future__ import annotations

import difflib
import glob
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bayling.errors import BaylingError, DataError, OfflineError
from bayling.eval.config import SUITES
from bayling.paths import REPO_ROOT

log = logging.getLogger(__name__)

REPO_EVAL_DIR = REPO_ROOT / "eval"
LOCAL_TASKS_DIR = REPO_EVAL_DIR / "tasks"

#: BayLing 2's highlighted Okapi evaluation languages (../docs/knowledge-eval.md); lm-eval task suffixes.
OKAPI_LANGS = "ar bn ca da de es fr hi hr hu it kn ml mr ne nl ro sk sr ta te uk vi".split()
#: FLORES-200 codes of the same languages plus the pivots, for Belebele's task names.
BELEBELE_LANGS = (
    "arb_Arab ben_Beng cat_Latn dan_Latn deu_Latn spa_Latn fra_Latn hin_Deva hrv_Latn hun_Latn ita_Latn "
    "kan_Knda mal_Mlym mar_Deva npi_Deva nld_Latn ron_Latn slk_Latn srp_Cyrl tam_Taml tel_Telu ukr_Cyrl "
    "vie_Latn eng_Latn zho_Hans"
).split()

#: Task-name prefix -> (benchmark, default few-shot). Paper protocol: ARC 25-shot, HellaSwag 0, (Okapi) MMLU 25.
BENCHMARKS: list[tuple[str, str, int]] = [
    ("xcopa_local_", "xcopa", 0),
    ("m_mmlu_", "okapi_mmlu", 25),
    ("mgsm_direct_", "mgsm", 0),
    ("belebele_", "belebele", 0),
    ("xstorycloze_", "xstorycloze", 0),
    ("xnli_", "xnli", 0),
    ("arc_challenge", "arc_challenge", 25),
    ("arc_easy", "arc_easy", 25),
    ("hellaswag_", "okapi_hellaswag", 0),
    ("hellaswag", "hellaswag", 0),
    ("arc_", "okapi_arc", 25),
    ("mmlu_", "mmlu", 5),  # English MMLU's dev split holds 5 examples per subject (Hendrycks 5-shot)
    ("mmlu", "mmlu", 5),
]

#: Names a user may type that mean our local copy (the harness's own ``xcopa`` needs the hub).
ALIASES = {"xcopa": "xcopa_local", "okapi": "okapi_arc,okapi_hellaswag,okapi_mmlu"}
EXPANSIONS = {
    "okapi_arc": [f"arc_{lang}" for lang in OKAPI_LANGS],
    "okapi_hellaswag": [f"hellaswag_{lang}" for lang in OKAPI_LANGS],
    "okapi_mmlu": [f"m_mmlu_{lang}" for lang in OKAPI_LANGS],
    "belebele_bayling": [f"belebele_{code}" for code in BELEBELE_LANGS],
}
DATA_TEXT = (".yaml", ".yml", ".py")


@dataclass
class TaskSpec:
    """One name the user (or a suite) asked for, and whether failing to load it is fatal."""

    name: str
    required: bool
    num_fewshot: int | None


@dataclass
class LoadedSpec:
    """A spec whose tasks (and datasets) loaded: lm-eval's ``{"tasks", "groups", "group_map"}`` dict."""

    spec: TaskSpec
    loaded: dict[str, Any]


def suite_fewshot(task: str) -> int | None:
    """Few-shot count of the paper protocol for a task the suites run (None: the task's own default).

    Only the suites' own task-name prefixes are matched here; which benchmark and language a task reports is
    decided by bayling.eval.labels from definitions, never from the name."""
    for prefix, _bench, shots in BENCHMARKS:
        if task == prefix or (prefix.endswith("_") and task.startswith(prefix)):
            return shots
    return None


def default_fewshot(name: str) -> int | None:
    """Few-shot count of the paper protocol for a suite entry or task name (None: the task's own default)."""
    key = ALIASES.get(name, name)
    if key in EXPANSIONS:
        key = EXPANSIONS[key][0]
    if key in ("xcopa_local", "xstorycloze", "xnli", "mgsm_direct", "belebele"):
        return 0
    return suite_fewshot(key)


def expand_specs(suite: str, tasks: list[str] | None, task_dir_tasks: list[str] | None,
                 num_fewshot: int | None, user_names: frozenset[str] = frozenset()) -> list[TaskSpec]:
    """The specs to run: explicit names are required; a suite's defaults are optional (skipped if absent).

    WHY: ``--suite knowledge`` offline must still run what is local (XCOPA, --task-dir), listing what it
    skipped; a task the user NAMED must not be skipped silently, so it raises instead. Tasks of the user's
    --task-dir (``user_names``) keep their own YAML few-shot unless ``num_fewshot`` overrides it.
    """
    if suite not in SUITES or SUITES[suite].kind != "knowledge":
        known = ", ".join(n for n, s in SUITES.items() if s.kind == "knowledge")
        raise BaylingError(f"unknown knowledge suite '{suite}' (choose from {known})", field="suite")
    if tasks:
        names, required = [], True
        for item in tasks:
            for part in ALIASES.get(item, item).split(","):
                names.extend(EXPANSIONS.get(part.strip(), [part.strip()]))
    elif task_dir_tasks is not None:
        names, required = list(task_dir_tasks), True
    else:
        names, required = [], False
        for item in SUITES[suite].tasks:
            names.extend(EXPANSIONS.get(item, [item]))
    seen: dict[str, TaskSpec] = {}
    for n in names:
        if n and n not in seen:
            shots = num_fewshot if num_fewshot is not None else None if n in user_names else default_fewshot(n)
            seen[n] = TaskSpec(n, required, shots)
    return list(seen.values())


class _Function(str):
    """A ``!function module.name`` scalar kept verbatim while a task YAML is rewritten."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda ld, node: _Function(ld.construct_scalar(node)))
_Dumper.add_representer(_Function, lambda d, v: d.represent_scalar("!function", str(v)))


def _absolute(value: Any, base: Path) -> Any:
    """data_files value (str | list | dict) with relative paths made absolute against ``base`` (the YAML's folder).

    A path found only relative to the working directory (lm-eval's own rule) is left alone.
    """
    if isinstance(value, dict):
        return {k: _absolute(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, str) and not Path(value).is_absolute() and "://" not in value:
        candidate = base / value
        if candidate.exists() or glob.glob(str(candidate)):
            return str(candidate.resolve())
        if not (Path(value).exists() or glob.glob(value)):  # nowhere: report it where the YAML points
            return str(candidate.resolve())
    return value


def _rewrite_yaml(src: Path, dst: Path) -> None:
    """Copy one task file, making its ``dataset_kwargs.data_files`` absolute against ``src``'s folder."""
    text = src.read_text(encoding="utf-8")
    if "data_files" in text:
        try:
            doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as err:
            raise BaylingError(f"not valid YAML: {' '.join(str(err).split())}", path=src) from err
        kwargs = doc.get("dataset_kwargs") if isinstance(doc, dict) else None
        if isinstance(kwargs, dict) and "data_files" in kwargs:
            kwargs["data_files"] = _absolute(kwargs["data_files"], src.parent)
            text = yaml.dump(doc, Dumper=_Dumper, allow_unicode=True, sort_keys=False)
    dst.write_text(text, encoding="utf-8")


def stage_task_dir(src: str | Path, dst: Path) -> Path:
    """Copy the task definitions of ``src`` (YAML, include files, Python helpers) into ``dst``.

    Data files are not copied: the staged YAMLs point at them by absolute path.
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        raise BaylingError("task directory does not exist or is not a directory", path=src, field="task_dir")
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.name == "labels.yaml":  # not a task
            continue
        is_include = path.name.startswith("_") and "." not in path.name  # e.g. lm-eval's `_default_yaml`
        if path.suffix not in DATA_TEXT and not is_include:
            continue
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            shutil.copyfile(path, out)
        else:
            _rewrite_yaml(path, out)
            count += path.suffix in (".yaml", ".yml")
    if count == 0:
        raise BaylingError("no lm-eval task YAML (*.yaml) found", path=src, field="task_dir")
    return dst


#: Sub-folders of lm-eval's task tree that define a name's task(s): indexing only those takes well under a
#: second instead of ~4 s for all 14,000 built-in entries. Unlisted names index the whole tree.
HARNESS_FOLDERS: list[tuple[str, str]] = [
    ("m_mmlu", "okapi/mmlu_multilingual"),
    ("arc_challenge", "arc"),
    ("arc_easy", "arc"),
    ("arc_", "okapi/arc_multilingual"),
    ("hellaswag_", "okapi/hellaswag_multilingual"),
    ("hellaswag", "hellaswag"),
    ("mmlu", "mmlu/default"),
    ("belebele", "belebele"),
    ("xstorycloze", "xstorycloze"),
    ("xnli_eu", ""),
    ("xnli", "xnli"),
    ("mgsm_direct", "mgsm/direct"),
    ("mgsm_native_cot", "mgsm/native_cot"),
    ("cmmlu", "cmmlu"),
]


def harness_folders(names: list[str]) -> list[Path] | None:
    """lm-eval task folders covering ``names``; None when some name needs the full built-in index."""
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    folders: list[Path] = []
    for name in names:
        sub = next((folder for prefix, folder in HARNESS_FOLDERS if name.startswith(prefix)), "")
        if not sub:
            return None
        if root / sub not in folders:
            folders.append(root / sub)
    return folders


def make_task_manager(include: list[Path], need_defaults: bool, names: list[str] | None = None):
    """A TaskManager over the staged folders, plus the built-in tasks only when a requested name needs them.

    Local folders come last so that they take precedence over a built-in task of the same name.
    """
    from lm_eval.tasks import TaskManager

    if need_defaults and names is not None:
        folders = harness_folders(names)
        if folders is not None:
            tm = TaskManager(include_path=[str(p) for p in folders + include], include_defaults=False)
            if all(n in tm.task_index for n in names):  # else a prefix guessed the wrong folder
                return tm
    return TaskManager(include_path=[str(p) for p in include], include_defaults=need_defaults)


def local_task_names(staged_dir: Path) -> list[str]:
    """Top-level names (groups, and tasks not inside a group) defined in one staged folder."""
    tm = make_task_manager([staged_dir], need_defaults=False)
    members = set()
    for name in tm.all_groups:
        members.update(_group_members(tm, name))
    return [n for n in tm.all_groups + tm.all_subtasks if n not in members]


def _group_members(tm, name: str) -> list[str]:
    cfg = getattr(tm.task_index.get(name), "cfg", None) or {}
    members = cfg.get("task", []) if isinstance(cfg, dict) else []
    return [m for m in members if isinstance(m, str)]


def unknown_name_error(name: str, tm) -> BaylingError:
    close = difflib.get_close_matches(name, tm.all_tasks, n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}" if close else "; `lm-eval ls tasks` lists the harness's tasks"
    return BaylingError(f"unknown lm-eval task or group '{name}'{hint}", field="tasks")


_DATASET_RE = re.compile(r"['\"]([\w.-]+/[\w.-]+)['\"]")


_UNREACHABLE = ("ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "FileNotFoundError",
                "DatasetNotFoundError", "HfHubHTTPError", "RepositoryNotFoundError", "GatedRepoError",
                "HTTPError", "Timeout", "ConnectTimeout", "ReadTimeout")


def data_error(name: str, err: BaseException) -> BaylingError:
    """One line naming the dataset behind ``name`` and how to make it available offline.

    WHY the two wordings: "not reachable" must only be said when it is true; a dataset that is there but
    cannot be built (e.g. a loading script the installed ``datasets`` refuses) needs a different fix.
    """
    text = " ".join(str(err).split())
    root = err
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    if root is not err and str(root):
        text += f" (caused by {type(root).__name__}: {' '.join(str(root).split())[:200]})"
    m = _DATASET_RE.search(text)
    dataset = m.group(1) if m else None
    kind = type(err).__name__
    unreachable = kind in _UNREACHABLE or any(t in text for t in ("OfflineModeIsEnabled", "Couldn't reach"))
    if dataset and unreachable:
        out: BaylingError = OfflineError(
            f"task '{name}' needs the dataset '{dataset}', which is neither in the Hugging Face cache nor "
            f"reachable ({kind}); {supply_hint(dataset)}",
            field="tasks",
        )
    else:
        what = f"the dataset '{dataset}'" if dataset else "its data"
        out = BaylingError(f"task '{name}' could not load {what}: {kind}: {text[:300]}", field="tasks")
    out.dataset = dataset  # type: ignore[attr-defined]
    return out


def supply_hint(dataset: str) -> str:
    return (
        f"on a machine with internet run `hf download --repo-type dataset {dataset}` (or run the task there "
        f"once) and point HF_HOME at that cache, or pass --task-dir DIR with a local lm-eval YAML over a copy "
        f"of the data"
    )


def load_spec(tm, spec: TaskSpec) -> dict[str, Any]:
    """Build the task objects of one spec (this reads/downloads its dataset) or raise a one-line error.

    Any failure while building a third-party task is reported as that task's data problem: the user can act
    on the dataset name and message, not on a traceback from inside ``datasets``.
    """
    if spec.name not in tm.task_index:
        raise unknown_name_error(spec.name, tm)
    try:
        return tm.load([spec.name])
    except BaylingError:
        raise
    except Exception as err:
        entry = tm.task_index.get(spec.name)
        bad = first_bad_jsonl_line((getattr(entry, "cfg", None) or {}).get("dataset_kwargs"))
        raise (bad or data_error(spec.name, err)) from err


def first_bad_jsonl_line(dataset_kwargs: Any) -> DataError | None:
    """Point at the first line of a local JSONL data file that is not a JSON object (datasets does not)."""
    files = dataset_kwargs.get("data_files") if isinstance(dataset_kwargs, dict) else None
    paths = list(files.values()) if isinstance(files, dict) else [files]
    for item in paths:
        for p in item if isinstance(item, list) else [item]:
            if not (isinstance(p, str) and p.endswith(".jsonl") and Path(p).is_file()):
                continue
            with open(p, "rb") as fh:
                for no, raw in enumerate(fh, 1):
                    if not raw.strip():
                        continue
                    try:
                        ok = isinstance(json.loads(raw), dict)
                    except (json.JSONDecodeError, UnicodeDecodeError) as err:
                        return DataError(f"not a JSON object: {' '.join(str(err).split())}", path=p, line=no)
                    if not ok:
                        return DataError("not a JSON object", path=p, line=no)
    return None


def load_all(tm, specs: list[TaskSpec]) -> tuple[list[LoadedSpec], dict[str, dict[str, str | None]]]:
    """Load every spec; optional ones that fail go to ``skipped`` (name -> dataset, reason), required ones raise."""
    done: list[LoadedSpec] = []
    skipped: dict[str, dict[str, str | None]] = {}
    warned: set[str | None] = set()
    for spec in specs:
        try:
            done.append(LoadedSpec(spec, load_spec(tm, spec)))
        except BaylingError as err:
            if spec.required:
                raise
            dataset = getattr(err, "dataset", None)
            if dataset is None:
                log.warning("skipping %s: %s", spec.name, err.message)
            elif dataset not in warned:
                log.warning("skipping tasks on dataset '%s' (not cached, hub unreachable), e.g. %s", dataset,
                            spec.name)
                warned.add(dataset)
            skipped[spec.name] = {"dataset": dataset, "reason": err.message}
    return done, skipped


def needs_defaults(specs: list[TaskSpec], local_names: set[str]) -> list[str]:
    """The requested names that are not defined locally (they need lm-eval's built-in tasks)."""
    return [s.name for s in specs if s.name not in local_names]
