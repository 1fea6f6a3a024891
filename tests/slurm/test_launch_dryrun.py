"""The per-node launch lines for a (fake) multi-node allocation, and the runner's signal contract.

No Slurm needed: these use SLURM_* variables as Slurm sets them in a 4-node job, so a user can trust
`--dry-run` on a laptop, and the runner's SIGUSR1 -> checkpoint -> exit 75 contract is checked with a real
torchrun.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bayling.errors import ConfigError
from bayling.train.launch import EXIT_REQUEUE, descendant_pids, node_launches, this_node
from bayling.train.slurm_env import (
    allocation_hosts,
    expand_hostlist,
    preview_env,
    processes_per_node,
    slurm_present,
)

REPO = Path(__file__).resolve().parents[2]
FAKE_4 = {"SLURM_JOB_NODELIST": "gpu[01-04]", "SLURM_NNODES": "4", "SLURM_JOB_ID": "4242"}
TRAIN_SCRIPTS = ["train_7b.sh", "train_8b.sh", "train_13b.sh"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize(
    "spec, hosts",
    [
        ("gpu[01-04]", ["gpu01", "gpu02", "gpu03", "gpu04"]),
        ("a[1,3-4],b7", ["a1", "a3", "a4", "b7"]),
        ("r[1-2]n[08-10]", ["r1n08", "r1n09", "r1n10", "r2n08", "r2n09", "r2n10"]),
        ("node7", ["node7"]),
        ("x[098-101]", ["x098", "x099", "x100", "x101"]),
        ("gpu[1-2],cpu[3-4]", ["gpu1", "gpu2", "cpu3", "cpu4"]),
    ],
)
def test_hostlist_expansion(spec, hosts):
    assert expand_hostlist(spec) == hosts
    if shutil.which("scontrol") and Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).is_file():
        # our expansion must agree with Slurm's own (scontrol needs a config, else it retries for 60 s)
        res = subprocess.run(["scontrol", "show", "hostnames", spec], capture_output=True, text=True, timeout=30)
        assert res.stdout.split() == hosts, res.stderr


@pytest.mark.parametrize("spec", ["gpu[01-04", "gpu]1[", "gpu[4-1]", "gpu[a-b]", ""])
def test_bad_hostlist_is_a_config_error(spec):
    with pytest.raises(ConfigError):
        expand_hostlist(spec)


@pytest.mark.slurm
def test_where_slurm_is_present_scontrol_expands_the_host_list(slurm_cluster, monkeypatch):
    """With Slurm installed the allocation's hosts come from `scontrol show hostnames`, not our fallback."""
    import bayling.train.slurm_env as slurm_env

    def fallback_must_not_run(spec):
        raise AssertionError("the pure-Python expander ran although Slurm is present")

    monkeypatch.setattr(slurm_env, "expand_hostlist", fallback_must_not_run)
    assert slurm_present()
    assert allocation_hosts({"SLURM_JOB_NODELIST": "r[1-2]n[08-09]", "SLURM_NNODES": "4"}) == [
        "r1n08", "r1n09", "r2n08", "r2n09"]
    with pytest.raises(ConfigError, match="SLURM_NNODES"):
        allocation_hosts({"SLURM_JOB_NODELIST": "gpu[1-3]", "SLURM_NNODES": "2"})


@pytest.mark.parametrize("env, requested, expected", [
    ({"SLURM_GPUS_ON_NODE": "4"}, None, 4),
    ({"SLURM_GPUS_PER_NODE": "a100:8"}, None, 8),
    ({"SLURM_GPUS_PER_NODE": "gpu:h100:2"}, None, 2),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2"}, None, 3),
    ({"SLURM_GPUS_ON_NODE": "8", "CUDA_VISIBLE_DEVICES": "0"}, None, 8),  # the allocation wins
    ({"SLURM_GPUS_ON_NODE": "8"}, 4, 4),  # fewer processes than GPUs: allowed
    ({"SLURM_CPUS_ON_NODE": "2"}, 2, 2),  # CPU-only allocation: NPROC says it
    ({}, 3, 3),
])
def test_processes_per_node_default_to_the_allocations_gpus(env, requested, expected):
    assert processes_per_node(env, requested) == expected


@pytest.mark.parametrize("env, requested, message", [
    ({"SLURM_CPUS_ON_NODE": "2"}, None, "no GPUs"),  # a CPU job must say how many processes
    ({}, None, "--gpus-per-node=0"),
    ({"SLURM_GPUS_ON_NODE": "4"}, 8, "has 4 GPU"),
    ({"SLURM_CPUS_ON_NODE": "2"}, 3, "has 2 CPU"),
    ({"SLURM_GPUS_ON_NODE": "4"}, 0, ">= 1"),
    ({"SLURM_GPUS_PER_NODE": "lots"}, None, "GPU count"),
])
def test_processes_per_node_errors_name_nproc_and_the_allocation(env, requested, message):
    with pytest.raises(ConfigError, match=message):
        processes_per_node(env, requested)


def test_a_dry_run_needs_no_allocation():
    env = preview_env({})
    assert env["SLURM_JOB_ID"] == "dry-run" and env["SLURM_JOB_NODELIST"] == socket.gethostname().split(".")[0]
    launches = node_launches(env, processes_per_node(env, None, header_gpus=8), "c.yaml")
    assert len(launches) == 1 and _opt(launches[0].argv, "--nproc_per_node") == "8"
    # a node list without a job id (the case) previews too
    env = preview_env({"SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_NNODES": "2"})
    assert [n.host for n in node_launches(env, 8, "c.yaml")] == ["gpu01", "gpu02"]


def test_fake_four_node_allocation_gives_one_consistent_command_per_node():
    launches = node_launches(FAKE_4, 8, "data/recipes/train/x.yaml", ["out=/runs/x", "optim.lr=1e-5"])
    assert [n.node_rank for n in launches] == [0, 1, 2, 3]
    assert [n.host for n in launches] == ["gpu01", "gpu02", "gpu03", "gpu04"]
    for n in launches:
        argv = n.argv
        assert Path(argv[0]).name == "torchrun"
        assert _opt(argv, "--nnodes") == "4"
        assert _opt(argv, "--nproc_per_node") == "8"
        assert _opt(argv, "--rdzv_backend") == "c10d"
        assert _opt(argv, "--rdzv_endpoint") == "gpu01:29500"  # every node meets at the first host
        assert _opt(argv, "--rdzv_id") == "4242"
        assert _opt(argv, "--local_addr") == n.host
        assert argv[argv.index("-m") + 1] == "bayling.cli.train"
        assert argv[-6:] == ["--config", "data/recipes/train/x.yaml", "--resume", "auto", "out=/runs/x",
                             "optim.lr=1e-5"]
    assert len({n.command for n in launches}) == 4  # distinct per node (local address)


def test_master_addr_and_port_from_environment_win():
    env = {**FAKE_4, "MASTER_ADDR": "gpu03", "MASTER_PORT": "31000"}
    assert {_opt(n.argv, "--rdzv_endpoint") for n in node_launches(env, 8, "c.yaml")} == {"gpu03:31000"}


def test_allocation_errors_name_the_variable():
    with pytest.raises(ConfigError, match="SLURM_NNODES"):
        node_launches({**FAKE_4, "SLURM_NNODES": "3"}, 8, "c.yaml")
    with pytest.raises(ConfigError, match="SLURM_JOB_NODELIST"):
        node_launches({"SLURM_NNODES": "1", "SLURM_JOB_ID": "1"}, 8, "c.yaml")
    with pytest.raises(ConfigError, match="SLURM_JOB_ID"):
        node_launches({"SLURM_JOB_NODELIST": "a1"}, 8, "c.yaml")


def test_this_node_follows_slurm_nodeid():
    launches = node_launches(FAKE_4, 8, "c.yaml")
    assert this_node(launches, {"SLURM_NODEID": "2"}).host == "gpu03"
    with pytest.raises(ConfigError, match="SLURM_NODEID"):
        this_node(launches, {"SLURM_NODEID": "4"})


def _dry_run(script: str, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(FAKE_4)
    env.update(extra_env or {})
    return subprocess.run(["bash", str(REPO / "slurm" / script), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)


@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_sbatch_script_dry_run_prints_the_four_node_launch(script):
    res = _dry_run(script, "--dry-run", "max_steps=5", "out=/tmp/run a")
    assert res.returncode == 0, res.stderr
    lines = [shlex.split(x) for x in res.stdout.splitlines() if x and not x.startswith("#")]
    assert len(lines) == 4
    assert [_opt(a, "--local_addr") for a in lines] == ["gpu01", "gpu02", "gpu03", "gpu04"]
    assert {_opt(a, "--rdzv_endpoint") for a in lines} == {"gpu01:29500"}
    assert {_opt(a, "--rdzv_id") for a in lines} == {"4242"}
    assert {_opt(a, "--nproc_per_node") for a in lines} == {"8"}
    config = _opt(lines[0], "--config")
    assert Path(config).is_file(), f"{script} defaults to a config that does not exist: {config}"
    assert lines[0][-4:] == ["--resume", "auto", "max_steps=5", "out=/tmp/run a"]


def test_each_model_script_trains_its_own_config():
    configs = set()
    for script in TRAIN_SCRIPTS:
        res = _dry_run(script, "--dry-run")
        assert res.returncode == 0, res.stderr
        first = next(shlex.split(x) for x in res.stdout.splitlines() if x and not x.startswith("#"))
        configs.add(_opt(first, "--config"))
    assert len(configs) == 3


def test_dry_run_env_overrides():
    res = _dry_run("train_7b.sh", extra_env={"DRY_RUN": "1", "NPROC": "2", "CONFIG": "my.yaml",
                                             "MASTER_PORT": "29999"})
    assert res.returncode == 0, res.stderr
    lines = [shlex.split(x) for x in res.stdout.splitlines() if x and not x.startswith("#")]
    assert {_opt(a, "--nproc_per_node") for a in lines} == {"2"}
    assert {_opt(a, "--config") for a in lines} == {"my.yaml"}
    assert {_opt(a, "--rdzv_endpoint") for a in lines} == {"gpu01:29999"}


@pytest.mark.parametrize("env", [{}, {"SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_NNODES": "2"}], ids=["bare", "no-job-id"])
def test_script_dry_run_works_outside_an_allocation(env):
    """No SLURM_JOB_ID needed: a laptop previews the script's own header (8 GPUs per node)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    res = subprocess.run(["bash", str(REPO / "slurm" / "train_13b.sh"), "--dry-run"], capture_output=True,
                         text=True, env={**clean, **env}, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [shlex.split(x) for x in res.stdout.splitlines() if x and not x.startswith("#")]
    assert len(lines) == (2 if env else 1)
    assert {_opt(a, "--nproc_per_node") for a in lines} == {"8"}
    assert {_opt(a, "--rdzv_id") for a in lines} == {"dry-run"}


def test_outside_a_job_without_dry_run_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    res = subprocess.run(["bash", str(REPO / "slurm" / "train_7b.sh")], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=60)
    assert res.returncode == 2
    assert "not inside a Slurm job" in res.stderr
    assert "Traceback" not in res.stderr


def test_eval_script_dry_run_passes_arguments_through():
    res = _dry_run("eval.sh", "--dry-run", "--suite", "flores", "--model", "dir with space", "--out", "o")
    assert res.returncode == 0, res.stderr
    argv = shlex.split(res.stdout)
    assert argv[1:4] == ["-m", "bayling.cli.evaluate", "--suite"]
    assert _opt(argv, "--model") == "dir with space"


STAND_IN = '''
import os, signal, sys, time
got = []
for sig in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(sig, lambda s, f: got.append(s))
open(os.environ["MARK"] + f".ready{os.environ['RANK']}", "w").close()
for _ in range(300):
    if got:
        time.sleep(1.0)  # "saving a checkpoint": torchrun must not kill us meanwhile
        open(os.environ["MARK"] + f".saved{os.environ['RANK']}", "w").write(str(got[0]))
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
'''


@pytest.mark.slow  # starts torchrun
@pytest.mark.parametrize("sig, whom", [
    (signal.SIGUSR1, "runner"),   # only the runner signalled: it forwards to the workers
    (signal.SIGUSR1, "all"),      # Slurm's --signal=USR1@N / scancel --signal=USR1: every process of the step
    (signal.SIGTERM, "all"),      # a plain scancel: every process, torchrun included, gets SIGTERM
])
def test_runner_lets_workers_checkpoint_on_a_stop_signal_and_reports_it(tmp_path, sig, whom):
    """The workers get the signal, torchrun neither dies (SIGUSR1) nor cuts the save short and fails
    (SIGTERM: torchrun's own handler would stop the workers and exit non-zero), and the runner exits 75.

    The worker is a stand-in that follows the trainer's contract (handler sets a flag, save, exit 0),
    so this checks the runner and torchrun, independent of the trainer.
    """
    (tmp_path / "standin_worker.py").write_text(STAND_IN)
    mark = tmp_path / "mark"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_JOB_NODELIST="localhost", SLURM_NNODES="1", SLURM_JOB_ID="7", SLURM_NODEID="0",
               MARK=str(mark), PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "bayling.train.launch", "--run", "--nproc-per-node", "2",
                             "--config", "unused.yaml", "--module", "standin_worker", "--port", str(_free_port())],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"mark.ready{r}").exists() for r in (0, 1)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
            time.sleep(0.2)
        for pid in [proc.pid, *(descendant_pids(proc.pid) if whom == "all" else [])]:
            os.kill(pid, sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_REQUEUE, out
    for rank in (0, 1):
        assert (tmp_path / f"mark.saved{rank}").read_text() == str(int(sig)), out
    assert f"got {sig.name}" in out
