"""slurm/build_data.sh on a real single-node Slurm: an array of `--shard I/N` builds, then a dependent
merge, produces exactly the data directory a single-machine `bayling-build-data` build produces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_helpers import job_field, wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "data" / "recipes" / "demo.yaml"
# Small enough for the Slurm test budget; the same overrides go to both builds.
OVERRIDES = ["mix.target_total=1500"]
SHARDS = 2


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
    return env


def test_slurm_array_build_then_merge_equals_single_machine_build(slurm_cluster, tmp_path):
    if not RECIPE.is_file():
        pytest.fail(f"{RECIPE.relative_to(REPO)} is missing (the demo recipe the data builder ships)")
    out, work = tmp_path / "sharded", tmp_path / "work"
    res = subprocess.run(["bash", str(REPO / "slurm" / "build_data.sh"), "--recipe", str(RECIPE), "--out", str(out),
                          "--shards", str(SHARDS), "--work", str(work), "--cpus", "1", "--mem", "2G",
                          "--time", "10", *OVERRIDES], cwd=REPO, env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    ids = dict(line.split("=", 1) for line in res.stdout.splitlines() if line.startswith(("ARRAY_", "MERGE_")))
    array_id, merge_id = ids["ARRAY_JOB_ID"], ids["MERGE_JOB_ID"]

    # The single-machine reference build runs here while the Slurm jobs run (saves wall time).
    single = tmp_path / "single"
    res = subprocess.run([sys.executable, "-m", "bayling.cli.build_data", "--no-progress", "--recipe", str(RECIPE),
                          "--out", str(single), *OVERRIDES], cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=180)
    if res.returncode != 0:
        subprocess.run(["scancel", array_id, merge_id], capture_output=True, timeout=15)
    assert res.returncode == 0, res.stderr[-3000:]

    state = wait_for_job(merge_id, 150)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted((work / "logs").glob("*.out")))
    assert state == "COMPLETED", f"merge job {merge_id} ended {state}\n{logs}"
    merge_start = job_field(merge_id, "StartTime")
    for i in range(SHARDS):
        task = f"{array_id}_{i}"
        assert job_field(task, "JobState") == "COMPLETED", logs
        assert job_field(task, "EndTime") <= merge_start, "the merge started before a shard finished"
        assert (work / f"shard-{i}").is_dir(), logs

    expected, got = _files(single), _files(out)
    assert sorted(got) == sorted(expected)
    assert any(name.startswith("train/") for name in got)
    different = [name for name in expected if got[name] != expected[name]]
    assert not different, f"sharded build differs from the single-machine build in {different}"
