"""`--data-dir` for every built-in knowledge benchmark: each hub repository's real on-disk layout, read with the
task's own protocol.

Fixtures: tests/eval/fixtures/hf_datasets, one folder per dataset in the layout `hf download` leaves (SOURCES.md
says where each layout was read and what is assumed). What a user relies on: the override keeps everything of
the shipped task but the data location (same YAML keys, same prompt on a fixture doc, same filters, the paper's
few-shot count), few-shot examples never come from the scored split, the data hash follows the files' bytes,
and a folder in a layout we cannot read is one error line with exit 2 from the real command.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bayling.errors import BaylingError, DataError
from bayling.eval import lm_tasks
from bayling.eval.knowledge import apply_fewshot, data_hash, fewshot_source, scored_split
from bayling.eval.local_data import LAYOUTS, Layout, download_command, split_files, stage_local_data
from tests.eval.test_eval_hostile_cli import KN, make_workspace
from tests.hostile import assert_one_line_error, assert_untouched, run_cli, snapshot

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_datasets"

#: task -> (dataset id, scored split, few-shot split or None, paper few-shot count, first scored doc's prompt)
CASES = {
    "arc_de": ("alexandrainst/m_arc", "test", "train", 25, "Question: Was ergibt 0 plus eins?\nAnswer:"),
    "hellaswag_de": ("alexandrainst/m_hellaswag", "val", None, 0,
                     "Kochen: Eine Frau stellt einen Topf auf den Herd. Sie"),
    "m_mmlu_de": ("alexandrainst/m_mmlu", "test", "train", 25,
                  "Was ist 10 plus 3?\nA. 13\nB. 14\nC. 15\nD. 16\nAnswer:"),
    "belebele_deu_Latn": ("facebook/belebele", "test", None, 0,
                          "P: Der Zug nach Hamburg fährt um acht Uhr ab. Er kommt um zehn Uhr an.\n"
                          "Q: Wann fährt der Zug ab?\nA: um sechs Uhr\nB: um acht Uhr\nC: um zehn Uhr\n"
                          "D: um zwölf Uhr\nAnswer:"),
    "xnli_de": ("facebook/xnli", "validation", "train", 0, ""),
    "xstorycloze_es": ("juletxara/xstory_cloze", "eval", "train", 0,
                       "Ana tenía hambre. Abrió la nevera. Encontró pan y queso. Preparó un bocadillo."),
    "mgsm_direct_de": ("juletxara/mgsm", "test", "train", 0,
                       "Frage: Tom hat 9 Stifte und verliert 4. Wie viele Stifte hat er noch?\nAntwort:"),
    "mgsm_native_cot_de": ("juletxara/mgsm", "test", "train", None,
                           "Frage: Tom hat 9 Stifte und verliert 4. Wie viele Stifte hat er noch?\n"
                           "Schritt-für-Schritt-Antwort:"),
    "cmmlu_agronomy": ("haonan-li/cmmlu", "test", "dev", None, "玉米的种子是什么颜色最常见？\nA. 蓝色\nB. 黑色\nC. 黄色\nD. 紫色\n答案："),
}
NAMES = list(CASES)
DATA_KEYS = ("task", "dataset_path", "dataset_name", "dataset_kwargs")


def _load(names: list[str], data_dir: Path, dst: Path):
    """lm-eval's own index, the staged overrides, and the tasks loaded through them (reads the fixtures)."""
    hub = lm_tasks.make_task_manager([], True, names)
    staged = stage_local_data(hub, data_dir, dst, names)
    assert staged is not None
    local = lm_tasks.make_task_manager([staged], True, names)
    return hub, local, local.load(names)["tasks"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """All nine tasks staged and loaded once (lm-eval task loading is the slow part)."""
    return _load(NAMES, FIXTURES, tmp_path_factory.mktemp("local_data") / "staged")


def _yaml(path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


@pytest.mark.parametrize("name", NAMES)
def test_local_task_is_the_hub_task_with_only_the_data_location_changed(loaded, name):
    hub, local, tasks = loaded
    dataset, scored, fewshot, shots, prompt = CASES[name]
    hub_cfg = _yaml(hub.task_index[name].yaml_path)
    local_cfg = _yaml(local.task_index[name].yaml_path)
    assert hub_cfg["dataset_path"] == dataset and local_cfg["dataset_path"] == LAYOUTS[dataset].builder
    assert {k: v for k, v in local_cfg.items() if k not in DATA_KEYS} == \
        {k: v for k, v in hub_cfg.items() if k not in DATA_KEYS}
    task = tasks[name]
    spec = lm_tasks.expand_specs("knowledge", [name], None, None)[0]
    apply_fewshot(task, spec.num_fewshot)
    assert task.config.num_fewshot == (shots or 0)
    assert scored_split(task) == scored
    assert fewshot_source(task) == (fewshot or scored)
    assert fewshot is None or fewshot != scored
    docs = list(task.eval_docs)
    assert task.doc_to_text(docs[0]) == prompt
    for split, files in task.config.dataset_kwargs["data_files"].items():
        assert files and all(Path(f).is_relative_to(FIXTURES / dataset) for f in files), split


def test_paper_shot_counts_and_fewshot_pools_are_kept(loaded):
    tasks = loaded[2]
    assert len(tasks["arc_de"].fewshot_docs()) == 26 and len(tasks["m_mmlu_de"].fewshot_docs()) == 25
    assert [d["gold"] for d in tasks["arc_de"].test_docs()][:1] == [0]
    assert tasks["cmmlu_agronomy"].config.fewshot_split == "dev" and len(tasks["cmmlu_agronomy"].fewshot_docs()) == 2


def test_mgsm_keeps_its_question_prefix_targets_and_generation_filters(loaded):
    tasks = loaded[2]
    direct, cot = tasks["mgsm_direct_de"], tasks["mgsm_native_cot_de"]
    shot = direct.fewshot_docs()[0]  # a train exemplar carries its own "Frage:" and a worked answer
    assert direct.doc_to_text(shot) == "Frage: Lea hat 2 Äpfel und bekommt 3 dazu. Wie viele Äpfel hat sie?\nAntwort:"
    assert cot.doc_to_target(shot) == "Lea hat 2 Äpfel. 2 + 3 = 5. Die Antwort lautet 5."
    assert direct.doc_to_target(list(direct.eval_docs)[0]) == "5"
    assert [f["name"] for f in direct.config.filter_list] == ["remove_whitespace", "flexible-extract"]
    assert [f["name"] for f in cot.config.filter_list] == ["strict-match", "flexible-extract"]
    assert direct.config.generation_kwargs["until"] == ["Frage:", "</s>", "<|im_end|>"]


@pytest.mark.parametrize("name,shots", [("hellaswag_de", 3), ("belebele_deu_Latn", 2)])
def test_num_fewshot_never_draws_from_the_scored_split(loaded, name, shots):
    """Okapi HellaSwag's only split (val) and Belebele's (test) are the scored ones: a few-shot request is refused."""
    task = loaded[2][name]
    before = task.get_config("num_fewshot")
    task.set_config(key="num_fewshot", value=None)  # as loaded: neither YAML pins a count
    try:
        with pytest.raises(BaylingError, match=f"scored split '{CASES[name][1]}'"):
            apply_fewshot(task, shots)
    finally:
        task.set_config(key="num_fewshot", value=before)


def test_scored_doc_choices_and_targets_come_from_the_local_files(loaded):
    tasks = loaded[2]
    xnli = list(tasks["xnli_de"].eval_docs)[2]
    assert tasks["xnli_de"].doc_to_choice(xnli)[2] == "Das Glas ist voll., richtig? Nein, Das Glas ist leer."
    assert tasks["xnli_de"].doc_to_target(xnli) == 2
    story = list(tasks["xstorycloze_es"].eval_docs)[1]
    assert tasks["xstorycloze_es"].doc_to_target(story) == 1
    bele = list(tasks["belebele_deu_Latn"].eval_docs)[2]
    assert tasks["belebele_deu_Latn"].doc_to_target(bele) == 3
    hs = list(tasks["hellaswag_de"].eval_docs)[2]
    assert tasks["hellaswag_de"].doc_to_target(hs) == 2


@pytest.mark.parametrize("name,rel", [("m_mmlu_de", "alexandrainst/m_mmlu/data/de/test.jsonl"),
                                      ("xnli_de", "facebook/xnli/de/validation-00000-of-00001.parquet")])
def test_data_hash_follows_the_bytes_of_a_scored_file(tmp_path, name, rel):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    before = data_hash(_load([name], data, tmp_path / "a")[2][name].dump_config())
    again = data_hash(_load([name], data, tmp_path / "b")[2][name].dump_config())
    target = data / rel
    if target.suffix == ".parquet":
        table = pq.read_table(target)
        pq.write_table(table.slice(0, 2), target)
    else:
        target.write_text(target.read_text(encoding="utf-8").replace("plus", "und"), encoding="utf-8")
    after = data_hash(_load([name], data, tmp_path / "c")[2][name].dump_config())
    assert before == again != after


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_both_parquet_export_namings_and_a_mixed_folder(tmp_path):
    """refs/convert/parquet named files <repo>-<split>.parquet before 2023-08 and <split>/0000.parquet after."""
    layout = LAYOUTS["haonan-li/cmmlu"]
    old = _touch(tmp_path / "old/agronomy/cmmlu-test.parquet")
    assert split_files(tmp_path / "old", layout, "haonan-li/cmmlu", "agronomy", "test", "t") == [str(old)]
    shards = [_touch(tmp_path / f"sh/de/xnli-train-0000{i}-of-00002.parquet") for i in range(2)]
    got = split_files(tmp_path / "sh", LAYOUTS["facebook/xnli"], "facebook/xnli", "de", "train", "t")
    assert got == [str(p) for p in shards]
    _touch(tmp_path / "old/agronomy/test/0000.parquet")
    with pytest.raises(DataError, match="matches two layouts"):
        split_files(tmp_path / "old", layout, "haonan-li/cmmlu", "agronomy", "test", "t")


def test_lfs_pointer_and_split_name_stems(tmp_path):
    _touch(tmp_path / "data/de/val.jsonl", "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(DataError, match="Git LFS pointer"):
        split_files(tmp_path, LAYOUTS["alexandrainst/m_arc"], "alexandrainst/m_arc", "de", "validation", "t")
    custom = Layout("json", ("{name}.{split}.jsonl",), {"validation": "dev"})
    _touch(tmp_path / "x.dev.jsonl", "{}\n")
    assert split_files(tmp_path, custom, "a/b", "x", "validation", "t") == [str(tmp_path / "x.dev.jsonl")]


def test_download_commands_name_the_revision_with_that_layout():
    assert download_command("juletxara/xstory_cloze") == (
        "hf download --repo-type dataset juletxara/xstory_cloze --revision refs/convert/parquet "
        "--local-dir DIR/juletxara/xstory_cloze")
    assert download_command("facebook/belebele", "/d/bb") == (
        "hf download --repo-type dataset facebook/belebele --local-dir /d/bb")
    assert {d for d, lay in LAYOUTS.items() if lay.revision} == {"juletxara/xstory_cloze", "haonan-li/cmmlu"}


def _script_snapshot(ws: Path) -> None:
    """What `hf download juletxara/xstory_cloze` (main) really leaves: a loading script and raw TSVs."""
    root = ws / "data/juletxara/xstory_cloze"
    _touch(root / "xstory_cloze.py", "# loading script\n")
    _touch(root / "spring2016.val.es.tsv.split_20_80_eval.tsv", "InputStoryid\tInputSentence1\n")


def _no_validation(ws: Path) -> None:
    shutil.copytree(FIXTURES / "facebook/xnli", ws / "data/facebook/xnli")
    (ws / "data/facebook/xnli/de/validation-00000-of-00001.parquet").unlink()


def _unknown(ws: Path) -> None:
    _touch(ws / "data/Rowan/hellaswag/data/validation.jsonl", json.dumps({"ctx": "a"}) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("task,setup,needles", [
    ("xnli_de", _no_validation, ["split 'validation'", "de/validation-[0-9]*.parquet", "hf download"]),
    ("xstorycloze_es", _script_snapshot, ["loading-script layout", "--revision refs/convert/parquet"]),
    ("hellaswag", _unknown, ["layout is not known", "Rowan/hellaswag"]),
], ids=["missing-split", "script-layout", "unknown-layout"])
def test_cli_refuses_an_unreadable_snapshot_with_one_line(tmp_path, task, setup, needles):
    make_workspace(tmp_path)
    setup(tmp_path)
    before = snapshot(tmp_path)
    proc = run_cli("bayling-eval", [a.replace("{ws}", str(tmp_path)) for a in KN]
                   + ["--tasks", task, "--data-dir", str(tmp_path / "data")], cwd=tmp_path, timeout=180)
    assert_one_line_error(proc, "bayling-eval", *needles)
    assert_untouched(before, tmp_path)


@pytest.mark.slow
def test_a_real_run_records_local_hashes_shots_and_filters(tiny_llama2, tmp_path):
    """The whole `--suite knowledge --data-dir` path with a model: results.json names the builder, the paper's
    shot count, MGSM's first answer filter and a hash of the local files."""
    from bayling.eval.knowledge import run_knowledge_suite

    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", limit=1, batch_size=4,
                              tasks=["m_mmlu_de", "xnli_de", "mgsm_direct_de"], data_dir=str(FIXTURES))
    rows = doc["tasks"]
    assert {n: (r["dataset"], r["num_fewshot"], r["filter"]) for n, r in rows.items()} == {
        "m_mmlu_de": ("json", 25, "none"), "xnli_de": ("parquet", 0, "none"),
        "mgsm_direct_de": ("parquet", 0, "remove_whitespace")}
    assert all(len(r["data_hash"]) == 64 for r in rows.values()) and doc["skipped"] == {}
    assert json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["tasks"].keys() == rows.keys()
