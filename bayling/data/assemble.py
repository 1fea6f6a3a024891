"""Phase 2 of a build: global dedup, spill, mix, write shards, manifest, data card, plot.

Memory stays bounded by keeping the records themselves on disk: every unique record is written once to
a spill file and the mixer sees only compact per-record integer arrays (category, language group,
source, task, direction, language set, characters, tokens, byte offset). Output lines are copied
byte for byte out of the spill file with ``os.pread`` (no mmap, so the page cache is not counted as
the builder's memory).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bayling.data import sources as src_mod
from bayling.data.mix import CATEGORIES, plan_mix, select, split_valid
from bayling.data.report import accounting_plot, data_card, languages_plot
from bayling.data.shards import check_not_empty, iter_merged
from bayling.data.synth import record_group
from bayling.data.write import TOOL, ShardWriter, dumps_record, file_entries, write_json

PIVOTS = ("eng_Latn", "zho_Hans")


class Interner:
    """Strings -> small ints, in first-seen order (deterministic because the input order is)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        i = self._ids.get(name)
        if i is None:
            i = self._ids[name] = len(self.names)
            self.names.append(name)
        return i


META = np.dtype([("cat", "i1"), ("group", "i2"), ("source", "i2"), ("task", "i2"), ("direction", "i2"),
                 ("langs", "i4"), ("chars", "i4"), ("tokens", "i4"), ("offset", "i8"), ("length", "i4")])


class Spill:
    """Unique records in one JSONL file, their metadata (33 bytes each) in a binary file beside it.

    Both stay on disk while the dedup index is the big thing in memory; :meth:`load` brings the
    metadata back as one numpy record array only after the index is gone, so the two never add up.
    """

    COLUMNS = ("cat", "group", "source", "task", "direction", "langs")
    BATCH = 65536

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path.with_suffix(".meta")
        self.fh = open(path, "wb")
        self.meta_fh = open(self.meta_path, "wb")
        self.offset = 0
        self.count = 0
        self.names = {c: Interner() for c in self.COLUMNS}
        self._rows: list[tuple[int, ...]] = []
        self.meta = np.empty(0, dtype=META)

    def add(self, rec: dict[str, Any], tokens: int) -> None:
        line = (dumps_record(rec) + "\n").encode("utf-8")
        self.fh.write(line)
        values = (rec["category"], record_group(rec), rec["source"], rec.get("task", ""),
                  rec.get("direction", ""), "\t".join(rec.get("langs", [])))
        codes = tuple(self.names[col](value) for col, value in zip(self.COLUMNS, values))
        chars = sum(len(m["content"]) for m in rec["messages"])
        self._rows.append((*codes, chars, tokens, self.offset, len(line)))
        self.offset += len(line)
        self.count += 1
        if len(self._rows) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            np.array(self._rows, dtype=META).tofile(self.meta_fh)
            self._rows = []

    def close(self) -> None:
        self._flush()
        self.fh.close()
        self.meta_fh.close()

    def load(self) -> None:
        self.meta = np.fromfile(self.meta_path, dtype=META)

    def __len__(self) -> int:
        return self.count

    def np(self, col: str) -> np.ndarray:
        return np.ascontiguousarray(self.meta[col])


def dedup_and_spill(states: list[dict[str, Any]], spill: Spill, recipe: dict[str, Any],
                    progress: bool) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Global dedup in global order (the first occurrence wins), unique records into the spill.
    Returns the drops by reason, in total and per language group."""
    index = src_mod.new_dedup_index(recipe)
    dropped: Counter[str] = Counter()
    by_group: dict[str, Counter[str]] = {}
    total = sum(st["kept"] for st in states)
    for row in tqdm(iter_merged(states), total=total, desc="merge: global dedup", unit=" rec",
                    disable=None if progress else True, mininterval=1.0):
        reason = index.add(src_mod.load_signature(row["sig"]))
        if reason:
            dropped[reason] += 1
            by_group.setdefault(record_group(row["r"]), Counter())[reason] += 1
            continue
        spill.add(row["r"], row.get("tok", 0))
    spill.close()
    del index  # free the dedup index before the metadata comes back into memory
    spill.load()
    return dropped, by_group


def language_accounting(states: list[dict[str, Any]], dedup: dict[str, Counter[str]], spill: Spill,
                        train_idx: np.ndarray, valid_idx: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per language group: rows read, records, every drop by stage and reason, and what was written.

    Records in = filtered + decontaminated + dedup + unique kept; unique kept = distinct in train + valid +
    not selected by the mix (tests/data/test_accounting.py holds the build to these sums).
    """
    phase1: dict[str, Counter[str]] = {}
    for st in states:
        for lang, counts in st["languages"].items():
            phase1.setdefault(lang, Counter()).update(counts)
    names = spill.names["group"].names
    groups = spill.np("group")
    n = len(names)
    unique = np.bincount(groups, minlength=n)
    train = np.bincount(groups[train_idx], minlength=n) if len(train_idx) else np.zeros(n, dtype=np.int64)
    distinct = np.bincount(groups[np.unique(train_idx)], minlength=n) if len(train_idx) else np.zeros(n, dtype=np.int64)
    valid = np.bincount(groups[valid_idx], minlength=n) if len(valid_idx) else np.zeros(n, dtype=np.int64)
    final = {name: (int(unique[i]), int(train[i]), int(distinct[i]), int(valid[i])) for i, name in enumerate(names)}
    out: dict[str, dict[str, Any]] = {}
    for lang in sorted(set(phase1) | set(dedup) | set(final)):
        c = phase1.get(lang, Counter())
        u, t, d, v = final.get(lang, (0, 0, 0, 0))
        out[lang] = {
            "rows_read": c["rows_read"],
            "synthesis_dropped": {k.split(":", 1)[1]: n for k, n in sorted(c.items()) if k.startswith("synth:")},
            "records": c["records"],
            "filtered": {k.split(":", 1)[1]: n for k, n in sorted(c.items()) if k.startswith("filtered:")},
            "decontaminated": c["decontaminated"],
            "dedup": dict(sorted(dedup.get(lang, Counter()).items())),
            "unique_kept": u,
            "not_selected": u - d - v,
            "train": t,
            "train_distinct": d,
            "valid": v,
        }
    return out


def counts_for(spill: Spill, idx: np.ndarray, with_tokens: bool) -> dict[str, Any]:
    """Counts per category/source/language/direction/task, characters and tokens of ``idx`` (with repeats)."""
    n = len(spill)
    mult = np.bincount(idx, minlength=n) if len(idx) else np.zeros(n, dtype=np.int64)

    def by(col: str, skip_empty: bool = False) -> dict[str, int]:
        sums = np.bincount(spill.np(col), weights=mult, minlength=len(spill.names[col].names)) if n else []
        out = {name: int(v) for name, v in zip(spill.names[col].names, sums) if v and (name or not skip_empty)}
        return dict(sorted(out.items()))

    langs: Counter[str] = Counter()
    for combo, v in by("langs").items():
        for lang in combo.split("\t") if combo else []:
            langs[lang] += v
    cats = by("cat")
    return {
        "records": int(mult.sum()),
        "by_category": {c: cats[c] for c in CATEGORIES if c in cats},
        "by_source": by("source"),
        "by_language": dict(sorted(langs.items())),
        "by_direction": by("direction", skip_empty=True),
        "by_task": by("task"),
        "characters": int(mult @ spill.np("chars").astype(np.int64)) if n else 0,
        "tokens": int(mult @ spill.np("tokens").astype(np.int64)) if with_tokens and n else None,
    }


def mix_plan(spill: Spill, recipe: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Plan quotas from the unique records available, and the plan's report for manifest and card."""
    mixcfg = recipe["mix"]
    cats, groups = spill.np("cat"), spill.np("group")
    available: dict[str, dict[str, int]] = {}
    for (c, g), v in Counter(zip(cats.tolist(), groups.tolist())).items():
        available.setdefault(spill.names["cat"].names[c], {})[spill.names["group"].names[g]] = v
    arm_on = recipe["cross_lingual"] and recipe["synth"].get("enabled", True)
    plans = plan_mix(available, dict(mixcfg["proportions"]), mixcfg["target_total"], mixcfg["temperature_alpha"],
                     mixcfg["upsample_cap"], drop=() if arm_on else ("cross_lingual",))
    shortfalls = [
        f"{p.name}: quota {p.quota:,} but only {p.available:,} unique records "
        f"(x{mixcfg['upsample_cap']:g} cap) -> reached {p.reached:,}." for p in plans if p.shortfall
    ]
    report = {
        "target_total": mixcfg["target_total"],
        "reached_total": sum(p.reached for p in plans),
        "temperature_alpha": mixcfg["temperature_alpha"],
        "upsample_cap": mixcfg["upsample_cap"],
        "categories": [
            {"name": p.name, "proportion": p.proportion, "quota": p.quota, "available": p.available,
             "reached": p.reached, "shortfall": p.shortfall,
             "groups": [{"name": g.name, "available": g.available, "share": round(g.share, 6),
                         "selected": g.selected, "upsample_factor": round(g.upsample_factor, 4)}
                        for g in p.groups]}
            for p in plans
        ],
        "shortfalls": shortfalls,
    }
    return plans, report


def write_selected(spill: Spill, idx: np.ndarray, writer: Any, desc: str, progress: bool) -> None:
    """Copy the chosen lines out of the spill file, in the order of ``idx``."""
    offsets, lengths = spill.meta["offset"], spill.meta["length"]
    fd = os.open(spill.path, os.O_RDONLY)
    try:
        for i in tqdm(idx, desc=desc, unit=" rec", disable=None if progress else True, mininterval=1.0):
            writer.write_line(os.pread(fd, int(lengths[i]), int(offsets[i])))
    finally:
        os.close(fd)


class _Single:
    """ShardWriter-like sink for valid.jsonl."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")

    def write_line(self, line: bytes) -> None:
        self.fh.write(line)

    def close(self) -> None:
        self.fh.close()


def merge_rejects(states: list[dict[str, Any]], out: Path) -> int:
    """All shards' rejects, sorted by (path, line) so the file does not depend on the sharding."""
    rows = []
    for st in states:
        with open(st["_dir"] / "rejects.jsonl", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    rows.sort(key=lambda r: (r["source"], r["path"], r["line"] or 0, r["reason"]))
    if rows or states[0]["skip_bad_records"]:
        with open(out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(rows)


def _sum(states: list[dict[str, Any]], key: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for st in states:
        total.update(st[key])
    return dict(sorted(total.items()))


def mix_and_write(spill: Spill, recipe: dict[str, Any], out: Path, with_tokens: bool,
                  progress: bool, states: list[dict[str, Any]], dedup_by_group: dict[str, Counter[str]]
                  ) -> dict[str, Any]:
    """Plan, select, split and write; returns the manifest's mix/train/valid/files/languages sections."""
    plans, mix_report = mix_plan(spill, recipe)
    selection = select(plans, spill.np("cat"), spill.np("group"), spill.names["cat"].names,
                       spill.names["group"].names, recipe["seed"])
    train_idx, valid_idx = split_valid(selection, recipe["mix"]["valid_fraction"], recipe["mix"]["valid_max"],
                                       recipe["seed"])
    del selection
    check_not_empty(len(train_idx), "training records (every selected record went to validation)")
    writer = ShardWriter(out / "train", recipe["output"]["shard_size"])
    write_selected(spill, train_idx, writer, "write train shards", progress)
    writer.close()
    valid = _Single(out / "valid.jsonl")
    write_selected(spill, valid_idx, valid, "write valid.jsonl", progress)
    valid.close()
    return {
        "mix": mix_report,
        "train": counts_for(spill, train_idx, with_tokens),
        "valid": counts_for(spill, valid_idx, with_tokens),
        "files": {"train": file_entries(out, [f["path"] for f in writer.files]),
                  "valid": file_entries(out, ["valid.jsonl"])},
        "languages": language_accounting(states, dedup_by_group, spill, train_idx, valid_idx),
    }


def assemble(states: list[dict[str, Any]], out: Path, progress: bool = True) -> dict[str, Any]:
    """Shard states -> finished data directory contents in ``out`` (the caller renames it into place)."""
    recipe = states[0]["recipe"]
    work = out / ".work"
    work.mkdir(exist_ok=True)
    spill = Spill(work / "unique.jsonl")
    dedup, dedup_by_group = dedup_and_spill(states, spill, recipe, progress)
    check_not_empty(len(spill), "records that survive filtering, decontamination and dedup")
    with_tokens = states[0]["tokenizer"] is not None
    sections = mix_and_write(spill, recipe, out, with_tokens, progress, states, dedup_by_group)
    n_rejects = merge_rejects(states, out / "rejects.jsonl")
    manifest = {
        "format": "bayling-data/1",
        "tool": TOOL,
        "recipe": recipe,
        "seed": recipe["seed"],
        "cross_lingual": recipe["cross_lingual"],
        "package_versions": src_mod.package_versions(),
        "inputs": states[0]["inputs"],
        "tokenizer": states[0]["tokenizer"],
        "pipeline": {
            "read": _sum(states, "read"),
            "bad_records": _sum(states, "bad_records"),
            "rejects_file": "rejects.jsonl" if (out / "rejects.jsonl").exists() else None,
            "synthesised": sum(st["synthesised"] for st in states),
            "synthesis_dropped": dict(sorted(sum((Counter(v["synthesis_dropped"]) for v in
                                                  sections["languages"].values()), Counter()).items())),
            "filtered": _sum(states, "filtered"),
            "decontaminated": _sum(states, "decontaminated"),
            "dedup": dict(sorted(dedup.items())),
            "unique_kept": len(spill),
        },
        **sections,
    }
    if n_rejects != sum(manifest["pipeline"]["bad_records"].values()):
        raise RuntimeError("rejects.jsonl and the bad-record counts disagree")  # a bug, not bad input
    del spill  # metadata freed before matplotlib is imported for the plot
    shutil.rmtree(work)
    (out / "DATA_CARD.md").write_text(data_card(manifest), encoding="utf-8")
    if recipe["output"]["plot"]:
        languages_plot(manifest["train"]["by_language"], out / "languages.png")
        accounting_plot(manifest["languages"], out / "accounting.png")
    write_json(out / "manifest.json", manifest)  # last: its presence marks a finished directory
    return manifest
