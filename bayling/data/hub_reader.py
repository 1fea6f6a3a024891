"""Hub datasets as a recipe source: ``datasets.load_dataset`` rows -> the same records/rows as local files.

Why a module of its own: it is the only reader that touches the network, so its offline rule lives in one
place: HF_*_OFFLINE or no connection -> one OfflineError naming the dataset id and the download command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from bayling.data.fileio import OnBad
from bayling.data.records import SourceSpec, instruction_records, translation_rows
from bayling.errors import BaylingError, DataError, OfflineError
from bayling.hub import DOWNLOAD_HINT


def _datasets_offline() -> bool:
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in names)


def hub_offline_error(dataset_id: str) -> OfflineError:
    hint = DOWNLOAD_HINT["dataset"].format(id=dataset_id)
    return OfflineError(f"dataset '{dataset_id}' is not a local path and the hub cannot be reached (offline); "
                        f"on a machine with internet run `{hint}` and put DIR as the source's path in the recipe")


def load_hub_rows(dataset_id: str, config: str = "", split: str = "") -> Iterator[tuple[int, Any]]:
    """(index, row) from ``datasets.load_dataset``: downloaded once into the HF cache as memory-mapped Arrow,
    so every shard of a sharded build reads it without another download or a copy in RAM."""
    if _datasets_offline():
        raise hub_offline_error(dataset_id)
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, config or None, split=split or "train")
    except Exception as err:  # connection errors come in many types
        if isinstance(err, BaylingError):
            raise
        if isinstance(err, ValueError):  # reachable, but a wrong config/split name: say so, not "offline"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"dataset '{dataset_id}': {first}", field="config/split") from None
        raise hub_offline_error(dataset_id) from err
    yield from enumerate(ds)


def read_hub_dataset(spec: SourceSpec, on_bad: OnBad = None) -> Iterator[Any]:
    """Records (instruction formats) or ParallelRows (format 'translation': rows {'translation': {l: s}})."""
    where = f"hub:{spec.path}"
    if spec.kind == "parallel" and spec.format != "translation":
        raise DataError("hub parallel data needs format 'translation' and langs [src, tgt]", path=spec.path)
    rows = ((index, index + 1, dict(row)) for index, row in load_hub_rows(spec.path, spec.config, spec.split))
    if spec.kind == "instruct":
        return instruction_records(rows, spec, where, on_bad)
    return translation_rows(rows, spec, where, on_bad)
