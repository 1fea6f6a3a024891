"""Thread settings for shared machines (issue 14.8): threads from this process's CPU allocation, and OpenMP
threads that sleep instead of spinning, set before torch loads OpenMP."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bayling.threads import cpu_budget, set_wait_policy, torch_threads


@pytest.fixture
def eight_cpus(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))


@pytest.mark.parametrize("env, expected", [
    ({}, 8),
    ({"SLURM_CPUS_PER_TASK": "4"}, 4),                       # the Slurm allocation, not the node
    ({"SLURM_CPUS_PER_TASK": "32"}, 8),                      # never more than the affinity mask
    ({"LOCAL_WORLD_SIZE": "2"}, 4),                          # torchrun's ranks on this node share the CPUs
    ({"SLURM_CPUS_PER_TASK": "4", "LOCAL_WORLD_SIZE": "2"}, 2),
    ({"LOCAL_WORLD_SIZE": "16"}, 1),                         # at least one
    ({"SLURM_CPUS_PER_TASK": "", "LOCAL_WORLD_SIZE": "x"}, 8),  # unusable values are ignored
])
def test_cpu_budget(eight_cpus, env, expected):
    assert cpu_budget(env) == expected


def test_an_explicit_omp_num_threads_wins(eight_cpus):
    assert torch_threads({"OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "4"}) == 3
    assert torch_threads({"OMP_NUM_THREADS": "0", "SLURM_CPUS_PER_TASK": "4"}) == 4


def test_wait_policy_is_passive_unless_the_user_chose_one():
    env: dict[str, str] = {}
    assert set_wait_policy(env) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert set_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_entry_points_set_the_policy_before_torch_is_loaded():
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: bayling.cli must set it with torch not loaded."""
    code = ("import os, sys\nos.environ.pop('OMP_WAIT_POLICY', None)\nimport bayling.cli.evaluate, bayling.cli.chat\n"
            "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "PASSIVE"]


def test_cpu_generation_uses_the_allocation_not_every_core(tiny_llama2, monkeypatch):
    from bayling.eval.generate import HFGenerator

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    try:
        torch.set_num_threads(2)
        HFGenerator(str(tiny_llama2), device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
