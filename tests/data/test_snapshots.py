"""The paper recipe builds offline from snapshot folders in each source's real layout, and plans before work.

A user runs ``hf download ORG/NAME --repo-type dataset --local-dir ROOT/ORG/NAME`` for each source the dry-run
lists, then ``--snapshots ROOT``. The fixtures (tests/data/snapshot_fixtures.py) are written in the exact layouts:
parquet per config (three namings), a JSON array, JSON lines named .json, ShareGPT's several files, NLLB's
gzipped TSV per pair, and an Arrow ``save_to_disk`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import snapshot_fixtures as fx
from buildkit import manifest, train_records

from bayling.cli.build_data import main
from bayling.data.records import SourceSpec
from bayling.data.snapshot import data_files, read_snapshot
from bayling.errors import DataError

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "data" / "recipes" / "bayling2.yaml"
SMALL = ["parallel_groups.opus100.langs=[deu_Latn,fra_Latn]", "parallel_groups.nllb.langs=[ita_Latn]",
         "mix.target_total=1500", "output.shard_size=500"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return fx.write_all(tmp_path_factory.mktemp("snapshots"))


def test_parquet_layouts_pick_the_config_and_the_split(root):
    opus = root / "Helsinki-NLP" / "opus-100"
    assert [p.name for p in data_files(opus, "de-en")] == ["train-00000-of-00001.parquet"]
    assert [p.name for p in data_files(opus, "en-fr", "test")] == ["opus100-test.parquet"]
    assert [str(p.relative_to(opus)) for p in data_files(opus, "en-zh")] == ["en-zh/train/0000.parquet"]
    with pytest.raises(DataError, match="no folder for config 'en-xx'"):
        data_files(opus, "en-xx")
    spec = SourceSpec(path=str(opus), format="translation", name="o", langs=["deu_Latn", "eng_Latn"], config="de-en")
    rows = list(read_snapshot(opus, spec))
    assert len(rows) == 60 and rows[0].key == "o:0"
    assert rows[0].texts == {"deu_Latn": fx.flores("deu", 1)[0], "eng_Latn": fx.flores("eng", 1)[0]}


def test_instruction_layouts_and_the_files_glob(root, tmp_path):
    snaps = fx.instructions(tmp_path)
    counts = {}
    for name, folder in snaps.items():
        files = "ShareGPT_V3_unfiltered_cleaned_split.json" if name == "sharegpt_en" else ""
        spec = SourceSpec(path=str(folder), format="auto", name=name, category="en", files=files)
        counts[name] = len(list(read_snapshot(folder, spec)))
    chats = json.loads((fx.SAMPLES / "instruct" / "fastchat_dummy_conversation.sharegpt.json").read_text("utf-8"))
    assert counts == {"alpaca_gpt4_en": 300, "alpaca_gpt4_zh": 300, "belle_zh": 300, "sharegpt_en": len(chats)}
    arrow = fx.arrow_dataset(tmp_path)
    recs = list(read_snapshot(arrow, SourceSpec(path=str(arrow), format="alpaca", name="a", category="en")))
    assert len(recs) == 40 and recs[0]["messages"][1]["content"]


def test_nllb_tsv_per_pair(root):
    base = root / "allenai" / "nllb"
    spec = SourceSpec(path=str(base), format="translation", name="n", langs=["ita_Latn", "eng_Latn"],
                      config="eng_Latn-ita_Latn")
    rows = list(read_snapshot(base, spec))
    assert len(rows) == 60
    assert rows[0].texts["ita_Latn"] == fx.flores("ita", 1)[0]


def test_dry_run_lists_every_missing_source_with_its_fetch_command(capsys, tmp_path):
    assert main(["--recipe", str(PAPER), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["flores101"] == {"languages": 100, "with_all_directions": 100, "lacking": {}}
    assert all(len(plan["directions"][f]) == 100 for f in ("x-en", "en-x", "x-zh", "zh-x"))
    assert len(plan["sources"]) == 4 + 1 + 100 and len(plan["missing"]) == 105  # offline, nothing local
    cmds = plan["fetch_commands"]
    assert len(cmds) == 105
    assert "hf download Helsinki-NLP/opus-100 --repo-type dataset --include \"de-en/*\" --local-dir ROOT/Helsinki-NLP/opus-100" in cmds
    assert any("nllb/ceb_Latn-eng_Latn.gz" in c for c in cmds)
    assert plan["targets"]["categories"] == {"zh": 1382400, "en": 838400, "cross_lingual": 979200}
    assert main(["--recipe", str(PAPER), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "missing: 105 source(s)" in text and "FLORES-101: 100 of 100" in text


def test_paper_recipe_builds_offline_from_snapshots(root, tmp_path, capsys):
    assert main(["--recipe", str(PAPER), "--dry-run", "--json", "--snapshots", str(root), *SMALL]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["missing"] == [] and {s["status"] for s in plan["sources"]} == {"snapshot"}
    out = tmp_path / "data"
    assert main(["--no-progress", "--recipe", str(PAPER), "--out", str(out), "--snapshots", str(root), *SMALL]) == 0
    m = manifest(out)
    assert {i["name"] for i in m["inputs"]} >= {"belle_zh", "opus100_deu_Latn", "nllb_ita_Latn"}
    langs = m["languages"]
    for code in ("deu_Latn", "fra_Latn", "ita_Latn"):
        assert langs[code]["rows_read"] > 60  # 60 X-en rows plus the X-zh rows of the pivot join
        assert langs[code]["train"] > 0
    dirs = {r.get("direction") for r in train_records(out)}
    assert {"deu_Latn-zho_Hans", "zho_Hans-ita_Latn", "eng_Latn-fra_Latn"} <= dirs
    card = (out / "DATA_CARD.md").read_text()
    assert "Per language" in card and "Corpus choices" in card and (out / "accounting.png").is_file()
