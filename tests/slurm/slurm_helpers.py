"""Helpers for the real-Slurm tests: submit, poll `scontrol show job` with timeouts (never hang)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE")


def job_field(job_id: str, name: str) -> str | None:
    """One field of `scontrol show job` (works without slurmdbd, unlike sacct); None once purged."""
    res = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=15)
    if res.returncode != 0:
        return None
    for token in res.stdout.split():
        key, _, value = token.partition("=")
        if key == name:
            return value
    return None


def wait_for_job(job_id: str, timeout: float, done=FINAL_STATES) -> str:
    """Poll `scontrol show job` until the job reaches a final state; cancel it and fail on timeout."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = job_field(job_id, "JobState")
        if state in done:
            return state
        time.sleep(1)
    subprocess.run(["scancel", job_id], capture_output=True, timeout=15)
    pytest.fail(f"Slurm job {job_id} did not finish within {timeout:.0f} s (last state {state}); cancelled it")


def wait_until(predicate, timeout: float, what: str, job_id: str | None = None) -> None:
    """Poll ``predicate`` until true; on timeout cancel ``job_id`` (never leave a job running) and fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    if job_id:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=15)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def sbatch(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Submit and return the job id (`sbatch --parsable`)."""
    res = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, cwd=cwd,
                         timeout=30)
    assert res.returncode == 0, f"sbatch failed: {res.stderr}"
    return res.stdout.strip().split(";")[0]
