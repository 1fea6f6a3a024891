"""`bayling-reproduce --dry-run`: the chain's stages, their afterok order and what a restart skips (no Slurm)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bayling.reproduce import MODELS, main, steps_of, write_report

REPO = Path(__file__).resolve().parents[2]


def _dry(out: Path, *extra: str) -> dict[str, str]:
    """The plan as `bayling-reproduce --dry-run` prints it (in-process: the CLI path without a subprocess)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["--out", str(out), "--dry-run", *extra]) == 0
    rows = {}
    for line in buf.getvalue().splitlines():
        name, _, rest = line.partition(" ")
        rows[name] = rest.strip()
    return rows


def _deps(row: str) -> list[str]:
    words = shlex.split(row.split("would submit: ", 1)[1]) if "would submit" in row else []
    dep = next((w for w in words if w.startswith("--dependency=")), "")
    return dep.removeprefix("--dependency=afterok:").split(":") if dep else []


def test_full_plan_has_every_stage_in_afterok_order(tmp_path):
    rows = _dry(tmp_path / "rp", "--ablation", "no-cross-lingual")
    names = list(rows)
    assert names[:2] == ["data/full", "data/no-cross-lingual"] and names[-1] == "report"
    for model in ("7b", "8b", "13b"):
        assert _deps(rows[f"train/{model}"]) == ["<data/full>"]
        assert _deps(rows[f"train/{model}-no-cross-lingual"]) == ["<data/no-cross-lingual>", f"<train/{model}>"]
        for suite in ("flores", "wmt22", "knowledge", "english"):
            assert _deps(rows[f"eval/{suite}/{model}"]) == [f"<train/{model}>"]
            assert _deps(rows[f"eval/{suite}/{model}-no-cross-lingual"]) == [f"<train/{model}-no-cross-lingual>"]
            assert _deps(rows[f"eval/{suite}/{model}-base"]) == []  # a real base model exists from the start
    assert len(_deps(rows["report"])) == 3 * 4 * 3
    # the ablation arm trains for the steps the full arm ran, with the model script's own resources
    abl = rows["train/13b-no-cross-lingual"]
    assert "bayling.reproduce steps" in abl and "--nodes=2" in abl and "--requeue" in abl
    assert "cross_lingual=false" in rows["data/no-cross-lingual"]


def test_cpu_cluster_flags_reach_every_job(tmp_path):
    rows = _dry(tmp_path / "rp", "--models", "7b", "--suites", "flores", "--cpu", "2", "--eval-cpus", "1",
                "--train-config", "data/recipes/train/tiny_cpu.yaml")
    train, ev = shlex.split(rows["train/7b"].split(": ", 1)[1]), shlex.split(rows["eval/flores/7b"].split(": ", 1)[1])
    assert "--gpus-per-node=0" in train and "--cpus-per-task=2" in train
    assert "--gpus-per-node=0" in ev and "--cpus-per-task=1" in ev
    # tiny init: the base model is built by the training job, so its evaluation waits for it
    assert _deps(rows["eval/flores/7b-base"]) == ["<train/7b>"]


def test_a_restart_skips_completed_stages_and_redoes_what_depends_on_missing_ones(tmp_path):
    out = tmp_path / "rp"
    (out / "data" / "full").mkdir(parents=True)
    (out / "data" / "full" / "manifest.json").write_text("{}")
    (out / "train" / "7b" / "final").mkdir(parents=True)
    (out / "train" / "7b" / "final" / "bayling.json").write_text("{}")
    (out / "eval" / "flores" / "7b").mkdir(parents=True)
    (out / "eval" / "flores" / "7b" / "results.json").write_text("{}")
    (out / "REPORT.md").write_text("old")
    rows = _dry(out, "--models", "7b", "--suites", "flores")
    assert rows["data/full"].startswith("done") and rows["train/7b"].startswith("done")
    assert rows["eval/flores/7b"].startswith("done")
    assert _deps(rows["eval/flores/7b-base"]) == []
    assert "would submit" in rows["report"]  # an upstream stage is redone, so the report is too
    assert _deps(rows["report"]) == ["<eval/flores/7b-base>"]


def test_models_registry_matches_each_scripts_default_config():
    for model, (script, config) in MODELS.items():
        res = subprocess.run(["bash", str(REPO / script), "--dry-run"], cwd=REPO, capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CONFIG"))},
                             timeout=60)
        assert res.returncode == 0, res.stderr
        assert f"--config {REPO / config}" in res.stdout, (model, res.stdout)


@pytest.mark.parametrize("argv, message", [
    (["--models", "70b"], "--models"), (["--suites", "mmlu"], "--suites"), (["--recipe", "nope.yaml"], "nope.yaml"),
])
def test_bad_arguments_are_one_line(tmp_path, argv, message):
    res = subprocess.run([sys.executable, "-m", "bayling.reproduce", "--out", str(tmp_path), "--dry-run", *argv],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("bayling-reproduce: error:") and message in res.stderr


@pytest.mark.slow  # the report runs `bayling-eval compare` (~10-20 s here)
def test_steps_of_a_finished_run_and_report_table(tmp_path):
    run = tmp_path / "train" / "7b"
    (run / "final").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3))
                                       + json.dumps({"step": 3, "event": "eval", "val_loss": 1.0}) + "\n")
    assert steps_of(run) == 3
    for label, chrf in (("7b-base", 10.0), ("7b", 20.0)):
        d = tmp_path / "eval" / "flores" / label
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"directions": [
            {"direction": "deu_Latn-eng_Latn", "scores": {"chrf": {"score": chrf, "name": "chrF2++", "signature": "s"}}},
            {"direction": "eng_Latn-deu_Latn", "scores": {"chrf": {"score": chrf + 2, "name": "chrF2++", "signature": "s"}}},
        ]}))
    write_report(tmp_path)
    assert "| 7b | flores | 11.00 (2) | 21.00 (2) | - |" in (tmp_path / "REPORT.md").read_text()
