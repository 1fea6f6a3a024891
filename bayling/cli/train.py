"""``bayling-train``: full fine-tuning with DeepSpeed ZeRO, under torchrun / deepspeed / Slurm, or on a CPU.

    torchrun --nproc_per_node N -m bayling.cli.train --config data/recipes/train/llama2_13b.yaml [key=value ...]
    bayling-train --nproc-per-node 2 --config FILE      # one machine: checks the config, then starts torchrun
    bayling-train --config FILE --print-config          # resolved config, nothing else
    bayling-train --config FILE --prepare-only          # build the token cache once, before a big launch
    bayling-train --estimate-memory --model llama2-13b --zero 3 --gpus 8
    bayling-train --config FILE --resume auto|none|PATH # default auto: continue from OUT/checkpoints/latest
    bayling-train --check --world-size N --config FILE  # every one-process check, then one line; no training

Exit codes: 0 done, or stopped by SIGUSR1/SIGTERM after saving a checkpoint and writing OUT/REQUEUE
(resume with ``--resume auto``); 2 bad input (one line on stderr); 3 non-finite loss (state saved).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from bayling.cli import run_cli
from bayling.config import dump_yaml, load_config
from bayling.errors import BaylingError, ConfigError
from bayling.train import local_launch
from bayling.train.config import TrainConfig

PROG = "bayling-train"


def build_parser() -> argparse.ArgumentParser:
    from bayling.templates import TEMPLATES

    templates = "; ".join(f"{name}: {t.description}" for name, t in TEMPLATES.items())
    p = argparse.ArgumentParser(prog=PROG, description="DeepSpeed ZeRO full fine-tuning (BayLing 2 recipe).",
                                epilog=f"Conversation templates (data.template=NAME): {templates}.")
    p.add_argument("--config", help="training config YAML (data/recipes/train/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-5 data.max_length=4096")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit; a comment after it gives instructions, tokens and "
                        "packed rows per step and the number of steps (from the token cache, if --prepare-only "
                        "built it; --world-size N: for N processes)")
    p.add_argument("--check", action="store_true",
                   help="run every check one process can do (config, run folder, data, model weights, "
                        "tokenizer, world size vs batch, resume) and exit: 0 + one line, or 2 + one error line")
    p.add_argument("--world-size", dest="world_size", type=int, default=None,
                   help="with --check or --print-config: the number of processes the run will have (default 1)")
    p.add_argument("--prepare-only", action="store_true", help="build the token cache and exit")
    p.add_argument("--nproc-per-node", dest="nproc_per_node", type=int, default=None,
                   help="start N worker processes on this machine under torchrun, after checking the config")
    p.add_argument("--resume", default="auto", help="auto (default) | none | PATH of a checkpoint dir")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even though optim.*, the schedule, model.path or the data changed since the "
                        "checkpoint (the changes are printed and appended to OUT/config_changes.jsonl)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="resume from a checkpoint without (or not matching) the MANIFEST.json this trainer "
                        "writes. DeepSpeed checkpoints are pickles: loading one can run arbitrary code")
    p.add_argument("--estimate-memory", action="store_true", help="print per-GPU memory estimate and exit")
    est = p.add_argument_group("--estimate-memory options")
    est.add_argument("--model", help="llama2-7b, llama3-8b, llama2-13b, ... or an HF model/config dir")
    est.add_argument("--zero", default=None, help="ZeRO stage: 0, 1, 2, 3 or 3-offload (default: the config's, else 3)")
    est.add_argument("--gpus", type=int, default=8, help="GPUs per node (default 8)")
    est.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    est.add_argument("--micro-batch", type=int, default=None, help="sequences per GPU per micro-step (default: "
                     "the config's micro_batch, else 1)")
    est.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the config's "
                     "data.max_length, else 2048)")
    est.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: the config's, else bf16)")
    est.add_argument("--no-grad-checkpointing", action="store_true", help="estimate without checkpointing")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _estimate(args: argparse.Namespace) -> int:
    """Per-GPU memory; with --config the model, ZeRO stage, micro batch, length, dtype and checkpointing
    come from the run's config (explicit flags still win)."""
    from bayling.train import memory

    model, zero, mb, seq, dtype, ckpt = args.model, args.zero, args.micro_batch, args.seq_len, args.dtype, None
    if args.config:
        cfg = load_config(TrainConfig, args.config, args.overrides)
        model = model or (cfg.model.path if cfg.model.init == "pretrained" else None)
        zero, mb, seq = zero or str(cfg.zero), mb or cfg.micro_batch, seq or cfg.data.max_length
        dtype, ckpt = dtype or cfg.dtype, cfg.model.gradient_checkpointing
    if not model:
        raise ConfigError("--estimate-memory needs --model (e.g. llama2-13b) or --config", field="--model")
    zero = str(zero or "3")
    if zero not in ("0", "1", "2", "3", "3-offload"):
        raise ConfigError(f"must be 0, 1, 2, 3 or 3-offload, got {zero!r}", field="--zero")
    offload = zero == "3-offload"
    if args.no_grad_checkpointing:
        ckpt = False
    est = memory.estimate_memory(
        model, zero_stage=3 if offload else int(zero), gpus_per_node=args.gpus, nodes=args.nodes,
        micro_batch=mb or 1, seq_len=seq or 2048, grad_checkpointing=True if ckpt is None else ckpt,
        offload_optimizer=offload, offload_params=offload, dtype=dtype or "bf16")
    print(memory.format_estimate(est))
    return 0


def _options(args: argparse.Namespace):
    from bayling.train.recipe import RunOptions

    return RunOptions(resume=args.resume, allow_config_change=args.allow_config_change,
                      trust_checkpoint=args.trust_checkpoint)


def _checks(cfg: TrainConfig, args: argparse.Namespace, world_size: int):
    from bayling.train.preflight import run_checks

    return run_checks(cfg, world_size, args.resume, allow_changes=args.allow_config_change,
                      trust_checkpoint=args.trust_checkpoint)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.estimate_memory:
        return _estimate(args)
    if not args.config and not args.overrides:
        raise ConfigError("--config FILE.yaml is required (see data/recipes/train/)", field="--config")
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if args.print_config:
        from bayling.train.step_preview import step_comment

        print(dump_yaml(cfg), end="")
        print("\n".join(step_comment(cfg, args.world_size or 1)))
        return 0
    if args.check:
        world = 1 if args.world_size is None else args.world_size
        print(f"{PROG}: {_checks(cfg, args, world).line()}", flush=True)
        return 0
    if args.world_size is not None:
        raise ConfigError("only meaningful with --check", field="--world-size")
    if args.prepare_only:
        return _prepare_only(cfg)
    if args.nproc_per_node is not None and args.nproc_per_node < 1:
        raise ConfigError(f"must be >= 1, got {args.nproc_per_node}", field="--nproc-per-node")
    if "LOCAL_RANK" not in os.environ:  # this process is the launcher (or the whole 1-process run)
        _checks(cfg, args, args.nproc_per_node or 1)
        if args.nproc_per_node is not None:
            return local_launch.launch_local(args.nproc_per_node, sys.argv[1:] if argv is None else list(argv))
    else:
        _worker_checks(cfg)
    return _worker(cfg, args)


def _worker_checks(cfg: TrainConfig) -> None:
    """A worker started by torchrun/Slurm re-checks what is cheap and identical on every rank (the launcher
    ran the full --check): an error here is printed by rank 0 alone."""
    from bayling.train import rundir
    from bayling.train.cache import data_files
    from bayling.train.preflight import check_hardware

    local_launch.parent_death_signal(signal.SIGTERM)  # torchrun killed -9: stop (checkpoint) instead of running on
    try:
        cfg.require_paths()
        rundir.check_out_dir(cfg.out)
        check_hardware(cfg)
        data_files(cfg.data.dir)
    except BaylingError as err:
        err.all_ranks = True
        raise


def _worker(cfg: TrainConfig, args: argparse.Namespace) -> int:
    from bayling.train.engine import prepare_deepspeed_for_cpu
    from bayling.train.recipe import exit_distributed, main

    prepare_deepspeed_for_cpu()
    try:
        code = main(cfg, _options(args))
    except BaylingError as err:
        if not (err.all_ranks and int(os.environ.get("RANK", "0")) != 0):
            print(f"{PROG}: error: {err}", file=sys.stderr, flush=True)
        code = err.exit_code
    except KeyboardInterrupt:
        code = 130
    exit_distributed(code)
    return code  # not reached


def _prepare_only(cfg: TrainConfig) -> int:
    from bayling.hub import resolve_model
    from bayling.train.cache import CacheSpec, prepare_cache
    from bayling.train.tokenize import tokenizer_source

    cfg.require_paths()
    if cfg.model.tokenizer or cfg.model.init == "tiny":  # a local tokenizer: no model download, works offline
        tok_src = tokenizer_source(cfg, cfg.model.path)
    else:
        tok_src = tokenizer_source(cfg, resolve_model(cfg.model.path, option="model.path"))
    path = prepare_cache(CacheSpec.for_run(cfg, tok_src))
    print(f"token cache ready: {path} (see {path / 'STATS.md'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
