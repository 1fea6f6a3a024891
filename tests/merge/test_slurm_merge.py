"""slurm/merge.sh: a dry run prints the exact bayling-merge command the job would run, and that command is real."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.hostile import assert_one_line_error, cli_env
from tests.merge.helpers import REPO


def dry_run(*args: str) -> subprocess.CompletedProcess:
    env = cli_env()
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(["bash", "slurm/merge.sh", "--dry-run", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_dry_run_prints_the_command_with_every_argument_quoted(tmp_path):
    proc = dry_run("--base", str(tmp_path / "no base"), "--experts", "e1", "e2", "--fitness", "flores:dev",
                   "--out", "o")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.endswith(r"-m bayling.cli.merge --base " + str(tmp_path).replace(" ", r"\ ") + r"/no\ base "
                         "--experts e1 e2 --fitness flores:dev --out o")
    # the printed line is a runnable command: running it reaches bayling-merge's own input checks
    ran = subprocess.run(["bash", "-c", line], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert_one_line_error(ran, "bayling-merge", "base model folder does not exist")


def test_no_arguments_is_one_line_error():
    proc = subprocess.run(["bash", "slurm/merge.sh"], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("merge.sh: error: no arguments")


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    res = subprocess.run(["shellcheck", "-x", "slurm/merge.sh"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
