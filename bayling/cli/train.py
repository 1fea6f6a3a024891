"""``bayling-train``: full fine-tuning with DeepSpeed ZeRO, under torchrun / deepspeed / Slurm, or on a CPU.

    torchrun --nproc_per_node N -m bayling.cli.train --config data/recipes/train/llama2_13b.yaml [key=value ...]
    bayling-train --nproc-per-node 2 --config FILE      # one machine: checks the config, then starts torchrun
    bayling-train --config FILE --print-config          # resolved config, nothing else
    bayling-train --config FILE --prepare-only          # build the token cache once, before a big launch
    bayling-train --estimate-memory --model llama2-13b --zero 3 --gpus 8
    bayling-train --config FILE --resume auto|none|PATH # default auto: continue from OUT/checkpoints/latest

Exit codes: 0 done, or stopped by SIGUSR1/SIGTERM after saving a checkpoint and writing OUT/REQUEUE
(resume with ``--resume auto``); 2 bad input (one line on stderr); 3 non-finite loss (state saved).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from bayling.cli import run_cli
from bayling.config import dump_yaml, load_config
from bayling.errors import BaylingError, ConfigError
from bayling.train.cache import data_files
from bayling.train.config import TrainConfig

PROG = "bayling-train"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="DeepSpeed ZeRO full fine-tuning (BayLing 2 recipe).")
    p.add_argument("--config", help="training config YAML (data/recipes/train/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-5 data.max_length=4096")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--prepare-only", action="store_true", help="build the token cache and exit")
    p.add_argument("--nproc-per-node", dest="nproc_per_node", type=int, default=None,
                   help="start N worker processes on this machine under torchrun, after checking the config")
    p.add_argument("--resume", default="auto", help="auto (default) | none | PATH of a checkpoint dir")
    p.add_argument("--estimate-memory", action="store_true", help="print per-GPU memory estimate and exit")
    est = p.add_argument_group("--estimate-memory options")
    est.add_argument("--model", help="llama2-7b, llama3-8b, llama2-13b, ... or an HF model/config dir")
    est.add_argument("--zero", default="3", help="ZeRO stage: 0, 1, 2, 3 or 3-offload (default 3)")
    est.add_argument("--gpus", type=int, default=8, help="GPUs per node (default 8)")
    est.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    est.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per micro-step")
    est.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    est.add_argument("--dtype", default="bf16", help="bf16 (default), fp16 or fp32")
    est.add_argument("--no-grad-checkpointing", action="store_true", help="estimate without checkpointing")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _estimate(args: argparse.Namespace) -> int:
    from bayling.train import memory

    if not args.model:
        raise ConfigError("--estimate-memory needs --model (e.g. llama2-13b)", field="--model")
    zero = str(args.zero)
    if zero not in ("0", "1", "2", "3", "3-offload"):
        raise ConfigError(f"must be 0, 1, 2, 3 or 3-offload, got {zero!r}", field="--zero")
    offload = zero == "3-offload"
    est = memory.estimate_memory(
        args.model, zero_stage=3 if offload else int(zero), gpus_per_node=args.gpus, nodes=args.nodes,
        micro_batch=args.micro_batch, seq_len=args.seq_len, grad_checkpointing=not args.no_grad_checkpointing,
        offload_optimizer=offload, offload_params=offload, dtype=args.dtype)
    print(memory.format_estimate(est))
    return 0


def _check_vocab(model_dir: str, vocab_size: int | None, tok_src: str) -> None:
    """A tokenizer larger than the model's embedding would fail deep inside forward with an IndexError."""
    import json

    cfg_file = Path(model_dir) / "config.json"
    if vocab_size is None or not cfg_file.is_file():
        return
    model_vocab = json.loads(cfg_file.read_text()).get("vocab_size")
    if isinstance(model_vocab, int) and vocab_size > model_vocab:
        raise ConfigError(f"the tokenizer ({tok_src}) has {vocab_size} tokens but the model's embedding has "
                          f"{model_vocab}; point model.tokenizer at the model's own tokenizer", field="model.tokenizer")


def tokenizer_source(cfg: TrainConfig, model_dir: str) -> str:
    """``model.tokenizer`` (a dir, hub id, or the shipped ``llama2``/``llama3``), else the model dir."""
    from bayling.tokenizer import tokenizer_dir

    name = cfg.model.tokenizer
    if not name:
        return model_dir
    if name in ("llama2", "llama3") and not Path(name).exists():
        return str(tokenizer_dir(name))
    return name


def _ensure_dist_env() -> None:
    """A plain ``bayling-train`` (no launcher) is a 1-process job: give torch.distributed its env."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def init_distributed(cfg: TrainConfig) -> tuple[int, int]:
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    from bayling.train.engine import on_cpu

    _ensure_dist_env()
    if not on_cpu():
        get_accelerator().set_device(int(os.environ.get("LOCAL_RANK", "0")))
    deepspeed.init_distributed(dist_backend="gloo" if on_cpu() else get_accelerator().communication_backend_name(),
                               timeout=timedelta(minutes=cfg.dist_timeout_minutes), verbose=False)
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.estimate_memory:
        return _estimate(args)
    if not args.config and not args.overrides:
        raise ConfigError("--config FILE.yaml is required (see data/recipes/train/)", field="--config")
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    cfg.require_paths()
    from bayling.train.engine import check_dtype_supported, prepare_deepspeed_for_cpu

    prepare_deepspeed_for_cpu()
    check_dtype_supported(cfg)
    data_files(cfg.data.dir)  # missing/empty data: fail on every rank before any process group exists
    if args.prepare_only:
        return _prepare_only(cfg)
    if args.nproc_per_node is not None and "LOCAL_RANK" not in os.environ:
        return _launch_local(args.nproc_per_node, sys.argv[1:] if argv is None else list(argv))
    rank, world = init_distributed(cfg)
    try:
        code = _train(cfg, args.resume, rank, world)
    except BaylingError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr, flush=True)
        code = err.exit_code
    except KeyboardInterrupt:
        code = 130
    _exit_distributed(code)
    return code  # not reached


def _launch_local(nproc: int, argv: list[str]) -> int:
    """Workers under torchrun, started only after the checks above passed in this one process: a bad config
    or a missing data dir is one line here, not N tracebacks followed by torchrun's failure report."""
    if nproc < 1:
        raise ConfigError(f"must be >= 1, got {nproc}", field="--nproc-per-node")
    rest, skip = [], False
    for a in argv:
        if skip or a.startswith("--nproc-per-node="):
            skip = False
            continue
        skip = a == "--nproc-per-node"
        if not skip:
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "bayling.cli.train", *rest]
    print("$ " + shlex.join(cmd), flush=True)
    return subprocess.call(cmd)


def _exit_distributed(code: int) -> None:
    """barrier + os._exit: avoids the ZeRO-3 exit flake (NOTES-stack.md); on error, no barrier (peers may be gone)."""
    import torch.distributed as dist

    if code == 0 and dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _prepare_only(cfg: TrainConfig) -> int:
    from bayling.train.cache import prepare_cache

    model_dir = cfg.model.path if cfg.model.init == "tiny" else _resolve(cfg)
    path = prepare_cache(cfg.data.dir, tokenizer_source(cfg, model_dir), cfg.data.template, cfg.data.max_length,
                         cfg.data.overlong, cfg.token_cache_root())
    print(f"token cache ready: {path} (see {path / 'STATS.md'})")
    return 0


def _resolve(cfg: TrainConfig) -> str:
    from bayling.hub import resolve_model

    return resolve_model(cfg.model.path, option="model.path")


def _resolve_once(cfg: TrainConfig, rank: int) -> str:
    """Hub ids are downloaded by rank 0 alone; the others then hit the local cache (or get its error)."""
    import torch.distributed as dist

    if Path(cfg.model.path).expanduser().exists():
        return _resolve(cfg)
    box: list = [None]
    failure: BaylingError | None = None
    if rank == 0:
        try:
            box[0] = ("ok", _resolve(cfg))
        except BaylingError as err:
            failure, box[0] = err, ("error", str(err))
    dist.broadcast_object_list(box, src=0)  # strings only: no exception objects through pickle
    status, value = box[0]
    if failure is not None:
        raise failure
    if status == "error":
        raise BaylingError(value)
    return value if rank == 0 else _resolve(cfg)


def _tiny_model(cfg: TrainConfig, rank: int) -> str:
    """``model.init: tiny``: rank 0 builds the random-init tiny Llama once (atomic rename), others wait."""
    import torch.distributed as dist

    from bayling.models import build_tiny_llama

    out = Path(cfg.model.path)
    if rank == 0 and not (out / "config.json").is_file():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny_llama(tokenizer_source(cfg, str(out)), tmp, template=cfg.data.template,
                         hidden_size=cfg.model.tiny_hidden_size, num_layers=cfg.model.tiny_layers, seed=cfg.seed)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    dist.barrier()
    return str(out)


def _train(cfg: TrainConfig, resume: str, rank: int, world: int) -> int:
    import numpy as np
    import torch

    from bayling.train import checkpoint as ckpt
    from bayling.train.cache import get_or_build_cache, open_cache
    from bayling.train.engine import build_engine
    from bayling.train.loop import DONE, EXIT_CODES, DataPlan, LoopContext, install_signal_handlers, train
    from bayling.train.metrics import MetricsLogger

    install_signal_handlers()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = _tiny_model(cfg, rank) if cfg.model.init == "tiny" else _resolve_once(cfg, rank)
    tok_src = tokenizer_source(cfg, model_dir)
    cache_path = get_or_build_cache(cfg.data.dir, tok_src, cfg.data.template, cfg.data.max_length,
                                    cfg.data.overlong, cfg.token_cache_root(), rank=rank, world_size=world,
                                    timeout_s=cfg.dist_timeout_minutes * 60)
    ga = cfg.resolved_grad_accum(world)
    mask_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.dtype]
    common = dict(grad_accum=ga, world_size=world, seed=cfg.seed, max_length=cfg.data.max_length,
                  attn_implementation=cfg.model.attn_implementation, mask_dtype=mask_dtype)
    train_cache = open_cache(cache_path)
    _check_vocab(model_dir, train_cache.meta.get("vocab_size"), tok_src)
    plan = DataPlan.build(train_cache, packing=cfg.data.packing, micro_batch=cfg.micro_batch, **common)
    if plan.steps_per_epoch == 0:
        raise ConfigError(f"{len(plan.bins)} sequences are fewer than one optimizer step needs "
                          f"(micro_batch x grad_accum x world size = {ga * world})", field="micro_batch")
    valid = open_cache(cache_path, "valid")
    valid_plan = (DataPlan.build(valid, packing=cfg.data.packing, micro_batch=cfg.micro_batch, **common)
                  if cfg.eval_every and len(valid) else None)
    total = cfg.max_steps or cfg.epochs * plan.steps_per_epoch
    identity = {"world_size": world, "micro_batch": cfg.micro_batch, "grad_accum": ga, "seed": cfg.seed,
                "packing": cfg.data.packing, "max_length": cfg.data.max_length, "n_sequences": len(plan.bins)}
    resume_from = ckpt.find_resume(out / "checkpoints", resume)
    if resume_from is not None:
        ckpt.check_compatible(ckpt.load_state(resume_from), identity, resume_from)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    bundle = build_engine(cfg, model_dir, world, total)
    start = ckpt.load_checkpoint(bundle.engine, resume_from, rank)["step"] if resume_from else 0
    if rank == 0:
        _write_run_files(cfg, bundle.ds_config, out, resume_from, start, total, cache_path)
    logger = MetricsLogger(out, rank=rank, start_step=start, total_steps=total, n_params=bundle.n_params,
                           world_size=world, peak_tflops=cfg.peak_tflops)
    ctx = LoopContext(bundle, plan, valid_plan, logger, out, rank, world, start, total, cfg.save_every,
                      cfg.keep_last, cfg.eval_every, cfg.eval_batches, cfg.log_every, identity)
    status = train(ctx)
    final = None
    if status == DONE:
        final = ckpt.export_final(bundle, model_dir=model_dir, tokenizer_src=tok_src, template_name=cfg.data.template,
                                  export_dtype=cfg.resolved_export_dtype(), out=out, rank=rank)
    logger.close({"run": str(out), "status": status, "steps planned": total, "world size": world,
                  "parameters": bundle.n_params, "export": str(final) if final else "none (not finished)"})
    return EXIT_CODES[status]


def _write_run_files(cfg, ds_config: dict, out: Path, resume_from, start: int, total: int, cache) -> None:
    """What produced this run, next to its outputs; a stale REQUEUE marker is removed."""
    import json

    (out / "REQUEUE").unlink(missing_ok=True)
    (out / "train_config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    (out / "ds_config.json").write_text(json.dumps(ds_config, indent=2) + "\n", encoding="utf-8")
    where = f"resuming from {resume_from} at step {start}" if resume_from else "starting from step 0"
    print(f"{PROG}: {where} of {total}; token cache {cache}; output {out}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
