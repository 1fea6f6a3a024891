"""`bayling-reproduce` end to end on the real one-node Slurm cluster, at tiny scale, with a restart.

The whole chain (data array + merge for both arms -> tiny training -> the ablation at the same steps ->
FLORES and WMT22 for base/ours/ablation -> report) is submitted once; the training job is cancelled with a
plain `scancel` while it runs (every job after it is then cancelled by Slurm: afterok can never hold); the
same command is run again and must skip the finished data builds, resume training from its checkpoint and
finish the chain. Asserts every stage's outputs, the dependency order (no job starts before the jobs it
waits for end) and that a third invocation submits nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_helpers import job_field, wait_for_job, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STEPS = 30
SUITES = ("flores", "wmt22")
LABELS = ("7b-base", "7b", "7b-no-cross-lingual")


def _args(out: Path) -> list[str]:
    tiny = ["model.path=" + str(out / "model"), f"max_steps={STEPS}", "data.cache_dir=" + str(out / "token_cache"),
            "save_every=2", "eval_every=0", "log_every=1", "grad_accum=1", "data.max_length=128"]
    return [
        "--out", str(out), "--models", "7b", "--ablation", "no-cross-lingual", "--suites", ",".join(SUITES),
        "--recipe", "data/recipes/demo.yaml", "--shards", "2", "--build-override", "mix.target_total=300",
        "--build-override", "parallel.flores_demo.limit=40", "--build-cpus", "1", "--build-mem", "1G",
        "--build-time", "10", "--train-config", "data/recipes/train/tiny_cpu.yaml",
        *[x for o in tiny for x in ("--train-override", o)],
        "--flores-args", "--flores-dir eval/flores_sample --langs deu --directions en-x,x-en,zh-x,x-zh --limit 2 "
                         "--beams 1 --max-new-tokens 8 --batch-size 4 --no-progress",
        "--wmt22-args", "--wmt-dir eval/wmt22_sample --pairs en-zh,zh-en --limit 2 --beams 1 --max-new-tokens 8 "
                        "--batch-size 4 --no-progress",
        "--cpu", "2", "--eval-cpus", "1",
    ]


def _reproduce(out: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TORCH_EXTENSIONS_DIR=env.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")))
    res = subprocess.run([sys.executable, "-m", "bayling.reproduce", *_args(out)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _status(stdout: str) -> dict[str, str]:
    rows = [line.split() for line in stdout.splitlines() if line.startswith(("data/", "train/", "eval/", "report"))]
    return {r[0]: r[1] for r in rows}


def _logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted((out / "logs").glob("*")))


def test_one_command_runs_the_chain_and_a_rerun_resumes_after_a_cancelled_middle_job(slurm_cluster, tmp_path):
    out = tmp_path / "rp"
    first = _status(_reproduce(out))
    assert set(first.values()) == {"submitted"}, first
    chain = json.loads((out / "chain.json").read_text())
    train = chain["train/7b"]["job"]

    # Cancel the training job once it has checkpointed at least once (save_every=2).
    def saved_or_over() -> bool:
        return (out / "train" / "7b" / "checkpoints" / "latest").exists() or \
            job_field(train, "JobState") not in ("PENDING", "RUNNING")

    wait_until(saved_or_over, 420, f"training job {train} to save its first checkpoint", job_id=train)
    assert job_field(train, "JobState") == "RUNNING", _logs(out)
    # The data stages are over: check their order now, before Slurm forgets them (MinJobAge).
    train_start = job_field(train, "StartTime")
    for arm in ("full", "no-cross-lingual"):
        merge = chain[f"data/{arm}"]["job"]
        assert job_field(merge, "EndTime") <= train_start, f"training started before the {arm} merge ended"
        for i in range(2):  # the merge waited for every shard of its array
            assert job_field(f"{chain[f'data/{arm}']['array']}_{i}", "EndTime") <= job_field(merge, "StartTime")
    subprocess.run(["scancel", train], check=True, timeout=15)
    assert wait_for_job(train, 90) == "CANCELLED"
    wait_until(lambda: job_field(chain["report"]["job"], "JobState") == "CANCELLED", 60,
               "the dependent jobs to be cancelled (afterok can never hold)")
    assert not (out / "train" / "7b" / "final").exists()

    second = _status(_reproduce(out))
    assert second["data/full"] == "done" and second["data/no-cross-lingual"] == "done", second
    assert {k: v for k, v in second.items() if not k.startswith("data/")} == \
        {k: "submitted" for k in second if not k.startswith("data/")}
    chain2 = json.loads((out / "chain.json").read_text())
    state = wait_for_job(chain2["report"]["job"], 600)
    assert state == "COMPLETED", _logs(out)

    # every stage's outputs
    for arm in ("full", "no-cross-lingual"):
        manifest = json.loads((out / "data" / arm / "manifest.json").read_text())
        assert manifest["cross_lingual"] is (arm == "full")
    runs = {label: out / "train" / label for label in ("7b", "7b-no-cross-lingual")}
    for run in runs.values():
        assert (run / "final" / "bayling.json").is_file()
        steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
        assert max(steps) == STEPS  # the ablation trained for exactly the full arm's steps
    resumed = [p.read_text(errors="replace") for p in (out / "logs").glob("train-7b-[0-9]*.out")]
    assert any("resuming from" in text for text in resumed), _logs(out)
    for suite in SUITES:
        for label in LABELS:
            assert (out / "eval" / suite / label / "results.json").is_file(), (suite, label)
        assert (out / "compare" / f"{suite}-7b").is_dir()
    report = (out / "REPORT.md").read_text()
    for suite in SUITES:
        row = next(line for line in report.splitlines() if line.startswith(f"| 7b | {suite} |"))
        assert "| - |" not in row, row  # base, ours and the ablation all have a score

    # dependency order: no job started before the jobs it waits for had ended
    def times(job: str) -> tuple[str, str]:
        return job_field(job, "StartTime"), job_field(job, "EndTime")

    after = {"train/7b-no-cross-lingual": ["train/7b"], "report": [f"eval/{s}/{lb}" for s in SUITES for lb in LABELS]}
    after.update({f"eval/{s}/{lb}": [f"train/{lb if lb != '7b-base' else '7b'}"] for s in SUITES for lb in LABELS})
    ids = {k: v["job"] for k, v in chain2.items() if not k.startswith("data/")}
    for stage, ups in after.items():
        start = times(ids[stage])[0]
        for up in ups:
            assert times(ids[up])[1] <= start, f"{stage} started before {up} ended"

    third = _status(_reproduce(out))
    assert set(third.values()) == {"done"}, third
