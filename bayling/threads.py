"""CPU thread settings that degrade gracefully on shared machines (issue 14.8).

Why: torch's intra-op pool is OpenMP (libgomp). By default its threads spin at the end of every parallel
region waiting for the others; on a machine where other processes hold the cores (a shared login node, a
cluster node with co-located jobs, 5 helpers on 2 cores) a spinning thread burns the time slice the thread
it waits for needs, and small-op workloads such as generation slow down many-fold (the demo's untrained
evaluation: 1,058 s instead of about a minute). Two settings fix it:

- ``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep instead of spinning. libgomp reads it ONCE, when torch
  is first imported, so :func:`set_wait_policy` runs when ``bayling.cli`` is imported, before any entry
  point imports torch (child processes inherit it). A value the user set is kept.
- intra-op threads = the CPUs this process may use: its affinity mask, capped by Slurm's
  ``SLURM_CPUS_PER_TASK``, divided by the processes torchrun started on this node (``LOCAL_WORLD_SIZE``),
  instead of every core of the node. ``OMP_NUM_THREADS`` (set by the user, or by torchrun) wins.

Measured quiet vs loaded in BENCHMARKS.md ("CPU work under contention").
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def cpu_budget(env: MutableMapping[str, str] | None = None) -> int:
    """CPUs this process should use: affinity, capped by SLURM_CPUS_PER_TASK, shared by local ranks."""
    env = os.environ if env is None else env
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    slurm = env.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    local = env.get("LOCAL_WORLD_SIZE", "")
    procs = int(local) if local.isdigit() and int(local) > 0 else 1
    return max(1, cpus // procs)


def torch_threads(env: MutableMapping[str, str] | None = None) -> int:
    """Intra-op threads: an explicit ``OMP_NUM_THREADS`` (user or torchrun), else :func:`cpu_budget`."""
    env = os.environ if env is None else env
    explicit = env.get("OMP_NUM_THREADS", "")
    return int(explicit) if explicit.isdigit() and int(explicit) > 0 else cpu_budget(env)


def set_wait_policy(env: MutableMapping[str, str] | None = None) -> str:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set; effective only if torch (libgomp) is not loaded yet."""
    env = os.environ if env is None else env
    return env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configure_torch() -> int:
    """Set torch's intra-op threads to :func:`torch_threads`; returns the number."""
    import torch

    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
