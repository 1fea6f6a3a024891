"""What a Slurm allocation holds, read from its SLURM_* variables: hosts, GPUs, processes per node.

Why a module of its own: :mod:`bayling.train.launch` builds and runs the per-node torchrun lines; reading
the allocation (host-list expansion with or without ``scontrol``, GPU counts in Slurm's ``[type:]count``
forms, the processes-per-node rule) is a separate concern that the dry run, the preflight and the runner
all share, and that the tests exercise with fake environments.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bayling.errors import ConfigError

_BRACKET = re.compile(r"(\[[^\]]*\])")
_HOSTLIST_ITEM = re.compile(r"(?:[^,\[\]]|\[[^\[\]]*\])+")  # one comma-separated item, brackets balanced


def _expand_range(body: str, spec: str) -> list[str]:
    """'01-03,7' -> ['01', '02', '03', '7']; zero padding follows the width of the range start."""
    out: list[str] = []
    for item in body.split(","):
        item = item.strip()
        lo, sep, hi = item.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ConfigError(f"bad range {item!r} in host list {spec!r}", field="SLURM_JOB_NODELIST")
        if not sep:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise ConfigError(f"descending range {item!r} in host list {spec!r}", field="SLURM_JOB_NODELIST")
        out.extend(str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))
    return out


def expand_hostlist(spec: str) -> list[str]:
    """Slurm hostlist expansion in pure Python (what ``scontrol show hostnames`` prints).

    Handles 'gpu[01-04]', 'a[1,3-4],b7', several bracket groups ('r[1-2]n[1-2]' -> r1n1 r1n2 r2n1 r2n2).
    Used only where scontrol is absent (a dry run on a laptop), so a preview needs no Slurm install.
    """
    items = _HOSTLIST_ITEM.findall(spec)
    if not items or ",".join(items) != spec.strip():  # an unbalanced bracket leaves characters unmatched
        raise ConfigError(f"malformed host list {spec!r}", field="SLURM_JOB_NODELIST")
    hosts: list[str] = []
    for item in items:
        expanded = [""]
        for part in _BRACKET.split(item):  # literal, range body, literal, ...
            choices = _expand_range(part[1:-1], spec) if part.startswith("[") else [part]
            expanded = [e + c for e in expanded for c in choices]
        hosts.extend(expanded)
    return hosts


def require_env(env: Mapping[str, str], *names: str) -> str:
    """The first of ``names`` set in ``env``; none set -> one-line error (not inside an allocation)."""
    for name in names:
        if env.get(name):
            return env[name]
    raise ConfigError("not set: run inside a Slurm allocation (sbatch/salloc) or pass --dry-run to preview a launch",
                      field=names[0])


def slurm_present(env: Mapping[str, str] = os.environ) -> bool:
    """True when ``scontrol`` can answer here (binary on PATH and a config file): then Slurm expands host lists.

    Without a config, scontrol retries for a minute before failing, so a laptop dry run never calls it.
    """
    return shutil.which("scontrol") is not None and Path(env.get("SLURM_CONF", "/etc/slurm/slurm.conf")).is_file()


def scontrol_hostnames(spec: str) -> list[str]:
    """``scontrol show hostnames SPEC``: Slurm's own expansion, one host per line."""
    try:
        res = subprocess.run(["scontrol", "show", "hostnames", spec], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as err:
        raise ConfigError(f"`scontrol show hostnames {spec}` did not answer in 30 s", field="SLURM_JOB_NODELIST") from err
    hosts = res.stdout.split()
    if res.returncode != 0 or not hosts:
        reason = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no hosts"
        raise ConfigError(f"`scontrol show hostnames {spec}` failed: {reason}", field="SLURM_JOB_NODELIST")
    return hosts


def allocation_hosts(env: Mapping[str, str]) -> list[str]:
    """Host names of the allocation, checked against SLURM_NNODES when that is set.

    Slurm expands the list where it is installed (``scontrol show hostnames``); the pure-Python
    :func:`expand_hostlist` is the fallback for a dry run on a machine without Slurm (a laptop previewing a
    4-node launch), tested against scontrol wherever both exist.
    """
    spec = require_env(env, "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    hosts = scontrol_hostnames(spec) if slurm_present(env) else expand_hostlist(spec)
    nnodes = env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES")
    if nnodes and int(nnodes) != len(hosts):
        raise ConfigError(f"is {nnodes} but the node list names {len(hosts)} hosts ({','.join(hosts)})",
                          field="SLURM_NNODES")
    return hosts


def preview_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a dry run previews: the given SLURM_* variables, else a one-node job on this host.

    A dry run needs no allocation: a missing node list means this host, a missing job id the placeholder
    ``dry-run``, a missing node count the length of the list.
    """
    out = dict(env)
    if not (out.get("SLURM_JOB_NODELIST") or out.get("SLURM_NODELIST")):
        out["SLURM_JOB_NODELIST"] = socket.gethostname().split(".")[0]
        out.pop("SLURM_NNODES", None)
    if not (out.get("SLURM_JOB_ID") or out.get("SLURM_JOBID")):
        out["SLURM_JOB_ID"] = "dry-run"
    return out


def _count(value: str, field: str) -> int:
    """'8', 'a100:8' or 'gpu:a100:8' (Slurm's [type:]count) -> 8."""
    count = value.strip().split("(")[0].rsplit(":", 1)[-1]
    if not count.isdigit():
        raise ConfigError(f"cannot read a GPU count from {value!r}", field=field)
    return int(count)


def allocation_gpus(env: Mapping[str, str]) -> tuple[int, str] | None:
    """GPUs this node of the allocation has, and the variable that said so; None when nothing says.

    SLURM_GPUS_ON_NODE (set by slurmd for a GPU allocation) first, then SLURM_GPUS_PER_NODE (the request),
    then CUDA_VISIBLE_DEVICES (what the processes will see). A CPU-only allocation sets none of them.
    """
    for name in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        if env.get(name):
            return _count(env[name], name), name
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() not in ("", "-1", "NoDevFiles"):
        return len([d for d in visible.split(",") if d.strip()]), "CUDA_VISIBLE_DEVICES"
    return None


def processes_per_node(env: Mapping[str, str], requested: int | None, header_gpus: int | None = None) -> int:
    """torchrun processes per node: NPROC when set (checked against the allocation), else one per GPU.

    A GPU allocation defaults to its GPUs and refuses more processes than GPUs. A CPU-only allocation
    (``--gpus-per-node=0``: a test cluster) has no GPU count, so NPROC must say how many processes to start;
    it is checked against SLURM_CPUS_ON_NODE. ``header_gpus`` (the script's ``#SBATCH --gpus-per-node``, given
    by a dry run only) stands in for the allocation a preview does not have.
    """
    gpus = allocation_gpus(env)
    if gpus is None and header_gpus is not None:
        gpus = (header_gpus, "#SBATCH --gpus-per-node")
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"must be >= 1, got {requested}", field="NPROC")
        if gpus and gpus[0] and requested > gpus[0]:
            raise ConfigError(f"asks for {requested} processes per node but the allocation has {gpus[0]} GPU(s) "
                              f"per node ({gpus[1]}); lower NPROC or raise --gpus-per-node", field="NPROC")
        cpus = env.get("SLURM_CPUS_ON_NODE", "")
        if not (gpus and gpus[0]) and cpus.isdigit() and requested > int(cpus):
            raise ConfigError(f"asks for {requested} CPU processes per node but the allocation has {cpus} CPU(s) "
                              f"per node (SLURM_CPUS_ON_NODE); raise --cpus-per-task or lower NPROC", field="NPROC")
        return requested
    if gpus and gpus[0]:
        return gpus[0]
    raise ConfigError("is not set and the allocation has no GPUs: for a CPU-only job set NPROC=N processes per "
                      "node and submit with --gpus-per-node=0 --cpus-per-task=N (docs/slurm.md)", field="NPROC")
