"""The training recipe, top to bottom: ``setup(cfg, options) -> Run``, ``train(run)``, ``export(run)``.

``bayling.cli.train`` only parses arguments, runs the one-process checks (:mod:`bayling.train.preflight`)
and calls :func:`main` in each worker. Everything a worker does is here, in the order it happens:

1. process group (gloo on CPU, NCCL on GPUs), signal handlers, the run folder claimed and locked (rank 0);
2. the model folder: a hub id resolved by rank 0 alone, or the tiny random model built once;
3. the token cache: built by rank 0, awaited by the others (no collective while tokenising);
4. the deterministic data plan, the resume guards (manifest hashes, geometry, settings), the engine;
5. the loop (:func:`bayling.train.loop.train`), then the Hugging Face export with ``final/bayling.json``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bayling.config import dump_yaml
from bayling.dtypes import torch_dtype
from bayling.errors import BaylingError, ConfigError
from bayling.hashing import sha256_file
from bayling.train import resume_guard as guard
from bayling.train import rundir
from bayling.train.config import TrainConfig
from bayling.train.tokenize import tokenizer_source

PROG = "bayling-train"


@dataclass
class RunOptions:
    """Command-line choices that are not part of the run's config (they do not define the model)."""

    resume: str = "auto"
    allow_config_change: bool = False
    trust_checkpoint: bool = False


@dataclass(kw_only=True)
class Run:
    """Everything set up for one worker; :func:`train` and :func:`export` only read it."""

    cfg: TrainConfig
    options: RunOptions
    rank: int
    world_size: int
    out: Path
    model_dir: str
    tokenizer_src: str
    cache_path: Path
    plan: Any
    valid_plan: Any
    total_steps: int
    start_step: int
    resume_from: Path | None
    bundle: Any
    logger: Any
    state_extra: dict
    changes: dict = field(default_factory=dict)
    lock: Any = None


def init_distributed(cfg: TrainConfig) -> tuple[int, int]:
    """torch.distributed for this worker; a plain ``bayling-train`` (no launcher) is a 1-process group."""
    import deepspeed
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    from bayling.threads import configure_torch

    configure_torch()  # intra-op threads: this rank's share of the CPUs (torchrun's OMP_NUM_THREADS wins)

    from bayling.train.engine import on_cpu

    if "RANK" not in os.environ:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if not on_cpu():
        get_accelerator().set_device(int(os.environ.get("LOCAL_RANK", "0")))
    deepspeed.init_distributed(dist_backend="gloo" if on_cpu() else get_accelerator().communication_backend_name(),
                               timeout=timedelta(minutes=cfg.dist_timeout_minutes), verbose=False)
    return dist.get_rank(), dist.get_world_size()


def on_rank0(rank: int, work):
    """Run ``work()`` on rank 0 only and share its (string) result; its error is raised on every rank but
    printed by rank 0 alone (``all_ranks``), so N workers still give one line."""
    import torch.distributed as dist

    box: list = [None]
    failure: BaylingError | None = None
    if rank == 0:
        try:
            box[0] = ("ok", work())
        except BaylingError as err:
            failure, box[0] = err, ("error", str(err))
    dist.broadcast_object_list(box, src=0)  # strings only: no exception objects through pickle
    status, value = box[0]
    if failure is not None:
        failure.all_ranks = True
        raise failure
    if status == "error":
        err = BaylingError(value)
        err.all_ranks = True
        raise err
    return value


def build_tiny(cfg: TrainConfig) -> str:
    """``model.init: tiny``: build the random-init tiny Llama in a fresh temporary folder next to
    ``model.path``, then rename it into place; an existing folder is never removed (preflight refuses a
    non-empty one that holds no model)."""
    from bayling.models import build_tiny_llama
    from bayling.train.preflight import check_tiny_target

    target = Path(cfg.model.path)
    if (target / "config.json").is_file():
        return str(target)
    check_tiny_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building.", dir=target.parent))
    try:
        build_tiny_llama(tokenizer_source(cfg, str(target)), tmp, template=cfg.data.template,
                         hidden_size=cfg.model.tiny_hidden_size, num_layers=cfg.model.tiny_layers, seed=cfg.seed)
        if target.is_dir():
            target.rmdir()  # empty (checked above): rmdir cannot remove anything else
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own temporary folder
    return str(target)


def resolve_model_dir(cfg: TrainConfig, rank: int) -> str:
    """Hub ids are downloaded by rank 0 alone; the others then hit the local cache."""
    from bayling.hub import resolve_model

    if cfg.model.init == "tiny":
        return on_rank0(rank, lambda: build_tiny(cfg))
    if Path(cfg.model.path).expanduser().exists():
        return resolve_model(cfg.model.path, option="model.path")
    on_rank0(rank, lambda: resolve_model(cfg.model.path, option="model.path"))
    return resolve_model(cfg.model.path, option="model.path")


def claim_run_dir(cfg: TrainConfig, rank: int) -> rundir.RunLock | None:
    """Rank 0 marks ``OUT`` as this trainer's and holds its lock for the whole run."""
    holder: list = []

    def work() -> str:
        out = Path(cfg.out)
        rundir.claim(out)
        lock = rundir.RunLock(out)
        lock.acquire()
        holder.append(lock)
        return str(out)

    on_rank0(rank, work)
    return holder[0] if holder else None


def setup(cfg: TrainConfig, options: RunOptions) -> Run:
    """Steps 1-4 of the module docstring; every rank returns an equivalent Run."""
    import numpy as np
    import torch

    from bayling.train import checkpoint as ckpt
    from bayling.train.cache import CacheSpec, get_or_build_cache, open_cache
    from bayling.train.engine import build_engine
    from bayling.train.loop import DataPlan, install_signal_handlers
    from bayling.train.metrics import MetricsLogger

    install_signal_handlers()
    rank, world = init_distributed(cfg)
    lock = claim_run_dir(cfg, rank)
    out = Path(cfg.out)
    model_dir = resolve_model_dir(cfg, rank)
    tok_src = tokenizer_source(cfg, model_dir)
    cache_path = get_or_build_cache(CacheSpec.for_run(cfg, tok_src), rank=rank, world_size=world,
                                    timeout_s=cfg.dist_timeout_minutes * 60)
    train_cache = open_cache(cache_path)
    from bayling.train.preflight import check_vocab

    check_vocab(model_dir, train_cache.meta.get("vocab_size"), tok_src)
    plan, common = step_plan(cfg, train_cache, world)
    ga = plan.grad_accum
    valid = open_cache(cache_path, "valid")
    valid_plan = DataPlan.build(valid, **common) if cfg.eval_every and len(valid) else None
    total = total_steps(cfg, plan)
    data_sha = train_cache.meta.get("data_sha256")
    state_extra = {**guard.geometry(cfg, world, ga), "n_sequences": len(plan.bins), "total_steps": total,
                   "cache_key": train_cache.meta["key"], "settings": guard.settings(cfg, data_sha)}
    resume_from = ckpt.find_resume(out / "checkpoints", options.resume)
    changes: dict = {}
    if resume_from is not None:
        if not options.trust_checkpoint:
            ckpt.verify_manifest(resume_from, rank, world)
        state = ckpt.load_state(resume_from)
        guard.check_geometry(state, {**guard.geometry(cfg, world, ga), "n_sequences": len(plan.bins)}, resume_from)
        changes = guard.check_settings(state, state_extra["settings"], resume_from,
                                       allow=options.allow_config_change)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    bundle = build_engine(cfg, model_dir, world, total, ga)
    start = ckpt.load_checkpoint(bundle.engine, resume_from, rank)["step"] if resume_from else 0
    logger = MetricsLogger(out, rank=rank, start_step=start, total_steps=total, n_params=bundle.n_params,
                           world_size=world, peak_tflops=cfg.peak_tflops)
    run = Run(cfg=cfg, options=options, rank=rank, world_size=world, out=out, model_dir=model_dir,
              tokenizer_src=tok_src, cache_path=cache_path, plan=plan, valid_plan=valid_plan, total_steps=total,
              start_step=start, resume_from=resume_from, bundle=bundle, logger=logger, state_extra=state_extra,
              changes=changes, lock=lock)
    if rank == 0:
        write_run_files(run)
    return run


def step_plan(cfg: TrainConfig, train_cache, world: int):
    """(the run's :class:`~bayling.train.loop.DataPlan` over this token cache for ``world`` processes, the
    keyword arguments a validation plan shares). One function for the run and for ``--print-config``."""
    from bayling.train.attention import resolve as resolve_attn
    from bayling.train.loop import DataPlan

    ga = cfg.resolved_grad_accum(world)
    if ga is None:  # instructions_per_step: enough micro-steps for the fullest step of the planned epochs
        from bayling.train.plans import StepLayout, instruction_grad_accum

        layout = StepLayout(cfg.micro_batch, world, cfg.seed, None, cfg.data.max_length, cfg.data.packing)
        ga = instruction_grad_accum(train_cache.lengths, cfg.instructions_per_step, layout, cfg.epochs)
    common = dict(grad_accum=ga, world_size=world, seed=cfg.seed, max_length=cfg.data.max_length,
                  attn_implementation=resolve_attn(cfg.model.attn_implementation), mask_dtype=torch_dtype(cfg.dtype),
                  packing=cfg.data.packing, micro_batch=cfg.micro_batch)
    try:
        plan = DataPlan.build(train_cache, instructions_per_step=cfg.instructions_per_step, **common)
        plan.plan(0)
    except ValueError as err:  # a step that cannot give every rank work
        raise ConfigError(str(err), field="instructions_per_step") from None
    if plan.steps_per_epoch == 0:
        raise ConfigError(f"{len(plan.bins)} sequences are fewer than one optimizer step needs "
                          f"(micro_batch x grad_accum x world size = {cfg.micro_batch * ga * world})",
                          field="micro_batch")
    return plan, common


def total_steps(cfg: TrainConfig, plan) -> int:
    return cfg.max_steps or cfg.epochs * plan.steps_per_epoch


def write_run_files(run: Run) -> None:
    """What produced this run, next to its outputs; a stale REQUEUE marker is removed."""
    out = run.out
    (out / "REQUEUE").unlink(missing_ok=True)
    (out / "train_config.yaml").write_text(dump_yaml(run.cfg), encoding="utf-8")
    (out / "ds_config.json").write_text(json.dumps(run.bundle.ds_config, indent=2) + "\n", encoding="utf-8")
    if run.changes:
        guard.record_changes(out, run.start_step, run.changes)
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in run.changes.items())
        print(f"{PROG}: resuming with changed settings (--allow-config-change, recorded in "
              f"{out / guard.CHANGES}): {shown}", flush=True)
    if run.options.trust_checkpoint and run.resume_from is not None:
        print(f"{PROG}: --trust-checkpoint: loading {run.resume_from} without checking its manifest", flush=True)
    where = (f"resuming from {run.resume_from} at step {run.start_step}" if run.resume_from
             else "starting from step 0")
    print(f"{PROG}: {where} of {run.total_steps}; token cache {run.cache_path}; output {out}", flush=True)
    shown = ", ".join(f"{k} {v}" for k, v in run.plan.geometry().items())
    print(f"{PROG}: one step holds: {shown}", flush=True)


def train(run: Run) -> str:
    """The optimisation loop; returns DONE, STOPPED or NONFINITE (bayling.train.loop)."""
    from bayling.train.loop import LoopContext
    from bayling.train.loop import train as loop

    ctx = LoopContext(bundle=run.bundle, plan=run.plan, valid_plan=run.valid_plan, logger=run.logger,
                      out=run.out, rank=run.rank, world_size=run.world_size, start_step=run.start_step,
                      total_steps=run.total_steps, cfg=run.cfg, state_extra=run.state_extra)
    return loop(ctx)


def export(run: Run) -> Path | None:
    """OUT/final: weights, config, generation config, tokenizer (chat template, model_max_length) and
    bayling.json (contracts: what defines the checkpoint). Collective under ZeRO-3."""
    from bayling.train.checkpoint import export_final

    return export_final(run.bundle, model_dir=run.model_dir, tokenizer_src=run.tokenizer_src,
                        template_name=run.cfg.data.template, export_dtype=run.cfg.resolved_export_dtype(),
                        out=run.out, rank=run.rank, identity=checkpoint_identity(run))


def checkpoint_identity(run: Run) -> dict:
    """final/bayling.json (contract 2 in docs/architecture.md)."""
    import hashlib

    from bayling import __version__

    manifest = Path(run.cfg.data.dir) / "manifest.json"
    data_manifest = sha256_file(manifest) if manifest.is_file() else None
    return {"format": 1, "template": run.cfg.data.template, "max_length": run.cfg.data.max_length,
            "base_model": run.cfg.model.path, "data_manifest_sha256": data_manifest,
            "cache_key": run.state_extra.get("cache_key"),
            "config_sha256": hashlib.sha256(dump_yaml(run.cfg).encode()).hexdigest(),
            "bayling_version": __version__}


def main(cfg: TrainConfig, options: RunOptions) -> int:
    """A worker's whole life; returns its exit code (docs/training.md)."""
    from bayling.train.loop import DONE, EXIT_CODES

    run = setup(cfg, options)
    status = train(run)
    final = export(run) if status == DONE else None
    run.logger.close({"run": str(run.out), "status": status, "steps planned": run.total_steps,
                      "world size": run.world_size, "parameters": run.bundle.n_params, **run.plan.geometry(),
                      "export": str(final) if final else "none (not finished)"})
    return EXIT_CODES[status]


def exit_distributed(code: int) -> None:
    """barrier + os._exit: avoids the ZeRO-3 exit flake (docs/training.md); on error, no barrier (peers may be
    gone). The launcher learns the code from BAYLING_EXIT_FILE (torchrun reports every failure as 1)."""
    import torch.distributed as dist

    if code == 0 and dist.is_initialized():
        dist.barrier()
    status = os.environ.get("BAYLING_EXIT_FILE")
    if status and (not dist.is_initialized() or dist.get_rank() == 0 or code != 0):
        try:
            with open(status, "a") as fh:
                fh.write(f"{code}\n")
        except OSError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
