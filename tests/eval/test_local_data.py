"""`--data-dir`: a built-in harness task reads a local `hf download` snapshot and keeps its protocol.

Fixture: tests/eval/fixtures/hf_datasets in alexandrainst/m_arc's real layout (see its SOURCES.md). What must
hold: the task's own prompt function still runs (`Question: ...\\nAnswer:`), the paper's 25 shots come from the
train split (never the scored test split), the data hash covers the local files, and a folder whose layout is
unknown or that lacks a split is one error line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bayling.errors import DataError
from bayling.eval import lm_tasks
from bayling.eval.knowledge import apply_fewshot, data_hash, fewshot_source
from bayling.eval.local_data import stage_local_data

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_datasets"


def _load(names: list[str], data_dir: Path, tmp_path: Path):
    tm = lm_tasks.make_task_manager([], True, names)
    staged = stage_local_data(tm, data_dir, tmp_path / "local_data", names)
    tm = lm_tasks.make_task_manager([staged] if staged else [], True, names)
    return staged, tm.load(names)


def test_okapi_arc_from_a_local_snapshot_keeps_prompt_shots_and_splits(tmp_path):
    staged, out = _load(["arc_de"], FIXTURES, tmp_path)
    assert staged is not None and (staged / "arc_de.yaml").is_file()
    task = out["tasks"]["arc_de"]
    specs = {s.name: s for s in lm_tasks.expand_specs("knowledge", ["okapi"], None, None)}
    apply_fewshot(task, specs["arc_de"].num_fewshot)
    assert task.config.num_fewshot == 25 and fewshot_source(task) == "train" != task.config.test_split
    assert len(task.fewshot_docs()) == 26 and len(task.test_docs()) == 4
    assert task.test_docs()[0]["query"] == "Question: Was ergibt 0 plus eins?\nAnswer:"  # lm-eval's process_docs
    assert task.test_docs()[0]["choices"] == ["1", "2", "3", "0"] and task.test_docs()[0]["gold"] == 0
    cfg = task.dump_config()
    before = data_hash(cfg)
    assert before is not None


def test_edited_local_data_changes_the_data_hash(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    _, out = _load(["arc_de"], data, tmp_path / "a")
    before = data_hash(out["tasks"]["arc_de"].dump_config())
    test_file = data / "alexandrainst/m_arc/data/de/test.jsonl"
    test_file.write_text(test_file.read_text(encoding="utf-8").replace("plus", "und"), encoding="utf-8")
    _, out = _load(["arc_de"], data, tmp_path / "b")
    assert data_hash(out["tasks"]["arc_de"].dump_config()) != before


def test_unknown_layout_or_missing_split_is_one_error(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    (data / "alexandrainst/m_arc/data/de/val.jsonl").unlink()
    with pytest.raises(DataError, match="split 'validation'"):
        _load(["arc_de"], data, tmp_path / "a")
    (data / "Rowan/hellaswag").mkdir(parents=True)  # English HellaSwag: no layout entry
    with pytest.raises(DataError, match="layout is not known"):
        _load(["hellaswag"], data, tmp_path / "b")
    with pytest.raises(DataError, match="not a folder"):
        _load(["arc_de"], tmp_path / "nowhere", tmp_path / "c")
