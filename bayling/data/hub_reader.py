"""Hub datasets as a recipe source: ``datasets.load_dataset`` rows -> the same records/rows as local files.

Why a module of its own: it is the only reader that touches the network, so its offline rule lives in one
place: HF_*_OFFLINE or no connection -> one OfflineError naming the dataset id and the download command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from bayling.data.fileio import BadRecord, OnBad, report_bad
from bayling.data.readers import ParallelRow, SourceSpec, _Bad, _canonical, make_record, to_messages
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
    if spec.kind == "instruct":
        for index, row in load_hub_rows(spec.path, spec.config, spec.split):
            try:
                msgs = to_messages(dict(row), spec.format)
            except _Bad as bad:
                report_bad(on_bad, BadRecord(where, index + 1, bad.reason, json.dumps(row, ensure_ascii=False,
                                                                                   default=str), bad.field))
                continue
            yield make_record(f"{spec.source_name}:{index}", msgs, spec.source_name, spec.category, spec.task)
        return
    if spec.format != "translation" or len(spec.langs) != 2:
        raise DataError("hub parallel data needs format 'translation' and langs [src, tgt]", path=spec.path)
    raw_codes = list(spec.langs)
    codes = [_canonical(c) for c in raw_codes]
    for index, row in load_hub_rows(spec.path, spec.config, spec.split):
        pair = row.get("translation") if isinstance(row, dict) else None
        texts = _hub_pair(pair, raw_codes, codes)
        if texts is None:
            report_bad(on_bad, BadRecord(where, index + 1, f"row lacks translation for {raw_codes}",
                                      json.dumps(row, ensure_ascii=False, default=str), "translation"))
            continue
        yield ParallelRow(f"{spec.source_name}:{index}", texts)


def _hub_pair(pair: Any, raw_codes: list[str], codes: list[str]) -> dict[str, str] | None:
    """Find each language's text in an OPUS-style {'en': ..., 'de': ...} mapping (keys may be ISO 639-1)."""
    if not isinstance(pair, dict):
        return None
    by_canon = {}
    for k, v in pair.items():
        try:
            by_canon[_canonical(k)] = v
        except DataError:
            continue
    texts = {}
    for raw, canon in zip(raw_codes, codes):
        value = pair.get(raw, by_canon.get(canon))
        if not isinstance(value, str):
            return None
        texts[canon] = value
    return texts
