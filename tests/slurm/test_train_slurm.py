"""`sbatch slurm/train_7b.sh` on a real single-node Slurm cluster, with a tiny-CPU override.

(a) The job trains to completion as a 2-process torchrun job (one srun task, NPROC=2, no GPU).
(b) `scancel --signal=USR1 JOBID` mid-run: the trainer checkpoints and exits, the batch script requeues
    the job, and the requeued job resumes and ends with the same losses as the uninterrupted run (a).
(c) a plain `scancel JOBID` (SIGTERM to every process, SIGKILL after KillWait): the trainer still saves a
    checkpoint; the job is cancelled, and resubmitting the same command resumes to the same losses.
(d) the preflight: a bad override, or a process count the allocation cannot hold, fails the job once with
    one line and exit 2 before any srun step starts.

The tiny model, data and outputs live in a temporary folder the job shares with the test (same machine).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from slurm_helpers import job_field, sbatch, wait_for_job, wait_until

pytestmark = [pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "slurm" / "train_7b.sh"
CONFIG = REPO / "data" / "recipes" / "train" / "tiny_cpu.yaml"
DATA = REPO / "tests" / "train" / "fixtures" / "instruct"
MAX_STEPS = 8
JOB_TIMEOUT = 420  # generous: on a loaded 2-core machine a 2-process tiny run took > 150 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _train_records(run: Path) -> dict[int, float]:
    """step -> training loss from metrics.jsonl (a resumed run appends; a re-logged step must agree)."""
    path = run / "metrics.jsonl"
    out: dict[int, float] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "loss" in rec and "event" not in rec:
            out[rec["step"]] = rec["loss"]
    return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Data and the tiny model's home, shared by both jobs (the model is built once, by the first job)."""
    root = tmp_path_factory.mktemp("slurm_train")
    shutil.copytree(DATA, root / "data")
    return root


def submit_train(shared: Path, run_name: str, log_name: str | None = None) -> tuple[str, Path, Path]:
    """sbatch slurm/train_7b.sh with CONFIG=tiny_cpu, NPROC=2 and overrides; returns (job id, run dir, log)."""
    run = shared / run_name
    log = shared / f"{log_name or run_name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(CONFIG=str(CONFIG), NPROC="2", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1",
               TORCH_EXTENSIONS_DIR=env.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")))
    cpus = str(min(2, os.cpu_count() or 1))
    overrides = [f"out={run}", f"model.path={shared / 'model'}", f"data.dir={shared / 'data'}",
                 f"data.cache_dir={shared / 'token_cache'}", f"max_steps={MAX_STEPS}", "save_every=100",
                 "eval_every=0", "log_every=1", "grad_accum=1", "data.max_length=128"]
    job = sbatch([f"--job-name=bayling-test-{run_name}", "--nodes=1", "--gpus-per-node=0",
                  f"--cpus-per-task={cpus}", "--time=15", f"--output={log}", str(SCRIPT), *overrides],
                 env=env, cwd=REPO)
    return job, run, log


def _log(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace") if log.is_file() else "(no log)"


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster, shared) -> tuple[str, Path, Path]:
    job, run, log = submit_train(shared, "run_a")
    state = wait_for_job(job, JOB_TIMEOUT)
    assert state == "COMPLETED", f"job {job} ended {state}:\n{_log(log)[-4000:]}"
    return job, run, log


@pytest.mark.slow
def test_sbatch_trains_to_completion_as_two_process_job(uninterrupted):
    job, run, log = uninterrupted
    text = _log(log)
    assert "--nproc_per_node 2" in text and "--rdzv_backend c10d" in text, text[-3000:]
    assert "training finished with exit code 0" in text
    losses = _train_records(run)
    assert sorted(losses) == list(range(1, MAX_STEPS + 1))
    summary = (run / "train_summary.md").read_text(encoding="utf-8")
    assert "world size: 2" in summary and "status: done" in summary
    assert (run / "final" / "config.json").is_file() and (run / "final" / "model.safetensors").is_file()
    assert not (run / "REQUEUE").exists()
    assert job_field(job, "Restarts") == "0"


@pytest.mark.slow
def test_usr1_checkpoints_requeues_and_resumes_to_the_same_losses(uninterrupted, shared):
    _, run_a, _ = uninterrupted
    job, run, log = submit_train(shared, "run_b")
    # Signal as soon as the trainer announces its start (its handlers are installed by then), so the run is
    # far from its end; a signal before that would be ignored, one after the end would test nothing.
    wait_until(lambda: "starting from step 0" in _log(log) or job_field(job, "JobState") not in ("PENDING", "RUNNING"),
               JOB_TIMEOUT, f"job {job} to start training", job_id=job)
    assert job_field(job, "JobState") == "RUNNING", _log(log)[-3000:]
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=15)

    wait_until(lambda: int(job_field(job, "Restarts") or 0) >= 1, 240, f"job {job} to be requeued", job_id=job)
    state = wait_for_job(job, JOB_TIMEOUT)
    text = _log(log)
    assert state == "COMPLETED", f"job {job} ended {state}:\n{text[-4000:]}"

    assert "got SIGUSR1" in text, text[-4000:]
    assert f"scontrol requeue {job}" in text
    assert "(restart 1)" in text
    assert "resuming from" in text  # the trainer continued from its checkpoint, not from step 0
    assert "training finished with exit code 0" in text
    resumed_at = int(text.split("resuming from", 1)[1].split("at step", 1)[1].split()[0])
    assert 1 <= resumed_at < MAX_STEPS, "the run ended before the signal; nothing was resumed"

    losses_a, losses_b = _train_records(run_a), _train_records(run)
    assert sorted(losses_b) == list(range(1, MAX_STEPS + 1))
    for step, loss in losses_b.items():
        assert loss == pytest.approx(losses_a[step], rel=1e-6, abs=1e-7), f"step {step} differs after resume"
    assert (run / "final" / "model.safetensors").is_file()
    assert not (run / "REQUEUE").exists()


@pytest.mark.slow
def test_plain_scancel_checkpoints_and_a_resubmission_resumes_to_the_same_losses(uninterrupted, shared):
    """SIGTERM reaches torchrun too; it must not cut the workers' save short (docs/slurm.md: KillWait)."""
    _, run_a, _ = uninterrupted
    job, run, log = submit_train(shared, "run_c")
    wait_until(lambda: "starting from step 0" in _log(log) or job_field(job, "JobState") not in ("PENDING", "RUNNING"),
               JOB_TIMEOUT, f"job {job} to start training", job_id=job)
    assert job_field(job, "JobState") == "RUNNING", _log(log)[-3000:]
    assert "KillWait=30 s to checkpoint" in _log(log)  # the budget is stated in the job log
    subprocess.run(["scancel", job], check=True, timeout=15)
    assert wait_for_job(job, 90) == "CANCELLED"
    wait_until(lambda: (run / "REQUEUE").is_file(), 30, "the trainer's stop marker")
    marker = json.loads((run / "REQUEUE").read_text())
    assert marker["signal"] == "SIGTERM" and 1 <= marker["step"] < MAX_STEPS, (marker, _log(log)[-3000:])
    assert (run / "checkpoints" / "latest").exists()
    assert "Traceback" not in _log(log) and "SignalException" not in _log(log), _log(log)[-3000:]

    job2, _, log2 = submit_train(shared, "run_c", log_name="run_c_resubmitted")
    state = wait_for_job(job2, JOB_TIMEOUT)
    assert state == "COMPLETED", _log(log2)[-4000:]
    assert f"at step {marker['step']}" in _log(log2)
    losses_a, losses_c = _train_records(run_a), _train_records(run)
    assert sorted(losses_c) == list(range(1, MAX_STEPS + 1))
    for step, loss in losses_c.items():
        assert loss == pytest.approx(losses_a[step], rel=1e-6, abs=1e-7), f"step {step} differs after resume"


def _submit_bad(tmp_path: Path, name: str, nproc: str | None, cpus: int, *overrides: str) -> tuple[str, str]:
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in ("NPROC", "GPUS_PER_NODE")}
    env.update(CONFIG=str(CONFIG), **({"NPROC": nproc} if nproc else {}))
    job = sbatch([f"--job-name=bayling-test-{name}", "--nodes=1", "--gpus-per-node=0", f"--cpus-per-task={cpus}",
                  "--time=5", f"--output={log}", str(SCRIPT), f"out={tmp_path / 'run'}", *overrides],
                 env=env, cwd=REPO)
    state = wait_for_job(job, 60)
    assert state == "FAILED", _log(log)
    assert job_field(job, "ExitCode") == "2:0"
    return job, _log(log)


def _one_error_line(text: str) -> str:
    errors = [line for line in text.splitlines() if ": error:" in line]
    assert len(errors) == 1, text
    assert "Traceback" not in text and "launch: node" not in text and "srun" not in text, text
    return errors[0]


@pytest.mark.parametrize("nproc, cpus, expected", [
    (None, 1, "the allocation has no GPUs"),  # CPU-only allocation and no NPROC: nothing to default to
    ("2", 1, "has 1 CPU(s) per node"),         # more processes than the allocation's CPUs
])
def test_processes_are_checked_against_the_allocation_before_any_step(slurm_cluster, tmp_path, nproc, cpus,
                                                                     expected):
    _, text = _submit_bad(tmp_path, "nproc", nproc, cpus)
    line = _one_error_line(text)
    assert "NPROC" in line and expected in line, line


def test_bad_override_fails_the_job_early_with_one_line(slurm_cluster, tmp_path):
    """A typo in a key=value override fails on the batch node before any srun step, naming the key."""
    _, text = _submit_bad(tmp_path, "bad", "2", 2, "optim.lrr=1")
    line = _one_error_line(text)
    assert line.startswith("bayling-train: error:") and "optim.lrr" in line and "did you mean" in line, line
