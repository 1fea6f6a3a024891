"""`bayling-eval --suite knowledge|english`: lm-eval harness runs on a tiny random-init Llama, offline.

What a user relies on: XCOPA runs from the copy shipped in the repo with lm-eval's own prompts; results.json
holds per-language accuracy that the harness really computed; a --task-dir YAML over local JSONL works from
any working directory; a harness task whose data is missing offline fails in seconds with one line that names
the dataset and how to supply it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from bayling.errors import BaylingError, OfflineError
from bayling.eval import lm_tasks
from bayling.eval.knowledge import config_hash, run_knowledge_suite

XCOPA_LANGS = "et ht id it qu sw ta th tr vi zh".split()


def test_xcopa_from_shipped_files_writes_per_language_reports(tiny_llama2, tmp_path):
    out = tmp_path / "knowledge"
    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", out, tasks=["xcopa_local_zh", "xcopa_local_sw",
                              "xcopa_local_qu"], limit=6, batch_size=4)
    on_disk = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(doc))
    assert on_disk["lm_eval_version"] == "0.4.13"
    assert on_disk["skipped"] == {}
    langs = on_disk["benchmarks"]["xcopa"]["languages"]
    assert sorted(langs) == ["qu", "sw", "zh"]
    for lang in ("zh", "sw", "qu"):
        row = on_disk["tasks"][f"xcopa_local_{lang}"]
        acc = row["metrics"]["acc"]
        assert 0.0 <= acc <= 1.0 and math.isclose(acc * 6, round(acc * 6))  # a fraction of 6 items
        assert row["n"] == 6 and row["n_total"] == 500
        assert row["num_fewshot"] == 0 and row["language"] == lang
        assert row["language_code"] == {"zh": "zho_Hans", "sw": "swh_Latn", "qu": "quy_Latn"}[lang]
        assert len(row["config_hash"]) == 64 and len(row["data_hash"]) == 64
        assert "acc_stderr" in row["metrics"]
        assert langs[lang]["score"] == acc
    assert on_disk["tasks"]["xcopa_local_zh"]["data_hash"] != on_disk["tasks"]["xcopa_local_sw"]["data_hash"]
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert {(r["task"], r["metric"]) for r in rows} == {(f"xcopa_local_{x}", "acc") for x in ("zh", "sw", "qu")}
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| xcopa_local_sw | sw | acc |" in summary and "| xcopa | acc | 3 |" in summary
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_local_xcopa_matches_the_harness_prompt_and_ships_all_data(tmp_path):
    from lm_eval.tasks.xcopa import utils as harness

    staged = lm_tasks.stage_task_dir(lm_tasks.LOCAL_TASKS_DIR, tmp_path / "staged")
    tm = lm_tasks.make_task_manager([staged], need_defaults=False)
    assert lm_tasks.local_task_names(staged) == ["xcopa_local"]
    tasks = tm.load(["xcopa_local"])["tasks"]
    assert sorted(tasks) == [f"xcopa_local_{x}" for x in XCOPA_LANGS]
    for lang in XCOPA_LANGS:
        task = tasks[f"xcopa_local_{lang}"]
        test_docs, val_docs = list(task.test_docs()), list(task.validation_docs())
        assert (len(test_docs), len(val_docs)) == (500, 100)
        for doc in test_docs[:5] + val_docs[:3]:
            assert task.doc_to_text(doc) == getattr(harness, f"doc_to_text_{lang}")(doc)
            assert task.doc_to_choice(doc) == harness.doc_to_choice(doc)
            assert task.doc_to_target(doc) == doc["label"]


def test_config_hash_is_stable_across_loads_and_sensitive_to_the_prompt(tmp_path):
    def staged_config(where: Path) -> dict:
        tm = lm_tasks.make_task_manager([lm_tasks.stage_task_dir(lm_tasks.LOCAL_TASKS_DIR, where)], False)
        return tm.load(["xcopa_local_it"])["tasks"]["xcopa_local_it"].dump_config()

    a, b = staged_config(tmp_path / "a"), staged_config(tmp_path / "b")
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "target_delimiter": "\n"})


def _write_task_dir(root: Path, docs: list[dict], labels: dict[str, list[int]]) -> None:
    """A user task folder: JSONL next to the YAML, referenced by a RELATIVE path."""
    (root / "data").mkdir(parents=True)
    for name, gold in labels.items():
        with (root / "data" / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for doc, label in zip(docs, gold):
                fh.write(json.dumps({**doc, "label": label}, ensure_ascii=False) + "\n")
        (root / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/{name}.jsonl\n"
            "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{premise}}'\n"
            "doc_to_choice: '{{[choice1, choice2]}}'\ndoc_to_target: label\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n",
            encoding="utf-8",
        )


def _model_choices(model_dir: Path, docs: list[dict]) -> list[int]:
    """The model's preferred choice per doc, computed with plain transformers (not lm-eval).

    Same convention as the harness: BOS + context, continuation ' ' + choice, summed token log-probs.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def loglik(context: str, continuation: str) -> float:
        whole = [tok.bos_token_id] + tok.encode(context + continuation, add_special_tokens=False)
        n_ctx = 1 + len(tok.encode(context, add_special_tokens=False))
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
        return sum(logp[i - 1, whole[i]].item() for i in range(n_ctx, len(whole)))

    picks = []
    for doc in docs:
        a, b = (loglik(doc["premise"], " " + doc[c]) for c in ("choice1", "choice2"))
        assert abs(a - b) > 1e-3, "near-tie: pick other documents"
        picks.append(0 if a > b else 1)
    return picks


def test_task_dir_yaml_scores_what_the_model_prefers(tiny_llama2, tmp_path, monkeypatch, repo_root):
    """Gold = the model's own preference -> acc 1.0; gold flipped -> acc 0.0. Hard-coded scores cannot pass."""
    lines = (repo_root / "eval/xcopa/data/it/test.it.jsonl").read_text(encoding="utf-8").splitlines()[:10]
    docs = [{k: d[k] for k in ("premise", "choice1", "choice2")} for d in map(json.loads, lines)]
    picks = _model_choices(tiny_llama2, docs)
    assert 0 < sum(picks) < len(picks), "the model should not prefer the same position everywhere"
    _write_task_dir(tmp_path / "mytasks", docs, {"agree": picks, "disagree": [1 - p for p in picks]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative data_files must resolve against the YAML, not the CWD
    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", task_dir="../mytasks",
                              batch_size=3)
    assert set(doc["tasks"]) == {"agree", "disagree"}
    assert doc["tasks"]["agree"]["metrics"]["acc"] == 1.0
    assert doc["tasks"]["disagree"]["metrics"]["acc"] == 0.0
    assert doc["tasks"]["agree"]["n"] == 10


def test_harness_task_offline_fails_fast_naming_the_dataset(tmp_path):
    not_a_model = tmp_path / "model"  # exists but empty: the data check must come before loading the model
    not_a_model.mkdir()
    with pytest.raises(OfflineError) as info:
        run_knowledge_suite(str(not_a_model), "knowledge", tmp_path / "out", tasks=["arc_de"], limit=2,
                            batch_size=1)
    msg = str(info.value)
    assert "\n" not in msg
    assert "alexandrainst/m_arc" in msg and "arc_de" in msg
    assert "hf download --repo-type dataset alexandrainst/m_arc" in msg and "--task-dir" in msg
    assert not (tmp_path / "out").exists()


def test_english_suite_offline_is_one_line_exit_2_naming_every_missing_dataset(tmp_path, capsys):
    from bayling.cli.evaluate import main
    from tests.eval.test_eval_hostile_cli import write_safetensors

    model = tmp_path / "model"  # well-formed but never loaded: the data check fails first
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    write_safetensors(model / "model.safetensors")
    code = main(["--suite", "english", "--model", str(model), "--out", str(tmp_path / "out"), "--limit", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("bayling-eval: error:")
    for dataset in ("cais/mmlu", "allenai/ai2_arc", "Rowan/hellaswag"):
        assert dataset in last


def test_default_suite_offline_runs_xcopa_and_lists_what_it_skipped(tiny_llama2, tmp_path):
    out = tmp_path / "out"
    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", out, limit=1, batch_size=8)
    assert sorted(doc["benchmarks"]["xcopa"]["languages"]) == XCOPA_LANGS
    assert all(row["n"] == 1 for row in doc["tasks"].values())
    assert doc["skipped"]["arc_de"]["dataset"] == "alexandrainst/m_arc"
    assert doc["skipped"]["m_mmlu_hi"]["dataset"] == "alexandrainst/m_mmlu"
    assert doc["skipped"]["belebele_deu_Latn"]["dataset"] == "facebook/belebele"
    assert "xcopa_local" in doc["groups"]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Skipped: data not reachable" in summary and "`alexandrainst/m_hellaswag` (23 tasks" in summary


def test_unknown_task_name_suggests_close_ones(tmp_path):
    staged = lm_tasks.stage_task_dir(lm_tasks.LOCAL_TASKS_DIR, tmp_path / "staged")
    tm = lm_tasks.make_task_manager([staged], need_defaults=False)
    with pytest.raises(BaylingError, match="did you mean: xcopa_local_zh"):
        lm_tasks.load_spec(tm, lm_tasks.TaskSpec("xcopa_locl_zh", required=True, num_fewshot=0))


def test_task_dir_without_yaml_is_a_clear_error(tiny_llama2, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here", encoding="utf-8")
    with pytest.raises(BaylingError, match="no lm-eval task YAML"):
        run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", task_dir=str(tmp_path / "empty"))


def test_fewshot_defaults_follow_the_paper_protocol():
    specs = {s.name: s.num_fewshot for s in lm_tasks.expand_specs("english", None, None, None)}
    assert specs == {"mmlu": 5, "arc_challenge": 25, "arc_easy": 25, "hellaswag": 0}
    okapi = {s.name: s.num_fewshot for s in lm_tasks.expand_specs("knowledge", ["okapi"], None, None)}
    assert okapi["arc_de"] == 25 and okapi["hellaswag_de"] == 0 and okapi["m_mmlu_de"] == 25
    assert len(okapi) == 3 * len(lm_tasks.OKAPI_LANGS)
    assert {s.num_fewshot for s in lm_tasks.expand_specs("english", None, None, 5)} == {5}
    mine = lm_tasks.expand_specs("knowledge", ["arc_mine"], None, None, frozenset({"arc_mine"}))
    assert mine[0].num_fewshot is None  # a --task-dir task keeps the few-shot of its own YAML


def test_generative_task_dir_reports_exact_match_with_its_filter(tiny_llama2, tmp_path):
    """MGSM-style generate_until tasks go through the same path; metric and stderr come from one filter."""
    root = tmp_path / "gen"
    root.mkdir()
    with (root / "sums.jsonl").open("w", encoding="utf-8") as fh:
        for a in range(4):
            fh.write(json.dumps({"question": f"{a} + 1 =", "answer": str(a + 1)}) + "\n")
    (root / "sums.yaml").write_text(
        "task: sums_en\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: sums.jsonl\n"
        "output_type: generate_until\ntest_split: test\ndoc_to_text: '{{question}}'\ndoc_to_target: answer\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 4\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n",
        encoding="utf-8",
    )
    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", task_dir=str(root), limit=3,
                              batch_size=3)
    row = doc["tasks"]["sums_en"]
    assert row["benchmark"] == "sums_en" and row["language"] is None  # no label: never guessed from the name
    assert row["output_type"] == "generate_until" and row["n"] == 3 and row["filter"] == "none"
    assert 0.0 <= row["metrics"]["exact_match"] <= 1.0 and "exact_match_stderr" in row["metrics"]
    assert doc["benchmarks"]["sums_en"]["metric"] == "exact_match"
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "greedy generation + answer filters" in summary and "log-likelihood" not in summary


def _mc_yaml(name: str, data_file: str) -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data_file}\n"
            "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{premise}}'\n"
            "doc_to_choice: '{{[choice1, choice2]}}'\ndoc_to_target: label\n")


def test_task_dir_missing_data_file_names_where_it_was_expected(tiny_llama2, tmp_path):
    root = tmp_path / "tasks"
    root.mkdir()
    (root / "t.yaml").write_text(_mc_yaml("needs_file", "data/missing.jsonl"), encoding="utf-8")
    with pytest.raises(BaylingError) as info:
        run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", task_dir=str(root))
    assert str(root / "data" / "missing.jsonl") in str(info.value) and "needs_file" in str(info.value)


def test_task_dir_malformed_jsonl_is_reported_with_file_and_line(tiny_llama2, tmp_path):
    root = tmp_path / "tasks"
    root.mkdir()
    (root / "d.jsonl").write_text('{"premise": "a", "choice1": "b", "choice2": "c", "label": 0}\n{oops\n',
                                  encoding="utf-8")
    (root / "t.yaml").write_text(_mc_yaml("broken", "d.jsonl"), encoding="utf-8")
    with pytest.raises(BaylingError) as info:
        run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", task_dir=str(root))
    assert str(info.value).startswith(f"{root / 'd.jsonl'}:2: ")


def test_fast_harness_index_finds_the_same_tasks_as_the_full_one():
    names = ["arc_de", "hellaswag_hi", "m_mmlu_uk", "belebele_zho_Hans", "xstorycloze", "xnli", "mgsm_direct",
             "mmlu", "arc_challenge", "arc_easy", "hellaswag", "arc_challenge_chat"]
    folders = lm_tasks.harness_folders(names)
    assert folders is not None and len(folders) == 10  # the fast path is taken for the suites' tasks
    tm = lm_tasks.make_task_manager([], True, names)
    assert all(n in tm.task_index for n in names)
    assert len(tm.all_tasks) < 2000  # not the full 14,000-entry built-in index
    assert lm_tasks.harness_folders(["xnli_eu"]) is None  # unknown territory: the full index is used


def test_more_shots_than_the_fewshot_pool_fails_before_the_model_loads(tmp_path):
    empty_model = tmp_path / "model"
    empty_model.mkdir()
    with pytest.raises(BaylingError, match=r"xcopa_local_zh' has only 100 few-shot examples, 150 asked for"):
        run_knowledge_suite(str(empty_model), "knowledge", tmp_path / "out", tasks=["xcopa_local_zh"],
                            num_fewshot=150, limit=1)


def test_num_fewshot_override_reaches_the_harness(tiny_llama2, tmp_path):
    doc = run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", tasks=["xcopa_local_tr",
                              "xcopa_local_vi"], limit=2, batch_size=8, num_fewshot=3)
    assert sorted(doc["tasks"]) == ["xcopa_local_tr", "xcopa_local_vi"]
    assert {row["num_fewshot"] for row in doc["tasks"].values()} == {3}
    assert doc["settings"]["num_fewshot_override"] == 3


def test_fewshot_is_never_drawn_from_the_scored_split(tiny_llama2, tmp_path):
    """A task with only a test split and --num-fewshot 2 would show test answers in the prompt: refused."""
    root = tmp_path / "t"
    root.mkdir()
    (root / "d.jsonl").write_text(json.dumps({"premise": "a", "choice1": "b", "choice2": "c", "label": 0}) + "\n",
                                  encoding="utf-8")
    (root / "only_test.yaml").write_text(_mc_yaml("only_test", "d.jsonl"), encoding="utf-8")
    with pytest.raises(BaylingError, match="drawn from the scored split 'test'"):
        run_knowledge_suite(str(tiny_llama2), "knowledge", tmp_path / "out", task_dir=str(root), num_fewshot=2)
    assert not (tmp_path / "out").exists()


def test_data_hash_covers_the_files_a_glob_matches(tmp_path):
    from bayling.eval.knowledge import data_hash

    (tmp_path / "a.jsonl").write_text("1\n", encoding="utf-8")
    cfg = {"dataset_kwargs": {"data_files": {"test": str(tmp_path / "*.jsonl")}}}
    before = data_hash(cfg)
    (tmp_path / "a.jsonl").write_text("2\n", encoding="utf-8")  # same pattern, edited data
    assert data_hash(cfg) != before
    assert data_hash({"dataset_kwargs": {"data_files": {"test": str(tmp_path)}}}) is not None


def test_out_folder_rule_is_checked_before_any_work(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(BaylingError, match="did not write"):
        run_knowledge_suite(str(tmp_path / "no-model"), "knowledge", user, tasks=["xcopa"])
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
