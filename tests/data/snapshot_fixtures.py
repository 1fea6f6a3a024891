"""Snapshot folders of the paper recipe's sources, written in each dataset's real on-disk layout.

What ``hf download ORG/NAME --repo-type dataset --local-dir ROOT/ORG/NAME`` leaves (file names, columns, nested
``translation`` dicts), filled with the samples shipped in data/samples (Alpaca, BELLE, ShareGPT-format chats,
FLORES lines standing in for bitext). Used by tests/data/test_snapshots.py and benchmarks/data_scale.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
FLORES = SAMPLES / "flores_demo"


def flores(code: str, n: int, start: int = 0) -> list[str]:
    return (FLORES / f"{code}.devtest").read_text(encoding="utf-8").splitlines()[start:start + n]


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def opus100(root: Path, n: int = 60) -> Path:
    """Helsinki-NLP/opus-100: CONFIG/{train,validation,test}-00000-of-00001.parquet, rows {translation: {..}}; one
    config in the older ``opus100-train.parquet`` naming and en-zh in the refs/convert ``train/0000.parquet`` one."""
    base = root / "Helsinki-NLP" / "opus-100"
    en = flores("eng", n)
    for cfg, code, layout in (("de-en", "deu", "new"), ("en-fr", "fra", "old"), ("en-zh", "zho_simpl", "convert")):
        x = flores(code, n)
        iso = cfg.replace("en", "").strip("-")
        rows = [{"translation": {"en": e, iso: t}} for e, t in zip(en, x)]
        held = [{"translation": {"en": e, iso: t}} for e, t in zip(flores("eng", 5, 900), flores(code, 5, 900))]
        for split, part in (("train", rows), ("validation", held), ("test", held)):
            name = {"new": f"{split}-00000-of-00001.parquet", "old": f"opus100-{split}.parquet",
                    "convert": f"{split}/0000.parquet"}[layout]
            write_parquet(base / cfg / name, part)
    (base / "README.md").write_text("---\nlicense: unknown\n---\n# OPUS-100 (fixture)\n")
    return base


def nllb(root: Path, code: str = "ita", flores200: str = "ita_Latn", n: int = 60) -> Path:
    """allenai/nllb's files as its loading script fetches them: one gzipped TSV per pair, named by the two
    FLORES-200 codes sorted, columns: first language, second language, LASER score (extra columns ignored)."""
    base = root / "allenai" / "nllb"
    base.mkdir(parents=True, exist_ok=True)
    pair = sorted(("eng_Latn", flores200))
    texts = {"eng_Latn": flores("eng", n), flores200: flores(code, n)}
    lines = [f"{texts[pair[0]][i]}\t{texts[pair[1]][i]}\t1.0{i % 10}\n" for i in range(n)]
    (base / f"{pair[0]}-{pair[1]}.gz").write_bytes(gzip.compress("".join(lines).encode(), mtime=0))
    return base


def instructions(root: Path) -> dict[str, Path]:
    """The four instruction sources, each in its repository's layout."""
    alpaca = json.loads((SAMPLES / "instruct" / "alpaca_en_300.json").read_text(encoding="utf-8"))
    belle = [json.loads(line) for line in
             (SAMPLES / "instruct" / "belle_zh_300.jsonl").read_text(encoding="utf-8").splitlines()]
    chats = json.loads((SAMPLES / "instruct" / "fastchat_dummy_conversation.sharegpt.json").read_text("utf-8"))
    out = {}
    # vicgalle/alpaca-gpt4: data/train-00000-of-00001-HASH.parquet, columns instruction/input/output/text
    base = root / "vicgalle" / "alpaca-gpt4"
    write_parquet(base / "data" / "train-00000-of-00001-6ef3991c06080e14.parquet",
                  [{**r, "text": f"{r['instruction']}\n{r['output']}"} for r in alpaca])
    out["alpaca_gpt4_en"] = base
    # shibing624/alpaca-zh: one JSON array file
    base = root / "shibing624" / "alpaca-zh"
    base.mkdir(parents=True)
    (base / "alpaca_gpt4_data_zh.json").write_text(json.dumps(belle[::-1], ensure_ascii=False, indent=1), "utf-8")
    out["alpaca_gpt4_zh"] = base
    # BelleGroup/train_0.5M_CN: one JSON-lines file named .json
    base = root / "BelleGroup" / "train_0.5M_CN"
    base.mkdir(parents=True)
    (base / "Belle_open_source_0.5M.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in belle), encoding="utf-8")
    out["belle_zh"] = base
    # anon8231489123/ShareGPT_Vicuna_unfiltered: JSON arrays; the filtered copy and the raw HTML dump beside it
    base = root / "anon8231489123" / "ShareGPT_Vicuna_unfiltered"
    (base / "HTML_cleaned_raw_dataset").mkdir(parents=True)
    (base / "ShareGPT_V3_unfiltered_cleaned_split.json").write_text(json.dumps(chats, ensure_ascii=False), "utf-8")
    (base / "ShareGPT_V3_unfiltered_cleaned_split_no_imsorry.json").write_text(json.dumps(chats[:50]), "utf-8")
    (base / "HTML_cleaned_raw_dataset" / "sg_90k_part1.json").write_text("[{\"broken\": true}]", "utf-8")
    out["sharegpt_en"] = base
    return out


def arrow_dataset(root: Path) -> Path:
    """A ``save_to_disk`` DatasetDict (dataset_dict.json + train/data-00000-of-00001.arrow + state.json)."""
    import datasets

    alpaca = json.loads((SAMPLES / "instruct" / "alpaca_en_300.json").read_text(encoding="utf-8"))[:40]
    path = root / "local" / "alpaca_arrow"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(alpaca)}).save_to_disk(str(path))
    return path


def write_all(root: Path) -> Path:
    opus100(root)
    nllb(root)
    instructions(root)
    return root
