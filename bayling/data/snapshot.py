"""Local snapshot folders: what ``hf download ID --repo-type dataset --local-dir DIR`` leaves on disk, read offline.

Why a module of its own: hub datasets are stored in a handful of layouts and a user who downloaded one must
be able to point a source at the folder (``path: DIR``) -- or every source at one root (``--snapshots ROOT``,
holding ``ROOT/ORG/NAME``) -- without converting anything. The layouts handled (each tested with a fixture
written in that exact layout, tests/data/test_snapshots.py):

- parquet per config: ``CONFIG/train-00000-of-00001.parquet`` (Helsinki-NLP/opus-100 today),
  ``CONFIG/opus100-train.parquet`` (its older revisions), ``CONFIG/train/0000.parquet`` (the hub's
  ``refs/convert/parquet`` branch), ``data/train-00000-of-00001-HASH.parquet`` (vicgalle/alpaca-gpt4);
- JSON arrays and JSON lines at the top (``alpaca_gpt4_data_zh.json`` of shibing624/alpaca-zh,
  ``Belle_open_source_0.5M.json`` of BelleGroup/train_0.5M_CN, ShareGPT's ``*.json``), plain/.gz/.zst;
- one TSV per config: ``CONFIG.gz`` whose first two columns are the config's languages (the files of
  allenai/nllb, fetched from the URL its loading script names, since ``datasets`` 5 runs no loading scripts);
- Arrow: a ``save_to_disk`` folder (``dataset_dict.json`` + ``SPLIT/data-00000-of-00001.arrow`` or
  ``state.json`` + ``data-*.arrow``), read memory-mapped by ``datasets.Dataset.from_file``.

Which files: ``files`` (a glob, e.g. ShareGPT's ``ShareGPT_V3_unfiltered_cleaned_split.json``) wins; else the
``CONFIG/`` sub-folder when a config is named, then every data file whose path names the split (``train`` by
default) -- or all data files when none names a split. Rows are numbered across the files in sorted order, so
record ids stay stable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bayling.data.fileio import OnBad, iter_json_records, open_lines
from bayling.data.records import SourceSpec, instruction_records, translation_rows
from bayling.errors import DataError

DATA_SUFFIXES = (".parquet", ".arrow", ".json", ".jsonl", ".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst")
SPLITS = ("train", "validation", "valid", "dev", "test")
_NOT_DATA = ("dataset_info.json", "dataset_infos.json", "state.json", "dataset_dict.json")


def snapshot_dir(hub_id: str, root: str | Path) -> Path | None:
    """Where a snapshot of ``hub_id`` lies under ``root``: ROOT/ORG/NAME, ROOT/NAME or ROOT/ORG__NAME."""
    root = Path(root)
    org, _, name = hub_id.partition("/")
    for cand in (root / org / name, root / name, root / f"{org}__{name}", root / f"{org}--{name}"):
        if cand.is_dir():
            return cand
    return None


def _is_data(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(DATA_SUFFIXES) and p.name not in _NOT_DATA \
        and not any(part.startswith(".") for part in p.parts[-3:])


def _tokens(rel: Path) -> set[str]:
    return {t for t in re.split(r"[-_./]", str(rel).lower()) if t}


def data_files(folder: Path, config: str = "", split: str = "", files: str = "") -> list[Path]:
    """The files of one config and split in a snapshot folder (see the module docstring for the rules)."""
    if files:
        found = sorted(p for p in folder.glob(files) if p.is_file())
        if not found:
            raise DataError(f"no file matches files: '{files}' in the snapshot folder", path=folder, field="files")
        return found
    base = folder
    for name in (f"{config}.gz", f"{config}.tsv.gz", f"{config}.tsv"):  # one TSV file per config (NLLB)
        if config and (folder / name).is_file():
            return [folder / name]
    if config:
        if not (folder / config).is_dir():
            have = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))[:8]
            raise DataError(f"no folder for config '{config}' in the snapshot (download it with --include "
                            f"\"{config}/*\"); folders here: {', '.join(have) or 'none'}", path=folder, field="config")
        base = folder / config
    if (base / "dataset_dict.json").is_file():  # save_to_disk of a DatasetDict: one folder per split
        base = base / (split or "train")
        if not base.is_dir():
            raise DataError(f"no split '{split or 'train'}' in the saved dataset", path=base.parent, field="split")
    candidates = sorted(p for p in base.rglob("*") if _is_data(p))
    if not candidates:
        raise DataError("no data files (.parquet, .arrow, .json, .jsonl) in the snapshot folder", path=base)
    named = [p for p in candidates if _tokens(p.relative_to(base)) & set(SPLITS)]
    if named:
        want = split or "train"
        candidates = [p for p in named if want in _tokens(p.relative_to(base))]
        if not candidates:
            raise DataError(f"no '{want}' split among the snapshot's data files", path=base, field="split")
    return candidates


def _parquet_rows(path: Path) -> Iterator[tuple[int, int, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        line = 0
        for batch in pf.iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                yield line, line + 1, row
                line += 1
    except OSError as err:  # pyarrow.ArrowInvalid is an OSError/ValueError subclass depending on the case
        raise DataError(f"cannot read parquet file: {err}", path=path) from None
    except ValueError as err:
        raise DataError(f"cannot read parquet file: {err}", path=path) from None


def _arrow_rows(path: Path) -> Iterator[tuple[int, int, Any]]:
    import datasets

    try:
        ds = datasets.Dataset.from_file(str(path))  # memory-mapped, no copy
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise DataError(f"cannot read arrow file: {str(err).splitlines()[0] if str(err) else err}", path=path) \
            from None
    for i, row in enumerate(ds):
        yield i, i + 1, row


def _tsv_rows(path: Path, columns: list[str], on_bad: OnBad) -> Iterator[tuple[int, int, Any]]:
    """Rows of a TSV whose first two columns are the config's two languages (``ceb_Latn-eng_Latn.gz``);
    further columns (scores, URLs) are ignored."""
    for no, text in open_lines(path, on_bad):
        cols = text.split("\t")
        row = dict(zip(columns, cols[:2])) if len(cols) >= 2 else {"raw": text}
        yield no - 1, no, row


def file_rows(path: Path, on_bad: OnBad = None, config: str = "") -> Iterator[tuple[int, int, Any]]:
    """(index, line or row number, raw row) of one data file, whatever its format."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _parquet_rows(path)
    if name.endswith(".arrow"):
        return _arrow_rows(path)
    if name.endswith((".tsv", ".tsv.gz")) or (name.endswith(".gz") and ".json" not in name):
        columns = config.split("-") if config.count("-") == 1 else []
        if not columns:
            raise DataError("a TSV data file needs a config naming its two columns' languages (e.g. "
                            "ceb_Latn-eng_Latn)", path=path, field="config")
        return _tsv_rows(path, columns, on_bad)
    return iter_json_records(path, on_bad)


def read_snapshot(folder: Path, spec: SourceSpec, on_bad: OnBad = None) -> Iterator[Any]:
    """Records (instruction formats) or ParallelRows (``translation``) of a snapshot folder's files."""
    if spec.kind == "parallel" and spec.format != "translation":
        raise DataError(f"a snapshot folder holds hub rows: use format 'translation' (not '{spec.format}')",
                        path=folder, field="format")
    offset = 0
    for path in data_files(folder, spec.config, spec.split, spec.files):
        last = -1

        def tracked(rows: Iterator[tuple[int, int, Any]]) -> Iterator[tuple[int, int, Any]]:
            nonlocal last
            for item in rows:
                last = item[0]
                yield item

        part = dataclasses.replace(spec, offset=offset)
        rows = tracked(file_rows(path, on_bad, spec.config))
        if spec.kind == "instruct":
            yield from instruction_records(rows, part, str(path), on_bad)
        else:
            yield from translation_rows(rows, part, str(path), on_bad)
        offset += last + 1
