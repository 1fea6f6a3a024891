"""Benchmark and language labels of knowledge tasks come from definitions, never from task names.

The failures this guards against were all silent: each CMMLU subject reported as its own benchmark with the
subject as its "language", a German ``mmlu_de`` reported as English MMLU, a 67-panel plot 18,760 px tall.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayling.errors import DataError
from bayling.eval.knowledge import run_knowledge_suite
from bayling.eval.knowledge_report import plot_languages
from bayling.eval.labels import Labeller

REPO = Path(__file__).resolve().parents[2]


def _write_mc_task(folder: Path, name: str, data: Path, extra: str = "") -> None:
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{premise}}'\n"
        "doc_to_choice: '{{[choice1, choice2]}}'\ndoc_to_target: label\n" + extra, encoding="utf-8")


def test_group_members_are_one_benchmark_and_never_get_a_language_from_their_names():
    lab = Labeller(None, {"cmmlu_local": ["cmmlu_local_college_law", "cmmlu_local_agronomy"]})
    label = lab.label("cmmlu_local_college_law")
    assert (label.benchmark, label.language, label.source) == ("cmmlu_local", None, "group")
    assert lab.label("mmlu_de").language is None and lab.label("mmlu_de").benchmark == "mmlu_de"


def test_metadata_and_label_files_name_benchmark_and_language(tmp_path):
    (tmp_path / "labels.yaml").write_text("cmmlu_local: {benchmark: cmmlu, language: zho_Hans}\n"
                                          "cmmlu_local_agronomy: {language: yue_Hant}\n", encoding="utf-8")
    lab = Labeller(tmp_path, {"cmmlu_local": ["cmmlu_local_college_law", "cmmlu_local_agronomy"]})
    assert lab.label("cmmlu_local_college_law").language == "zho_Hans"
    assert lab.label("cmmlu_local_agronomy").language == "yue_Hant"  # a member's own entry wins
    assert lab.label("cmmlu_local_agronomy").benchmark == "cmmlu_local_agronomy"
    meta = lab.label("mmlu_de", {"benchmark": "okapi_mmlu", "language": "deu_Latn", "version": 1})
    assert (meta.benchmark, meta.language, meta.source) == ("okapi_mmlu", "deu_Latn", "metadata")


@pytest.mark.parametrize("task,bench,lang", [("arc_de", "okapi_arc", "de"), ("m_mmlu_kn", "okapi_mmlu", "kn"),
                                             ("hellaswag_sr", "okapi_hellaswag", "sr"),
                                             ("belebele_npi_Deva", "belebele", "npi_Deva"),
                                             ("xnli_ur", "xnli", "ur"), ("mgsm_direct_ja", "mgsm", "ja"),
                                             ("mgsm_native_cot_de", "mgsm_native_cot", "de"),
                                             ("arc_challenge", "arc_challenge", "eng_Latn")])
def test_the_suites_own_tasks_are_labelled_from_their_language_lists(task, bench, lang):
    label = Labeller().label(task)
    assert (label.benchmark, label.language, label.source) == (bench, lang, "suite")


def test_english_mmlu_subjects_are_english_mmlu_through_the_documented_group_mapping():
    lab = Labeller(None, {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy"]})
    assert (lab.label("mmlu_anatomy").benchmark, lab.label("mmlu_anatomy").language) == ("mmlu", "eng_Latn")


def test_cmmlu_subjects_are_chinese_cmmlu_through_the_documented_group_mapping():
    lab = Labeller(None, {"cmmlu": ["cmmlu_agronomy", "cmmlu_college_law"]})
    for task in ("cmmlu_agronomy", "cmmlu_college_law"):
        assert (lab.label(task).benchmark, lab.label(task).language) == ("cmmlu", "zho_Hans")


def test_a_malformed_label_file_is_one_error(tmp_path):
    (tmp_path / "labels.yaml").write_text("cmmlu: {benchmark: x, lang: zh}\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown key"):
        Labeller(tmp_path)


def test_plot_stays_readable_for_sixty_benchmarks(tmp_path):
    from PIL import Image

    benches = {f"subject_{i:02d}": {"metric": "acc", "languages": {"-": {"score": 0.5, "n": 4, "tasks": 1}},
                                    "mean": 0.5} for i in range(67)}
    plot_languages({"benchmarks": benches, "suite": "knowledge", "model": "m"}, tmp_path / "p.png")
    width, height = Image.open(tmp_path / "p.png").size
    assert height <= 2400 and width <= 3000  # 67 panels used to make an image 18,760 px tall


@pytest.mark.slow  # 61 tasks through lm-eval: ~70 s on 2 shared cores
def test_cmmlu_style_task_dir_is_one_labelled_benchmark_with_group_scores(tiny_llama2, tmp_path, repo_root):
    """61 subject tasks in one group + labels.yaml: one benchmark in Chinese, lm-eval's group score in summary.md."""
    lines = (repo_root / "eval/xcopa/data/zh/test.zh.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    root = tmp_path / "cmmlu_like"
    root.mkdir()
    (root / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    names = [f"cmmlu_local_subject_{i:02d}" for i in range(61)]
    for name in names:
        _write_mc_task(root, name, root / "data.jsonl")
    (root / "_cmmlu_local.yaml").write_text(
        "group: cmmlu_local\ntask:\n" + "".join(f"  - {n}\n" for n in names)
        + "aggregate_metric_list:\n  - metric: acc\n    aggregation: mean\n    weight_by_size: true\n", encoding="utf-8")
    (root / "labels.yaml").write_text("cmmlu_local: {benchmark: cmmlu, language: zho_Hans}\n", encoding="utf-8")
    out = tmp_path / "out"
    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", out, task_dir=str(root), batch_size=8)
    assert set(doc["benchmarks"]) == {"cmmlu"}
    assert list(doc["benchmarks"]["cmmlu"]["languages"]) == ["zho_Hans"]
    assert {r["language_code"] for r in doc["tasks"].values()} == {"zho_Hans"}
    assert "cmmlu_local" in doc["groups"]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Groups" in summary and "| cmmlu_local | acc |" in summary
    assert "log-likelihood scoring (multiple choice)" in summary
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["tasks"][names[0]]["label_source"] == \
        "labels.yaml"
