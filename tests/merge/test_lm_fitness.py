"""lm-eval accuracy as a merge fitness: bayling-eval's own accuracy, on the validation split, cached.

What a user relies on: ``--fitness lm-eval:TASK`` scores a candidate exactly as ``bayling-eval --suite
knowledge`` scores the same model on the task's validation split (never its test split, which the reports
use); a task with no split apart from the reported one is refused with one line; a candidate scored once
costs nothing the second time; FLORES + lm-eval is the unweighted mean of the two components by default.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from bayling.cli.merge import main
from bayling.eval.knowledge import run_knowledge_suite
from bayling.merge.checkpoint import MergeError, load_state
from bayling.merge.fitness import Fitness, GenSettings, Scorer, parse_weights
from bayling.merge.lm_fitness import LmEvalScorer
from tests.hostile import assert_one_line_error
from tests.merge.helpers import REPO, merge_cmd

N_DOCS = 9  # odd: the test split (labels flipped) can never tie with the validation split


def _task_yaml(name: str, splits: dict[str, str]) -> str:
    files = "".join(f"    {split}: data/{f}\n" for split, f in splits.items())
    split_keys = "".join(f"{'validation' if s == 'validation' else 'test'}_split: {s}\n" for s in splits)
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n{files}"
            f"output_type: multiple_choice\n{split_keys}doc_to_text: '{{{{premise}}}}'\n"
            "doc_to_choice: '{{[choice1, choice2]}}'\ndoc_to_target: label\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """``copa_it``: validation = 9 XCOPA-it validation docs, test = the same docs with every label flipped;
    ``copa_it_val_as_test``: the validation docs as a test split (what bayling-eval reports on, for the golden);
    ``copa_test_only``: a test split and nothing else."""
    root = tmp_path_factory.mktemp("lm_tasks")
    (root / "data").mkdir()
    docs = [json.loads(x) for x in (REPO / "eval/xcopa/data/it/val.it.jsonl").read_text("utf-8").splitlines()]
    docs = [{k: d[k] for k in ("premise", "choice1", "choice2", "label")} for d in docs[:N_DOCS]]
    (root / "data" / "val.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "data" / "test.jsonl").write_text("".join(json.dumps({**d, "label": 1 - d["label"]}) + "\n"
                                                      for d in docs), encoding="utf-8")
    (root / "copa_it.yaml").write_text(_task_yaml("copa_it", {"validation": "val.jsonl", "test": "test.jsonl"}),
                                       encoding="utf-8")
    (root / "copa_it_val_as_test.yaml").write_text(_task_yaml("copa_it_val_as_test", {"test": "val.jsonl"}),
                                                   encoding="utf-8")
    (root / "copa_test_only.yaml").write_text(_task_yaml("copa_test_only", {"test": "test.jsonl"}),
                                              encoding="utf-8")
    return root


def _acc(model: Path, task: str, task_dir: Path, out: Path) -> float:
    doc = run_knowledge_suite(str(model), "knowledge", out, tasks=[task], task_dir=str(task_dir), batch_size=4)
    return doc["tasks"][task]["metrics"]["acc"]


def _fitness(models: dict[str, Path], task_dir: Path, work: Path) -> Fitness:
    lm = LmEvalScorer(models["base"], ["copa_it"], str(task_dir), None, None, 4, "cpu", "float32")
    scorer = Scorer(lambda: None, GenSettings(), work, progress=False)
    weights = parse_weights([], [], sorted(lm.tasks))
    return Fitness(scorer, [], weights, work / "fitness_cache.json", {"lm_eval": lm.fingerprint()}, lm_scorer=lm)


def test_fitness_is_bayling_evals_accuracy_on_the_validation_split_and_cached(merge_models, task_dir, tmp_path):
    e1 = merge_models["e1"]
    dev_acc = _acc(e1, "copa_it_val_as_test", task_dir, tmp_path / "ev_val")
    test_acc = _acc(e1, "copa_it", task_dir, tmp_path / "ev_test")
    assert math.isclose(test_acc, 1 - dev_acc)  # the flipped labels: the two splits really differ
    fitness = _fitness(merge_models, task_dir, tmp_path / "work")
    # the scorer's model is loaded from the BASE; the candidate's weights (expert 1) are copied into it
    value = fitness("e1", lambda: load_state(e1))
    assert value == pytest.approx(100 * dev_acc, abs=1e-9)  # golden: bayling-eval's own accuracy, in percent
    assert value != pytest.approx(100 * test_acc)
    assert fitness.lm_eval_scores("e1") == {"copa_it": pytest.approx(100 * dev_acc)}
    saved = json.loads((tmp_path / "work" / "dev-lm-eval" / "e1" / "results.json").read_text())
    assert saved["tasks"]["copa_it"]["n"] == N_DOCS and saved["model"] == "bayling-merge:e1"

    def must_not_run():
        raise AssertionError("a cached candidate was evaluated again")

    assert fitness("e1", must_not_run) == value and fitness.evaluations == 1
    again = _fitness(merge_models, task_dir, tmp_path / "work")  # a resumed run: the cache file alone
    assert again("e1", must_not_run) == value and again.evaluations == 0


def test_a_task_whose_only_split_is_the_reported_one_is_refused(merge_models, task_dir):
    with pytest.raises(MergeError, match="'copa_test_only' has no validation split apart from 'test'"):
        LmEvalScorer(merge_models["base"], ["copa_test_only"], str(task_dir), None, None, 4, "cpu", None)


def test_shipped_xcopa_scores_its_validation_split(merge_models):
    lm = LmEvalScorer(merge_models["base"], ["xcopa_local_it"], None, None, 3, 4, "cpu", None)
    task = lm.tasks["xcopa_local_it"]
    assert task.config.test_split == task.config.validation_split == "validation"
    assert len(list(task.eval_docs)) == 100  # XCOPA's validation size (its test split has 500)
    assert lm.fingerprint()[0][:2] == ["xcopa_local_it", "validation"]


def test_cli_refuses_a_test_only_task_with_one_line(merge_models, flores_split, task_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(merge_cmd(merge_models, flores_split["dev"], out, "--fitness", "lm-eval:copa_test_only",
                          "--lm-eval-task-dir", str(task_dir), "--methods", "linear", "--iterations", "0"))
    proc = SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)
    assert_one_line_error(proc, "bayling-merge", "copa_test_only", "no validation split")
    assert not out.exists()


@pytest.mark.slow
def test_flores_plus_lm_eval_is_the_unweighted_mean_of_the_components(merge_models, flores_split, task_dir,
                                                                       tmp_path):
    out = tmp_path / "out"
    args = merge_cmd(merge_models, flores_split["dev"], out, "--fitness", "lm-eval:copa_it", "--lm-eval-task-dir",
                     str(task_dir), "--methods", "linear", "--test-flores-dir", str(flores_split["test"]))
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["fitness_components"] == {"flores": 1.0, "lm-eval": 1.0}
    # every candidate goes through ONE model loaded from the base: each must still get its own accuracy
    for name, model in (("base", "base"), ("expert1", "e1"), ("expert2", "e2")):
        acc = _acc(merge_models[model], "copa_it_val_as_test", task_dir, tmp_path / f"ev_{name}")
        assert report["dev_lm_eval"][name] == {"copa_it": pytest.approx(100 * acc)}
    for name, fit in report["dev_fitness"].items():
        chrf = report["dev_chrf"][name]
        flores = sum(chrf.values()) / len(chrf)
        assert len(chrf) == 2 and fit == pytest.approx((flores + report["dev_lm_eval"][name]["copa_it"]) / 2)
    md = (out / "report.md").read_text()
    assert "unweighted mean of two components" in md and "| copa_it |" in md
    # weights on the components; the cache of the first run is refused (other settings), a new --out works
    out2 = tmp_path / "out2"
    assert main([*merge_cmd(merge_models, flores_split["dev"], out2, "--fitness", "lm-eval:copa_it",
                            "--lm-eval-task-dir", str(task_dir), "--methods", "linear", "--iterations", "0",
                            "--fitness-weight", "lm-eval=3")]) == 0
    r2 = json.loads((out2 / "report.json").read_text())
    for name, fit in r2["dev_fitness"].items():
        flores = sum(r2["dev_chrf"][name].values()) / 2
        assert fit == pytest.approx((flores + 3 * r2["dev_lm_eval"][name]["copa_it"]) / 4)


@pytest.mark.slow
def test_pso_on_an_lm_eval_fitness_saves_and_continues_its_swarm(merge_models, flores_split, task_dir, tmp_path):
    out = tmp_path / "out"
    args = merge_cmd(merge_models, flores_split["dev"], out, "--fitness", "lm-eval:copa_it", "--lm-eval-task-dir",
                     str(task_dir), "--methods", "pso", "--iterations", "1")
    assert main(args) == 0
    first = json.loads((out / "report.json").read_text())
    assert main([*args[:-1], "2"]) == 0  # a larger --iterations continues the saved swarm, cache included
    second = json.loads((out / "report.json").read_text())
    assert [h["iteration"] for h in second["pso"]["history"]] == [0, 1, 2]
    assert second["pso"]["history"][:2] == first["pso"]["history"]
    assert second["fitness_evaluations"] < first["fitness_evaluations"]
    assert set(second["dev_lm_eval"]["pso"]) == {"copa_it"}
