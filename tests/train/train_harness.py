"""Launch real ``bayling-train`` runs (torchrun, gloo, CPU) for the trainer tests, each at most once per session.

Distributed start-up costs ~15 s per launch, so the runs several test files inspect (the ZeRO-2 reference,
the ZeRO-3 run) are cached on disk under the session's temporary base directory: whichever test asks
first launches it, the others reuse the finished output directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DATA = Path(__file__).resolve().parent / "fixtures" / "instruct"
CONFIG = REPO / "data" / "recipes" / "train" / "tiny_cpu.yaml"

# Shared by the cached runs: small enough that a step takes well under a second on 2 busy cores.
BASE_OVERRIDES = [
    "data.max_length=128", "micro_batch=1", "grad_accum=2", "dtype=fp32", "zero=2", "log_every=1",
    "model.init=pretrained", "optim.lr=0.001", "optim.warmup_ratio=0.1",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    e.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    return e


def launcher(nproc: int) -> list[str]:
    """torchrun for several processes, plain python for one (what a laptop user types)."""
    if nproc == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}"]


def command(nproc: int, args: list[str]) -> list[str]:
    return [*launcher(nproc), "-m", "bayling.cli.train", *args]


def train_args(out: Path, model: Path, cache: Path, extra: list[str]) -> list[str]:
    return ["--config", str(CONFIG), f"out={out}", f"model.path={model}", f"data.dir={FIXTURE_DATA}",
            f"data.cache_dir={cache}", *BASE_OVERRIDES, *extra]


def run(nproc: int, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command(nproc, args), cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def popen(nproc: int, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command(nproc, args), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def cached_run(base: Path, name: str, nproc: int, model: Path, extra: list[str]) -> Path:
    """Run once per session (file lock + DONE marker); return the run's output directory."""
    root = base / "train_runs"
    root.mkdir(parents=True, exist_ok=True)
    out = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "DONE_TEST").is_file():
            proc = run(nproc, train_args(out, model, root / "token_cache", extra))
            (root / f"{name}.log").write_text(proc.stdout + proc.stderr)
            assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            (out / "DONE_TEST").write_text("ok\n")
    return out


def metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def step_losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(out) if "loss" in r}


REFERENCE_STEPS = 8
ZERO2_EXTRA = [f"max_steps={REFERENCE_STEPS}", "save_every=3", "keep_last=2", "eval_every=4"]
ZERO3_EXTRA = ["max_steps=3", "zero=3", "dtype=bf16", "model.gradient_checkpointing=true", "save_every=100"]


def zero2_reference(base: Path, model: Path) -> Path:
    """The uninterrupted ZeRO-2 fp32 2-process run every resume/export test compares against."""
    return cached_run(base, "zero2_ref", 2, model, ZERO2_EXTRA)


def zero3_run(base: Path, model: Path) -> Path:
    """A ZeRO-3 bf16 2-process run with gradient checkpointing (weights partitioned over ranks)."""
    return cached_run(base, "zero3", 2, model, ZERO3_EXTRA)
