"""``--data-dir``: built-in harness tasks read from local ``hf download`` folders, with their protocol unchanged.

WHY not simply point ``HF_HOME`` somewhere: a snapshot folder made with ``hf download --repo-type dataset ID
--local-dir DIR/ID`` is not a cache, and rewriting a task by hand loses its few-shot split, prompt functions and
filters. Here only the data location changes: the task's own resolved config (``process_docs``, ``doc_to_text``,
splits, ``fewshot_config``, filters, metrics) is kept and its ``dataset_path`` becomes ``json`` over the files of
the snapshot, split by split, in the layout the dataset repository really has (``LAYOUTS``; one entry per
dataset, each pinned to the upstream commit it was read from). A dataset folder that is present but has no
layout entry, or lacks a split file, is one error line, never a silent fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.errors import DataError

#: Hub dataset id -> file pattern ({name}: the task's dataset_name, {split}: the file stem) and the file stem
#: of each split name lm-eval's tasks use. Verified against the repository tree at the commit given.
LAYOUTS: dict[str, dict[str, Any]] = {
    # alexandrainst/m_arc @ 7d0870e28f22de1959b0572abb1a0edb38c40253: data/<lang>/{train,val,test}.jsonl
    "alexandrainst/m_arc": {"pattern": "data/{name}/{split}.jsonl",
                            "splits": {"train": "train", "validation": "val", "test": "test"}},
}


def dataset_folder(data_dir: Path, dataset: str) -> Path | None:
    """``DATA_DIR/<org>/<name>`` (``hf download --local-dir``) or ``DATA_DIR/<name>``, if present."""
    for cand in (data_dir / dataset, data_dir / dataset.split("/")[-1]):
        if cand.is_dir():
            return cand
    return None


def local_split_files(cfg: dict[str, Any], name: str, data_dir: Path) -> dict[str, str] | None:
    """Split name -> local file for one task's config; None when its dataset has no folder in ``data_dir``."""
    dataset = cfg.get("dataset_path")
    if not isinstance(dataset, str):
        return None
    folder = dataset_folder(data_dir, dataset)
    if folder is None:
        return None
    layout = LAYOUTS.get(dataset)
    if layout is None:
        raise DataError(f"--data-dir has a folder for '{dataset}' (task '{name}') but its file layout is not known; "
                        f"supported: {', '.join(LAYOUTS)}", path=folder)
    files: dict[str, str] = {}
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        split = cfg.get(key)
        if not split or split in files:
            continue
        stem = layout["splits"].get(split, split)
        path = folder / layout["pattern"].format(name=cfg.get("dataset_name") or "", split=stem)
        if not path.is_file():
            raise DataError(f"task '{name}' needs split '{split}' of '{dataset}' at this path", path=path)
        files[split] = str(path.resolve())
    return files


def requested_tasks(tm, names: list[str]) -> set[str]:
    """The names asked for plus, for groups, their member tasks (recursively)."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        cfg = getattr(tm.task_index.get(name), "cfg", None)
        members = cfg.get("task") if isinstance(cfg, dict) and "group" in cfg else None
        if isinstance(members, list):
            todo.extend(m for m in members if isinstance(m, str))
    return seen


def stage_local_data(tm, data_dir: str | Path, dst: Path, names: list[str]) -> Path | None:
    """Write one override YAML per harness task whose dataset is in ``data_dir``: ``include:`` the task's own YAML
    (so its prompt functions, few-shot split and filters stay exactly as shipped) and replace only the data
    location. Returns the folder to add to the task search path (later folders win), or None if nothing matched."""
    import yaml

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("--data-dir is not a folder", path=data_dir)
    written = 0
    wanted = requested_tasks(tm, names)
    for name, entry in list(tm.task_index.items()):
        if name not in wanted:
            continue
        cfg = getattr(entry, "cfg", None)
        yaml_path = getattr(entry, "yaml_path", None)
        if getattr(entry, "kind", None) is None or not isinstance(cfg, dict) or not yaml_path or "task" not in cfg:
            continue
        files = local_split_files(cfg, name, data_dir)
        if files is None:
            continue
        dst.mkdir(parents=True, exist_ok=True)
        doc = {"include": str(yaml_path), "task": name, "dataset_path": "json", "dataset_name": None,
               "dataset_kwargs": {"data_files": files}}
        (dst / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written += 1
    return dst if written else None
