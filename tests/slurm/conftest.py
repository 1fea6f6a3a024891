"""Fixtures for the real-Slurm tests: a running single-node cluster (scripts/slurm_cluster.sh).

Skip only when Slurm is not running AND BAYLING_REQUIRE_SLURM is unset; CI sets it, so there a missing
cluster is a failure, not a silent skip. When the daemons are installed and we are root, the fixture
starts the cluster itself (and stops it afterwards), so `make test` on such a machine exercises it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "slurm_cluster.sh"


def sinfo_ok() -> bool:
    """True when `sinfo` answers with at least one node that can run jobs."""
    if shutil.which("sinfo") is None:
        return False
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=15)
    except (subprocess.TimeoutExpired, OSError):
        return False
    states = res.stdout.split()
    return res.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in states)


def _can_start() -> bool:
    return os.geteuid() == 0 and shutil.which("slurmctld") is not None and shutil.which("slurmd") is not None


def _unavailable(reason: str) -> None:
    if os.environ.get("BAYLING_REQUIRE_SLURM"):
        pytest.fail(f"BAYLING_REQUIRE_SLURM is set but {reason}")
    pytest.skip(f"{reason}; start one with `sudo scripts/slurm_cluster.sh install && sudo "
                f"scripts/slurm_cluster.sh start` (set BAYLING_REQUIRE_SLURM=1 to make this a failure)")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A Slurm cluster that answers `sinfo`: the running one, or one this fixture starts and stops."""
    started = False
    if not sinfo_ok():
        if not _can_start():
            _unavailable("no Slurm cluster answers `sinfo` and the daemons cannot be started here")
        res = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not sinfo_ok():
            _unavailable(f"`scripts/slurm_cluster.sh start` failed: {res.stderr.strip()[-500:]}")
        started = True
    yield
    if started:
        subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=60)
