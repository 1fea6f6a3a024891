"""Per-node ``torchrun`` launch lines for a Slurm allocation, and the per-node runner the sbatch scripts use.

Why this exists. ``slurm/train_*.sh`` start ONE srun task per node; each task must start torchrun with the
same c10d rendezvous (endpoint = first host of the allocation, id = the job id) and ``nproc_per_node``
workers. Building those lines here, in plain Python from the SLURM_* variables, lets ``--dry-run`` print
them for any allocation (a fake 4-node one in the tests) and lets the real run execute exactly what the
dry run shows.

Why a runner between srun and torchrun. Slurm's ``--signal=USR1@180`` and ``scancel --signal=USR1`` signal
EVERY process of the job step. torchrun does not handle SIGUSR1, so it would die on the default action and
take its workers with it mid-checkpoint. :func:`run_node` starts torchrun with SIGUSR1 ignored (the trainer
installs its own handler), forwards the signal to the workers (in case only this process was signalled),
waits for the trainer to checkpoint and exit, then exits with :data:`EXIT_REQUEUE` so the batch script
knows to ``scontrol requeue`` the job.

    python -m bayling.train.launch --dry-run --nproc-per-node 8 --config C.yaml -- key=value ...
    python -m bayling.train.launch --run --nproc-per-node 8 --config C.yaml -- key=value ...
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.errors import ConfigError

EXIT_REQUEUE = 75  # EX_TEMPFAIL: the trainer checkpointed on a signal; the job must be requeued
DEFAULT_PORT = 29500
TRAIN_MODULE = "bayling.cli.train"

_BRACKET = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True)
class NodeLaunch:
    """What one node runs: its rank in the allocation, its host name and the torchrun argv."""

    node_rank: int
    host: str
    endpoint: str
    job_id: str
    argv: list[str]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def split_top_level(spec: str) -> list[str]:
    """Split a Slurm hostlist on commas that are not inside brackets: 'a[1,3],b' -> ['a[1,3]', 'b']."""
    parts, depth, cur = [], 0, []
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unbalanced ']' in host list {spec!r}", field="SLURM_JOB_NODELIST")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ConfigError(f"unbalanced '[' in host list {spec!r}", field="SLURM_JOB_NODELIST")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


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
    Used when scontrol is absent (a dry run on a laptop) so the preview needs no Slurm install.
    """
    hosts: list[str] = []
    for item in split_top_level(spec):
        expanded = [""]
        pos = 0
        for m in _BRACKET.finditer(item):
            prefix = item[pos:m.start()]
            expanded = [e + prefix + r for e in expanded for r in _expand_range(m.group(1), spec)]
            pos = m.end()
        expanded = [e + item[pos:] for e in expanded]
        hosts.extend(expanded)
    if not hosts:
        raise ConfigError(f"empty host list {spec!r}", field="SLURM_JOB_NODELIST")
    return hosts


def _require(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        if env.get(name):
            return env[name]
    raise ConfigError("not set: run inside a Slurm allocation (sbatch/salloc) or set it to preview a launch",
                      field=names[0])


def allocation_hosts(env: Mapping[str, str]) -> list[str]:
    """Host names of the allocation, checked against SLURM_NNODES when that is set."""
    hosts = expand_hostlist(_require(env, "SLURM_JOB_NODELIST", "SLURM_NODELIST"))
    nnodes = env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES")
    if nnodes and int(nnodes) != len(hosts):
        raise ConfigError(f"is {nnodes} but the node list names {len(hosts)} hosts ({','.join(hosts)})",
                          field="SLURM_NNODES")
    return hosts


def node_launches(env: Mapping[str, str], nproc_per_node: int, config: str, extra_args: Sequence[str] = (),
                  *, port: int | None = None, module: str = TRAIN_MODULE,
                  torchrun: str = "torchrun") -> list[NodeLaunch]:
    """One :class:`NodeLaunch` per node, in node-rank order (SLURM_NODEID of the srun task on that host).

    Every node gets the same rendezvous (endpoint = MASTER_ADDR or the first host, id = SLURM_JOB_ID), so
    the c10d rendezvous joins them into one job; ``--local_addr`` makes each node advertise its Slurm host
    name, which is the name the other nodes can resolve.
    """
    if nproc_per_node < 1:
        raise ConfigError(f"must be >= 1, got {nproc_per_node}", field="NPROC")
    hosts = allocation_hosts(env)
    job_id = _require(env, "SLURM_JOB_ID", "SLURM_JOBID")
    master = env.get("MASTER_ADDR") or hosts[0]
    port = port or int(env.get("MASTER_PORT") or DEFAULT_PORT)
    launches = []
    for rank, host in enumerate(hosts):
        argv = [
            torchrun,
            "--nnodes", str(len(hosts)),
            "--nproc_per_node", str(nproc_per_node),
            "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"{master}:{port}",
            "--rdzv_id", job_id,
            "--local_addr", host,
            "-m", module,
            "--config", config,
            "--resume", "auto",
            *extra_args,
        ]
        launches.append(NodeLaunch(rank, host, f"{master}:{port}", job_id, argv))
    return launches


def node_commands(env: Mapping[str, str], nproc_per_node: int, config: str,
                  extra_args: Sequence[str] = (), **kw) -> list[str]:
    """The shell-quoted command line of every node, in node-rank order (what ``--dry-run`` prints)."""
    return [launch.command for launch in node_launches(env, nproc_per_node, config, extra_args, **kw)]


def this_node(launches: Sequence[NodeLaunch], env: Mapping[str, str]) -> NodeLaunch:
    """The launch of the node this srun task runs on: SLURM_NODEID, else the host name."""
    if env.get("SLURM_NODEID"):
        rank = int(env["SLURM_NODEID"])
        if not 0 <= rank < len(launches):
            raise ConfigError(f"{rank} is outside the allocation of {len(launches)} nodes", field="SLURM_NODEID")
        return launches[rank]
    host = os.uname().nodename.split(".")[0]
    for launch in launches:
        if launch.host == host:
            return launch
    raise ConfigError(f"this host ({host}) is not in the allocation", field="SLURM_NODEID")


def train_out_dir(config: str, overrides: Sequence[str]) -> str:
    """The run's output folder (``out``) as bayling-train resolves it: where OUT/REQUEUE will appear.

    The batch script reads it before starting the job step (a bad config fails there, on one node, with
    one line) and checks OUT/REQUEUE afterwards, because srun's exit code alone can be masked on a
    multi-node job (``--kill-on-bad-exit`` may kill a node's runner before it reports).
    """
    from bayling.config import load_config
    from bayling.train.config import TrainConfig

    return str(load_config(TrainConfig, config, list(overrides)).out)


def _descendants(root: int) -> list[int]:
    """Pids of every process below ``root`` (Linux /proc), so a signal can reach torchrun's workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def run_node(launch: NodeLaunch) -> int:
    """Run this node's torchrun; return its exit code, or EXIT_REQUEUE when it exited cleanly after a signal.

    SIGUSR1 is ignored in torchrun (inherited SIG_IGN across exec) but the trainer re-installs its own
    handler, so only the trainer reacts: it finishes the step, saves a complete checkpoint and exits.
    """
    received: list[str] = []
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # inherited by torchrun: it must survive the signal
    print(f"launch: node {launch.node_rank} ({launch.host}): {launch.command}", flush=True)
    proc = subprocess.Popen(launch.argv)

    def forward(signum: int, _frame) -> None:
        received.append(signal.Signals(signum).name)
        targets = _descendants(proc.pid) if signum == signal.SIGUSR1 else [proc.pid]
        for pid in targets:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGUSR1, forward)
    signal.signal(signal.SIGTERM, forward)
    rc = proc.wait()
    if received and rc == 0:
        print(f"launch: node {launch.node_rank}: got {received[0]}; torchrun exited with {rc}; "
              f"exit {EXIT_REQUEUE} asks the batch script to requeue the job", flush=True)
        return EXIT_REQUEUE
    return rc


def default_torchrun() -> str:
    """The torchrun of the running interpreter's environment (the venv need not be activated)."""
    beside = Path(sys.executable).with_name("torchrun")
    return str(beside) if beside.is_file() else "torchrun"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bayling.train.launch", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="execute this node's torchrun (inside an srun task)")
    mode.add_argument("--dry-run", action="store_true", help="print every node's command (the default)")
    mode.add_argument("--print-out-dir", action="store_true",
                      help="print the training run's output folder (config + overrides) and exit")
    p.add_argument("--nproc-per-node", type=int, required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--port", type=int, default=None, help=f"rendezvous port (MASTER_PORT, default {DEFAULT_PORT})")
    p.add_argument("--module", default=TRAIN_MODULE)
    p.add_argument("--torchrun", default=os.environ.get("TORCHRUN") or default_torchrun())
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then key=value overrides for bayling-train")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if args.print_out_dir:
        print(train_out_dir(args.config, extra))
        return 0
    launches = node_launches(os.environ, args.nproc_per_node, args.config, extra, port=args.port,
                             module=args.module, torchrun=args.torchrun)
    if not args.run:
        first = launches[0]
        print(f"# {len(launches)} node(s) x {args.nproc_per_node} process(es), job {first.job_id}, "
              f"rendezvous {first.endpoint}; one srun task per node runs:")
        for launch in launches:
            print(f"# node {launch.node_rank}: {launch.host}")
            print(launch.command)
        return 0
    if shutil.which(args.torchrun) is None:
        raise ConfigError(f"{args.torchrun!r} not found on PATH (activate the venv before sbatch)", field="TORCHRUN")
    return run_node(this_node(launches, os.environ))


if __name__ == "__main__":
    from bayling.cli import run_cli

    sys.exit(run_cli("bayling-launch", main, sys.argv[1:]))
