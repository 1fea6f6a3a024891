"""Worker for test_loss_norm.py: two real optimizer steps through bayling's engine + run_step.

Usage (one process or under torchrun): python loss_norm_worker.py MODEL CACHE OUT.pt MBxGA [MBxGA ...]

The same 8 packed sequences (4 per optimizer step) are dealt over (ranks x GA x micro-batch) as the layout
says; the per-step loss, the pre-clip gradient norm and the final weights are saved by rank 0.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from bayling.config import load_config
from bayling.train.attention import resolve as resolve_attn
from bayling.train.cache import open_cache
from bayling.train.config import TrainConfig
from bayling.train.engine import build_engine, prepare_deepspeed_for_cpu
from bayling.train.loop import DataPlan, reduce_step, run_step
from bayling.train.recipe import init_distributed

SEQS_PER_STEP = 4


def one_layout(model: str, cache_dir: str, mb: int, ga: int, rank: int, world: int) -> dict:
    cfg = load_config(TrainConfig, None, [
        f"model.path={model}", "data.dir=unused", f"micro_batch={mb}", f"grad_accum={ga}", "dtype=fp32",
        "zero=2", "optim.lr=0.01", "optim.eps=0.001", "optim.warmup_ratio=0", "optim.grad_clip=1000000000.0", "model.gradient_checkpointing=false",
    ])
    assert mb * ga * world == SEQS_PER_STEP, (mb, ga, world)
    plan = DataPlan.build(open_cache(cache_dir), packing=True, max_length=128, micro_batch=mb, grad_accum=ga,
                          world_size=world, seed=0, mask_dtype=torch.float32,
                          attn_implementation=resolve_attn(cfg.model.attn_implementation, cpu=True))  # as the model
    torch.manual_seed(0)
    bundle = build_engine(cfg, model, world, total_steps=10)
    result = {"loss": [], "grad_norm": []}
    for step in range(2):
        seqs = list(range(step * SEQS_PER_STEP, (step + 1) * SEQS_PER_STEP))  # same 4 sequences per step
        targets = int(sum(plan.bin_targets[s] for s in seqs))
        mine = [seqs[(j * world + rank) * mb:(j * world + rank + 1) * mb] for j in range(ga)]
        local, real, slots, grad_norm = run_step(bundle.engine, [plan.collate(m) for m in mine], targets, world)
        loss_sum, *_ = reduce_step(local, real, slots)
        result["loss"].append(loss_sum / targets)
        result["grad_norm"].append(grad_norm)
    result["weights"] = {k: v.detach().clone() for k, v in bundle.engine.module.state_dict().items()}
    result["targets_per_seq"] = [int(plan.bin_targets[s]) for s in range(2 * SEQS_PER_STEP)]
    return result


def main() -> None:
    model, cache_dir, out, *layouts = sys.argv[1:]
    prepare_deepspeed_for_cpu()
    rank, world = init_distributed(load_config(TrainConfig, None, []))
    results = {}
    for layout in layouts:
        mb, ga = (int(x) for x in layout.split("x"))
        results[f"{world}x{layout}"] = one_layout(model, cache_dir, mb, ga, rank, world)
    if rank == 0:
        torch.save(results, out)
    dist.barrier()


if __name__ == "__main__":
    main()
