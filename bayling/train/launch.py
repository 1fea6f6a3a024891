"""Per-node ``torchrun`` launch lines for a Slurm allocation, and the per-node runner the sbatch scripts use.

Why this exists. ``slurm/train_*.sh`` start ONE srun task per node; each task must start torchrun with the
same c10d rendezvous (endpoint = first host of the allocation, id = the job id) and ``nproc_per_node``
workers. Building those lines here, in plain Python from the SLURM_* variables, lets ``--dry-run`` print
them for any allocation (a fake 4-node one in the tests) and lets the real run execute exactly what the
dry run shows.

Why a preflight. A job that waited in the queue must fail once, with one line, before any process starts
on any node: :func:`preflight` checks processes per node against the allocation's GPUs (or CPUs) and runs
the trainer's one-process checks (``bayling-train --check``) on the batch node.

Why a runner between srun and torchrun. Slurm's ``--signal=USR1@180``, ``scancel --signal=USR1`` and a plain
``scancel`` (SIGTERM) signal EVERY process of the job step. torchrun would die on SIGUSR1 (default action)
and, on SIGTERM, give its workers 30 s before SIGKILL. :func:`run_node` starts torchrun with both ignored, so
only the trainer reacts (finish the step, save, exit), then exits with :data:`EXIT_REQUEUE` so the batch
script knows the run stopped on a signal.

    python -m bayling.train.launch --dry-run [--nproc-per-node 8] --config C.yaml -- key=value ...
    python -m bayling.train.launch --preflight [--nproc-per-node 8] --config C.yaml -- key=value ...
    python -m bayling.train.launch --run --nproc-per-node 8 --config C.yaml -- key=value ...
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.errors import ConfigError
from bayling.train.slurm_env import allocation_hosts, preview_env, processes_per_node, require_env

EXIT_REQUEUE = 75  # EX_TEMPFAIL: the trainer checkpointed on a signal; the job must be requeued
DEFAULT_PORT = 29500
TRAIN_MODULE = "bayling.cli.train"
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)  # the trainer checkpoints and exits on either
# torchrun's default set minus SIGTERM: on SIGTERM torchrun would SIGTERM its workers and SIGKILL them 30 s
# later, whatever the checkpoint needs; with SIGTERM ignored it waits for the workers like on SIGUSR1.
TORCHRUN_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"


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
    job_id = require_env(env, "SLURM_JOB_ID", "SLURM_JOBID")
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
            "--signals-to-handle", TORCHRUN_SIGNALS,
            "-m", module,
            "--config", config,
            "--resume", "auto",
            *extra_args,
        ]
        launches.append(NodeLaunch(rank, host, f"{master}:{port}", job_id, argv))
    return launches


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

    The batch script checks OUT/REQUEUE after the job step, because srun's exit code alone can be masked on
    a multi-node job (``--kill-on-bad-exit`` may kill a node's runner before it reports).
    """
    from bayling.config import load_config
    from bayling.train.config import TrainConfig

    return str(load_config(TrainConfig, config, list(overrides)).out)


def preflight(env: Mapping[str, str], requested: int | None, config: str, extra: Sequence[str],
              module: str = TRAIN_MODULE) -> tuple[int, int, str]:
    """Everything that can fail before the job step starts, once, on the batch node: (nproc, code, out).

    Processes per node against the allocation (:func:`processes_per_node`), the host list, then the
    trainer's own one-process checks (``bayling-train --check --world-size NODES*NPROC``: config, data,
    model, tokenizer, batch divisibility). A failure is ONE line and exit 2 here, instead of the same error
    from every worker on every node followed by torchrun's failure report.
    """
    nproc = processes_per_node(env, requested)
    hosts = allocation_hosts(env)
    world = nproc * len(hosts)
    cmd = [sys.executable, "-m", module, "--check", "--world-size", str(world), "--config", config, *extra]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    sys.stderr.write(res.stdout)  # the trainer's "checks passed (...)" line goes to the job log
    if res.returncode != 0:
        return nproc, res.returncode, ""
    return nproc, 0, train_out_dir(config, extra)


def descendant_pids(root: int) -> list[int]:
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

    SIGUSR1 and SIGTERM are ignored in torchrun (SIG_IGN is inherited across exec, and
    ``--signals-to-handle`` leaves SIGTERM out), so torchrun neither dies on SIGUSR1 nor cuts the
    workers' checkpoint short on SIGTERM. The trainer re-installs its own handlers: it finishes the step,
    saves a complete checkpoint, writes OUT/REQUEUE and exits 0, and torchrun then exits 0. Slurm signals
    every process of the step; this runner also forwards what it receives to the workers, in case only it
    was signalled. The time budget for a plain ``scancel`` is the cluster's KillWait (SIGKILL follows).
    """
    received: list[str] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # inherited by torchrun and its workers until the trainer's handlers
    print(f"launch: node {launch.node_rank} ({launch.host}): {launch.command}", flush=True)
    proc = subprocess.Popen(launch.argv)

    def forward(signum: int, _frame) -> None:
        received.append(signal.Signals(signum).name)
        for pid in descendant_pids(proc.pid):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    rc = proc.wait()
    if received and rc == 0:
        print(f"launch: node {launch.node_rank}: got {received[0]}; torchrun exited with {rc}; "
              f"exit {EXIT_REQUEUE} tells the batch script the trainer stopped on a signal", flush=True)
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
    mode.add_argument("--dry-run", action="store_true", help="print every node's command (the default); "
                      "outside an allocation it previews a one-node job on this host")
    mode.add_argument("--preflight", action="store_true",
                      help="on the batch node: processes per node vs the allocation, then `bayling-train --check`; "
                           "prints nproc=N and out=DIR on success, one error line and exit 2 otherwise")
    p.add_argument("--nproc-per-node", type=int, default=None,
                   help="processes per node (NPROC; default: the allocation's GPUs per node)")
    p.add_argument("--header-gpus", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--config", required=True)
    p.add_argument("--port", type=int, default=None, help=f"rendezvous port (MASTER_PORT, default {DEFAULT_PORT})")
    p.add_argument("--module", default=TRAIN_MODULE)
    p.add_argument("--torchrun", default=os.environ.get("TORCHRUN") or default_torchrun())
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then key=value overrides for bayling-train")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if args.preflight:
        nproc, code, out = preflight(os.environ, args.nproc_per_node, args.config, extra, args.module)
        if code == 0:
            print(f"nproc={nproc}\nout={out}")
        return code
    env = os.environ if args.run else preview_env(os.environ)
    nproc = processes_per_node(env, args.nproc_per_node, args.header_gpus)
    launches = node_launches(env, nproc, args.config, extra, port=args.port, module=args.module,
                             torchrun=args.torchrun)
    if not args.run:
        first = launches[0]
        print(f"# {len(launches)} node(s) x {nproc} process(es), job {first.job_id}, "
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
