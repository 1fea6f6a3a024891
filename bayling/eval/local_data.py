"""``--data-dir``: built-in harness tasks read from local ``hf download`` folders, with their protocol unchanged.

WHY not simply point ``HF_HOME`` somewhere: a snapshot folder made with ``hf download --repo-type dataset ID
--local-dir DIR/ID`` is not a cache, and rewriting a task by hand loses its few-shot split, prompt functions and
filters. Here only the data location changes: the task's own resolved config (``process_docs``, ``doc_to_text``,
splits, ``fewshot_config``, filters, metrics) is kept and its ``dataset_path`` becomes a packaged ``datasets``
builder (``json`` or ``parquet``) over the files of the snapshot, split by split, in the layout the dataset
repository really has (``LAYOUTS``; one entry per dataset, with where the layout was read: see
docs/knowledge-eval.md and tests/eval/fixtures/hf_datasets/SOURCES.md). A dataset folder that is present but
has no layout entry, lacks a split file, matches two layouts at once, holds Git LFS pointers instead of data, or
is a loading-script repository the installed ``datasets`` cannot run is one error line, never a silent fallback.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.errors import DataError

#: The parquet export the hub keeps for every dataset (``hf download ... --revision refs/convert/parquet``):
#: ``<config>/<split>/0000.parquet`` since the converter's 2023-08 rewrite, ``<config>/<repo>-<split>.parquet``
#: (sharded: ``<config>/<repo>-<split>-0000N-of-0000M.parquet``) before it. Both seen in haonan-li/cmmlu's tree.
PARQUET_EXPORT = ("{name}/{split}/*.parquet", "{name}/*-{split}.parquet", "{name}/*-{split}-[0-9]*.parquet")
#: What ``datasets``' "Convert dataset to Parquet" writes on a repository's main branch:
#: ``<config>/<split>-0000N-of-0000M.parquet`` (facebook/xnli @ b8dd5d7).
CONVERTED = ("{name}/{split}-[0-9]*.parquet",)
#: First bytes of a Git LFS pointer file (a clone without ``git lfs``): text, not the data it stands for.
LFS_POINTER = b"version https://git-lfs"


@dataclass(frozen=True)
class Layout:
    """Where one hub dataset repository keeps each (config, split) on disk, and which builder reads it.

    ``patterns`` are globs relative to the snapshot folder ({name}: the task's ``dataset_name``, {split}: the
    file stem); the first pattern that matches a split is used, and a split matched by two patterns is refused.
    ``stems`` maps a split name of lm-eval's YAML to the file stem when they differ (m_arc: validation -> val).
    ``revision`` is the ``hf download --revision`` whose tree has this layout (None: the main branch).
    """

    builder: str
    patterns: tuple[str, ...]
    stems: dict[str, str] = field(default_factory=dict)
    revision: str | None = None
    source: str = ""


LAYOUTS: dict[str, Layout] = {
    "alexandrainst/m_arc": Layout("json", ("data/{name}/{split}.jsonl",), {"validation": "val"},
                                  source="tree @ 7d0870e2 (data/<lang>/{train,val,test}.jsonl)"),
    "alexandrainst/m_hellaswag": Layout("json", ("data/{name}/{split}.jsonl",),
                                        source="README configs @ 4580f19 (split val: data/<lang>/val.jsonl)"),
    "alexandrainst/m_mmlu": Layout("json", ("data/{name}/{split}.jsonl",),
                                   source="files @ cd0e146 (data/<lang>/{train,val,test}.jsonl)"),
    "facebook/belebele": Layout("json", ("data/{name}.jsonl",),
                                source="README configs @ 72d7d68 (split test: data/<flores code>.jsonl)"),
    "facebook/xnli": Layout("parquet", CONVERTED + PARQUET_EXPORT,
                            source="tree @ b8dd5d7 (<lang>/<split>-00000-of-0000N.parquet)"),
    "juletxara/mgsm": Layout("parquet", CONVERTED + PARQUET_EXPORT,
                             source="converted to parquet on main in 2026 (assumed: datasets' converter layout)"),
    "juletxara/xstory_cloze": Layout("parquet", PARQUET_EXPORT, revision="refs/convert/parquet",
                                     source="main is a loading script + raw TSVs; the parquet export is read"),
    "haonan-li/cmmlu": Layout("parquet", PARQUET_EXPORT, revision="refs/convert/parquet",
                              source="main is a loading script + zip; the parquet export is read"),
}


def download_command(dataset: str, local_dir: str | Path | None = None) -> str:
    """The ``hf download`` line that yields the layout ``LAYOUTS`` expects for ``dataset`` (into ``local_dir``,
    by default ``DIR/<org>/<name>``)."""
    layout = LAYOUTS[dataset]
    rev = f" --revision {layout.revision}" if layout.revision else ""
    return f"hf download --repo-type dataset {dataset}{rev} --local-dir {local_dir or f'DIR/{dataset}'}"


def dataset_folder(data_dir: Path, dataset: str) -> Path | None:
    """``DATA_DIR/<org>/<name>`` (``hf download --local-dir``) or ``DATA_DIR/<name>``, if present."""
    for cand in (data_dir / dataset, data_dir / dataset.split("/")[-1]):
        if cand.is_dir():
            return cand
    return None


def split_files(folder: Path, layout: Layout, dataset: str, config: str, split: str, task: str) -> list[str]:
    """The files holding one split of one config, resolved in ``folder`` by the layout's patterns."""
    stem = layout.stems.get(split, split)
    found: dict[str, list[str]] = {}
    tried = [pattern.format(name=glob.escape(config), split=glob.escape(stem)) for pattern in layout.patterns]
    for rel in tried:
        hits = sorted(str(p.resolve()) for p in folder.glob(rel) if p.is_file())
        if hits:
            found[rel] = hits
    if len(found) > 1:
        raise DataError(f"task '{task}': split '{split}' of '{dataset}' matches two layouts "
                        f"({' and '.join(found)}); keep one download per folder", path=folder)
    if not found:
        scripts = sorted(p.name for p in folder.glob("*.py"))
        if scripts:
            raise DataError(f"'{dataset}' here is the hub's loading-script layout ({scripts[0]}), which the "
                            f"installed datasets cannot run; download its parquet files instead: "
                            f"`{download_command(dataset, folder)}`", path=folder)
        raise DataError(f"task '{task}' needs split '{split}' of '{dataset}' (config '{config}'): no file matches "
                        f"{' or '.join(tried)} (`{download_command(dataset, folder)}`)", path=folder)
    files = next(iter(found.values()))
    for f in files:
        with open(f, "rb") as fh:
            if fh.read(len(LFS_POINTER)) == LFS_POINTER:
                raise DataError("a Git LFS pointer, not the data (clone with git-lfs, or use `hf download`)", path=f)
    return files


def local_split_files(cfg: dict[str, Any], name: str, data_dir: Path) -> tuple[Layout, dict[str, list[str]]] | None:
    """The layout and split name -> local files of one task's config; None when its dataset has no folder."""
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
    config = str(cfg.get("dataset_name") or "")
    files: dict[str, list[str]] = {}
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        split = cfg.get(key)
        if split and split not in files:
            files[split] = split_files(folder, layout, dataset, config, split, name)
    return layout, files


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
        found = local_split_files(cfg, name, data_dir)
        if found is None:
            continue
        layout, files = found
        dst.mkdir(parents=True, exist_ok=True)
        doc = {"include": str(yaml_path), "task": name, "dataset_path": layout.builder, "dataset_name": None,
               "dataset_kwargs": {"data_files": files}}
        (dst / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written += 1
    return dst if written else None
