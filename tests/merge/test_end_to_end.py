"""bayling-merge end to end on a tiny model: the merged folder is what bayling-eval loads and scores the same
way; the same seed gives the same merge; a run killed with SIGKILL resumes to the same result."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bayling.cli.merge import main
from tests.hostile import cli_env
from tests.merge.helpers import REPO, merge_cmd

pytestmark = pytest.mark.slow

SETTINGS = ("--methods", "pso,linear", "--iterations", "3", "--seed", "0")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(merge_models, flores_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merge_ref") / "out"
    assert main(merge_cmd(merge_models, flores_split["dev"], out, *SETTINGS,
                          "--test-flores-dir", str(flores_split["test"]))) == 0
    return out


def test_merged_folder_carries_the_base_files_and_a_report(reference, merge_models):
    base = merge_models["base"]
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "generation_config.json", "bayling.json"):
        assert sha(reference / name) == sha(base / name), name
    doc = json.loads((reference / "report.json").read_text())
    assert doc["final"] == "pso"
    assert set(doc["dev_fitness"]) == {"base", "expert1", "expert2", "linear", "pso"}
    assert len(doc["pso"]["history"]) == 4  # the initial swarm + 3 iterations
    assert doc["pso"]["gbest_fitness"] == max(doc["pso"]["history"][-1]["fitness"] + [doc["pso"]["gbest_fitness"]])
    assert doc["dev_fitness"]["pso"] >= max(doc["pso"]["history"][0]["fitness"])  # never worse than a start
    assert (reference / "fitness.png").stat().st_size > 1000
    md = (reference / "report.md").read_text()
    assert "| pso |" in md and "| linear |" in md and "test x-en" in md
    merge_meta = json.loads((reference / "merge.json").read_text())
    assert merge_meta["method"] == "pso" and merge_meta["tool"] == "bayling-merge"


def test_bayling_eval_loads_the_merge_and_reproduces_the_reports_test_score(reference, flores_split, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bayling.cli.evaluate", "--suite", "flores", "--model",
                           str(reference), "--flores-dir", str(flores_split["test"]), "--langs", "deu",
                           "--directions", "x-en,en-x", "--beams", "1", "--max-new-tokens", "6", "--batch-size", "2",
                           "--out", str(tmp_path / "eval"), "--no-progress"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    report = json.loads((reference / "report.json").read_text())
    for d in results["directions"]:
        assert d["scores"]["chrf"]["score"] == pytest.approx(report["test_chrf"]["pso"][d["direction"]], abs=1e-9)


def test_same_seed_same_merge(reference, merge_models, flores_split, tmp_path):
    out = tmp_path / "again"
    assert main(merge_cmd(merge_models, flores_split["dev"], out, *SETTINGS)) == 0
    assert sha(out / "model.safetensors") == sha(reference / "model.safetensors")
    a = json.loads((reference / "report.json").read_text())["pso"]
    b = json.loads((out / "report.json").read_text())["pso"]
    assert a["history"] == b["history"] and a["gbest"] == b["gbest"]


def test_rerun_in_a_finished_folder_reuses_every_evaluation(reference, merge_models, flores_split, capsys):
    assert main(merge_cmd(merge_models, flores_split["dev"], reference, *SETTINGS,
                          "--test-flores-dir", str(flores_split["test"]))) == 0
    assert json.loads((reference / "report.json").read_text())["fitness_evaluations"] == 0


def test_killed_run_resumes_to_the_uninterrupted_result(reference, merge_models, flores_split, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bayling.cli.merge", *merge_cmd(merge_models, flores_split["dev"], out, *SETTINGS)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "swarm" / "swarm.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["iteration"] >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "merge.json").exists()
    done_before = json.loads(state.read_text())["iteration"]
    assert 1 <= done_before < 3
    resumed = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sha(out / "model.safetensors") == sha(reference / "model.safetensors")
    a = json.loads((reference / "report.json").read_text())["pso"]
    b = json.loads((out / "report.json").read_text())["pso"]
    assert a["history"] == b["history"]
