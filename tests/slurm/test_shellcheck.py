"""Every shell script we ship (slurm/*.sh, scripts/*.sh) is shellcheck-clean, sourced files included."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*REPO.glob("slurm/*.sh"), *REPO.glob("scripts/*.sh")])


def test_there_are_scripts_to_check():
    names = {p.name for p in SCRIPTS}
    assert {"train_7b.sh", "train_8b.sh", "train_13b.sh", "common.sh", "eval.sh", "slurm_cluster.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        if os.environ.get("BAYLING_REQUIRE_SLURM"):
            pytest.fail("shellcheck is not installed (apt-get install shellcheck)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = subprocess.run(["shellcheck", "-x", str(script.relative_to(REPO))], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.name != "common.sh"], ids=lambda p: p.name)
def test_scripts_are_executable(script):
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(REPO)}"
