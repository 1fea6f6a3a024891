"""The training loop around the DeepSpeed engine: :func:`train` is the whole loop, on one screen.

Loss normalisation (a classic SFT bug: per-micro-batch averaging). The loss of an optimizer step is

    L = (sum of token cross-entropies over every micro-batch of every rank) / T,

T = target tokens of the WHOLE step (all gradient-accumulation micro-batches, all data-parallel ranks),
known before the step from the deterministic plan (``plans.step_target_tokens``). DeepSpeed would
otherwise (a) divide each micro-batch loss by GA in ``engine.backward`` and (b) AVERAGE gradients over the
W ranks. So each micro-batch backpropagates ``loss_sum * W / T`` with ``scale_wrt_gas=False``: (a) is
switched off and the factor W cancels (b), giving exactly dL/dθ. Hence micro-batch 4 x GA 1, micro-batch
1 x GA 4 and 2 ranks x GA 2 give the same update (tests/train/test_loss_norm.py).

Input pipeline. A step's micro-batches are collated (packed rows, block-diagonal masks) on the host; on a
GPU that is 0.1-0.5 s per step (the dense SDPA mask) against a 1B model's step of ~0.1 s, so with an
accelerator :class:`BatchFeed` prepares the next steps in background threads while step s runs (pinned
memory, so the copy to the device is a DMA). Same plan, same collate function, consumed strictly in step order: the batches are
identical to synchronous collation (tests/train/test_batch_feed.py), resume is unchanged. Each step's
``data_wait_seconds`` (metrics.jsonl) is the time the loop waited for its batches.

Stopping. SIGUSR1/SIGTERM only set a flag; the flag is summed over ranks with the step's statistics (one
collective per step), so every rank finishes the same step, saves the same checkpoint and exits together.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from bayling.train import checkpoint as ckpt
from bayling.train.packing import causal_lm_loss_sum, collate_packed, collate_padded, pack_best_fit_decreasing
from bayling.train.plans import (
    StepLayout,
    bin_target_counts,
    plan_instruction_steps,
    plan_steps,
    step_target_tokens,
)
from bayling.train.tokenize import IGNORE_INDEX

DONE, STOPPED, NONFINITE = "done", "stopped", "nonfinite"
# Exit codes (documented in docs/training.md): a signal stop is a SUCCESSFUL exit (0) because torchrun and
# the deepspeed launcher turn any non-zero worker code into a generic failure; OUT/REQUEUE tells them apart.
EXIT_CODES = {DONE: 0, STOPPED: 0, NONFINITE: 3}

_STOP = {"signal": None}


def install_signal_handlers() -> None:
    """SIGUSR1 (Slurm's --signal) and SIGTERM (scancel, torchrun shutdown): finish the step, save, exit."""

    def handler(signum, _frame) -> None:
        _STOP["signal"] = signal.Signals(signum).name

    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, handler)


@dataclass
class DataPlan:
    """Bins of the token cache and the deterministic per-epoch step plans (cached per epoch).

    Two batch semantics (docs/training.md, "What a step holds"): ``instructions_per_step`` set -> every step
    holds exactly that many instructions, packed per step (:func:`plan_instruction_steps`); otherwise a step
    holds ``micro_batch x grad_accum x world size`` packed rows of the run-wide packing."""

    cache: Any
    bins: list[list[int]]
    bin_targets: np.ndarray
    micro_batch: int
    grad_accum: int
    world_size: int
    seed: int
    max_length: int
    packing: bool
    attn_implementation: str
    mask_dtype: torch.dtype
    instructions_per_step: int | None = None
    _plans: dict = field(default_factory=dict)

    @classmethod
    def build(cls, cache, *, packing: bool, max_length: int, instructions_per_step: int | None = None,
              **kw) -> DataPlan:
        if instructions_per_step or not packing:
            bins = [[i] for i in range(len(cache))]  # instruction mode packs per step, not run-wide
        else:
            bins = pack_best_fit_decreasing(cache.lengths, max_length)
        return cls(cache, bins, bin_target_counts(bins, cache.n_targets), max_length=max_length,
                   packing=packing, instructions_per_step=instructions_per_step, **kw)

    @property
    def layout(self) -> StepLayout:
        return StepLayout(self.micro_batch, self.world_size, self.seed, self.grad_accum, self.max_length,
                          self.packing)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.plan(0))

    def plan(self, epoch: int):
        if epoch not in self._plans:
            if self.instructions_per_step:
                steps = plan_instruction_steps(self.cache.lengths, self.instructions_per_step, self.layout, epoch)
            else:
                steps = plan_steps(self.bins, self.layout, epoch)
            self._plans = {epoch: steps}
        return self._plans[epoch]

    def step(self, global_step: int):
        spe = self.steps_per_epoch
        return self.plan(global_step // spe)[global_step % spe]

    def rows(self, ids: list[int], step=None) -> list[list[int]]:
        """Sample ids of each row: the step's own rows (instruction mode) or the run-wide bins."""
        table = step.rows if step is not None and step.rows is not None else self.bins
        return [table[i] for i in ids]

    def step_targets(self, step) -> int:
        """Target tokens of the whole step (all ranks, all micro-batches): the loss normaliser."""
        if step.rows is None:
            return step_target_tokens(step, self.bin_targets)
        return int(sum(int(self.cache.n_targets[i]) for row in step.rows for i in row))

    def collate(self, ids: list[int], step=None):
        rows = self.rows(ids, step)
        if self.packing:
            return collate_packed(self.cache, rows, self.max_length, self.attn_implementation, self.mask_dtype)
        return collate_padded(self.cache, [r[0] for r in rows], attn_implementation=self.attn_implementation)

    def step_counts(self) -> dict[str, list[int]]:
        """Per step of epoch 0's plan: instructions (conversations), tokens and packed rows it holds."""
        steps = self.plan(0)
        rows = [self.rows([b for rank in st.micro_batches for mb in rank for b in mb], st) for st in steps]
        return {"instructions": [sum(len(r) for r in rs) for rs in rows],
                "tokens": [sum(int(self.cache.lengths[i]) for r in rs for i in r) for rs in rows],
                "rows": [len(rs) for rs in rows]}

    def geometry(self) -> dict[str, Any]:
        """What one optimizer step holds (epoch 0's plan), in the units a reader of the paper counts:
        instructions (conversations), tokens, packed rows; plus the steps one pass over the data takes."""
        c = self.step_counts()
        mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
        span = lambda xs: f"{mean(xs):.1f} ({min(xs, default=0)}-{max(xs, default=0)})"  # noqa: E731
        return {"steps per epoch": len(c["rows"]), "instructions per step (mean, min-max)": span(c["instructions"]),
                "tokens per step (mean)": round(mean(c["tokens"])),
                "packed rows per step (mean, min-max)": span(c["rows"]),
                "instructions in the data": len(self.cache)}


def pinned(batch):
    """The same batch with every tensor in page-locked host memory (async, faster host-to-device copies)."""
    pin = lambda t: t.pin_memory() if isinstance(t, torch.Tensor) else t  # noqa: E731
    tensors = {f.name: pin(getattr(batch, f.name)) for f in dataclasses.fields(batch)
               if isinstance(getattr(batch, f.name), torch.Tensor)}
    return dataclasses.replace(batch, **tensors, extra={k: pin(v) for k, v in batch.extra.items()})


class BatchFeed:
    """This rank's collated micro-batches, step by step; with ``background`` the next ``ahead`` steps are
    prepared by as many worker threads while the current step runs. Each prepared step is tied to its step
    index and handed out strictly in order, so the batches are those of synchronous collation.

    Why several steps ahead: one worker can hide collation only up to one step's time; the dense SDPA mask
    of 2 x 4096-token rows takes longer than a 1B model's GPU step (BENCHMARKS.md, "Input pipeline"), and
    torch releases the GIL while it builds it, so ``ahead`` threads collate ``ahead`` times as fast.
    ``get(step)`` returns (step schedule, host batches, seconds the caller waited)."""

    def __init__(self, plan: DataPlan, rank: int, stop_step: int, *, background: bool, ahead: int = 2,
                 pin: bool = False) -> None:
        self.plan, self.rank, self.stop_step, self.pin, self.ahead = plan, rank, stop_step, pin, max(1, ahead)
        self.pool = ThreadPoolExecutor(self.ahead, thread_name_prefix="bayling-collate") if background else None
        self.pending: dict[int, Any] = {}  # step -> future

    def prepare(self, step: int):
        sched = self.plan.step(step)
        batches = [self.plan.collate(mb, sched) for mb in sched.micro_batches[self.rank]]
        return sched, [pinned(b) for b in batches] if self.pin else batches

    def get(self, step: int):
        t0 = time.perf_counter()
        if self.pool is None:
            sched, batches = self.prepare(step)
            return sched, batches, time.perf_counter() - t0
        if step not in self.pending:  # first call, or a jump (resume): forget what was prepared
            for fut in self.pending.values():
                fut.cancel()
            self.pending = {}
        for s in range(step, min(step + 1 + self.ahead, self.stop_step)):
            if s not in self.pending:
                self.pending[s] = self.pool.submit(self.prepare, s)
        sched, batches = self.pending.pop(step).result()
        return sched, batches, time.perf_counter() - t0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def feed_workers() -> int:
    """Collation threads (= steps prepared ahead): this rank's spare CPUs, 1 to 4 (bayling/threads.py)."""
    from bayling.threads import cpu_budget

    return min(4, max(1, cpu_budget() - 1))


def background_collate(setting: bool | None, device) -> bool:
    """``data.background_collate``: None = on with an accelerator (host cores idle), off on CPU (the cores
    train; measured in BENCHMARKS.md)."""
    return setting if setting is not None else torch.device(device).type != "cpu"


def token_loss_sum(engine, batch) -> torch.Tensor:
    """Sum (not mean) of next-token cross-entropies over target tokens, in fp32, with logits computed only
    at target positions (the vocabulary projection dominates small models and Llama-3's 128k vocab)."""
    return causal_lm_loss_sum(engine, batch)


def run_step(engine, batches: list, step_targets: int,
             world_size: int) -> tuple[torch.Tensor, int, int, float | None]:
    """One optimizer step over this rank's micro-batches; returns (local loss sum, real tokens, slot tokens,
    global gradient norm before clipping or None).

    The norm is DeepSpeed's own where its engine keeps one; DeepSpeed's stage 0 in fp32 keeps none
    (``get_global_grad_norm()`` is None), so it is measured on the reduced gradients before the update."""
    scale = world_size / step_targets
    local = torch.zeros((), dtype=torch.float64)
    real = slots = 0
    measured = None
    for k, batch in enumerate(batches):
        loss_sum = token_loss_sum(engine, batch)
        engine.backward(loss_sum * scale, scale_wrt_gas=False)
        if k == len(batches) - 1:
            measured = stage0_grad_norm(engine)
        engine.step()
        local += loss_sum.detach().double().cpu()
        real += batch.n_real_tokens
        slots += batch.input_ids.numel()
    norm = engine.get_global_grad_norm()
    if norm is not None:
        measured = float(norm.item() if isinstance(norm, torch.Tensor) else norm)
    return local, real, slots, measured


def stage0_grad_norm(engine) -> float | None:
    """The global gradient norm before clipping, for ``zero: 0`` in fp32 only (None otherwise). After the
    boundary's ``engine.backward`` every rank holds the all-reduced gradients, so the local norm is global;
    accumulated in fp64 as ZeRO-1/2 do (an fp32 norm of a 2M-element embedding gradient was off by 4e-5)."""
    if engine.zero_optimization_stage() != 0 or engine.bfloat16_enabled() or engine.fp16_enabled():
        return None
    grads = [p.grad.detach() for p in engine.module.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64)
                                                       for g in grads])))


def reduce_step(local_loss: torch.Tensor, real: int, slots: int) -> tuple[float, int, int, bool]:
    """All-reduce (loss sum, tokens, stop flag) in ONE collective; every rank gets the same answer."""
    stop = 1.0 if _STOP["signal"] else 0.0
    t = torch.tensor([float(local_loss), float(real), float(slots), stop], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]), int(t[1]), int(t[2]), bool(t[3] > 0)


@torch.no_grad()
def evaluate(engine, valid_plan: DataPlan | None, rank: int, world_size: int,
             limit: int | None) -> tuple[float, int] | None:
    """(token-weighted validation loss, target tokens). Every rank runs the same number of forwards
    (ZeRO-3 gathers parameters collectively inside forward)."""
    if valid_plan is None or not valid_plan.bins:
        return None
    mb = valid_plan.micro_batch
    n_batches = math.ceil(len(valid_plan.bins) / (world_size * mb))
    if limit:
        n_batches = min(n_batches, limit)
    engine.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for k in range(n_batches):
        ids = list(range((k * world_size + rank) * mb, (k * world_size + rank + 1) * mb))
        real_ids = [i for i in ids if i < len(valid_plan.bins)]
        batch = valid_plan.collate(real_ids or [0]).to(engine.device)
        loss_sum = token_loss_sum(engine, batch).double().cpu()
        if real_ids:  # a rank past the end still runs the forward (collectives), but adds nothing
            total += torch.stack([loss_sum, torch.tensor(float(batch.labels[:, 1:].ne(IGNORE_INDEX).sum()))])
    engine.train()
    dist.all_reduce(total)
    return (float(total[0] / total[1]), int(total[1])) if total[1] > 0 else None


@dataclass
class LoopContext:
    """Everything :func:`train` needs, set up by :func:`bayling.train.recipe.setup`; the cadences (save,
    keep, eval, log) are read from the run's config object."""

    bundle: Any
    plan: DataPlan
    valid_plan: DataPlan | None
    logger: Any
    out: Path
    rank: int
    world_size: int
    start_step: int
    total_steps: int
    cfg: Any
    state_extra: dict


def _state(ctx: LoopContext, step: int) -> dict:
    return {"step": step, "epoch": step // ctx.plan.steps_per_epoch, **ctx.state_extra}


def save(ctx: LoopContext, step: int, **kw) -> Path:
    return ckpt.save_checkpoint(ctx.bundle.engine, ctx.out / "checkpoints", step, _state(ctx, step),
                                rank=ctx.rank, keep_last=ctx.cfg.keep_last, **kw)


def train(ctx: LoopContext) -> str:
    """The loop. Returns DONE, STOPPED (signal; checkpoint + OUT/REQUEUE) or NONFINITE (NaN/inf loss)."""
    engine, plan = ctx.bundle.engine, ctx.plan
    engine.train()
    if ctx.cfg.eval_every and ctx.start_step == 0:  # the baseline every later val_loss is compared against
        val = evaluate(engine, ctx.valid_plan, ctx.rank, ctx.world_size, ctx.cfg.eval_batches)
        if val is not None:
            ctx.logger.log_eval(0, *val)
    background = background_collate(ctx.cfg.data.background_collate, engine.device)
    feed = BatchFeed(plan, ctx.rank, ctx.total_steps, background=background, ahead=feed_workers(),
                     pin=background and torch.device(engine.device).type == "cuda")
    try:
        return _steps(ctx, engine, plan, feed)
    finally:
        feed.close()


def _steps(ctx: LoopContext, engine, plan: DataPlan, feed: BatchFeed) -> str:
    for step in range(ctx.start_step, ctx.total_steps):
        t0, lr = time.time(), engine.get_lr()[0]  # the lr this step uses (read before the scheduler moves)
        sched, host_batches, waited = feed.get(step)
        targets = plan.step_targets(sched)
        batches = [b.to(engine.device) for b in host_batches]
        local, real, slots, grad_norm = run_step(engine, batches, targets, ctx.world_size)
        loss_sum, real, slots, stop = reduce_step(local, real, slots)
        done = step + 1
        loss = loss_sum / targets
        record = ctx.logger.step_record(
            done, loss=loss, lr=lr, grad_norm=grad_norm, real_tokens=real,
            slot_tokens=slots, target_tokens=targets, seconds=time.time() - t0, epoch=sched.epoch)
        record["data_wait_seconds"] = waited
        ctx.logger.log(record, write=done % ctx.cfg.log_every == 0 or done == ctx.total_steps or stop)
        if not math.isfinite(loss):
            path = save(ctx, done, update_latest=False, tag=f"nonfinite-{ckpt.tag_for(done)}")
            return _nonfinite(ctx, done, loss, path)
        if ctx.cfg.eval_every and (done % ctx.cfg.eval_every == 0 or done == ctx.total_steps):
            val = evaluate(engine, ctx.valid_plan, ctx.rank, ctx.world_size, ctx.cfg.eval_batches)
            if val is not None:
                ctx.logger.log_eval(done, *val)
        if done % ctx.cfg.save_every == 0 or done == ctx.total_steps or stop:
            path = save(ctx, done)
        if stop:
            return _stopped(ctx, done, path)
    return DONE



def _nonfinite(ctx: LoopContext, step: int, loss: float, path: Path) -> str:
    if ctx.rank == 0:
        good = ckpt.find_resume(ctx.out / "checkpoints", "auto")
        ctx.logger.message(
            f"bayling-train: error: non-finite loss ({loss}) at step {step}; state saved to {path}; "
            f"--resume auto restarts from the last good checkpoint ({good}); lower optim.lr or check the data")
    return NONFINITE


def _stopped(ctx: LoopContext, step: int, path: Path) -> str:
    if ctx.rank == 0:
        ckpt.write_requeue_marker(ctx.out, {"signal": _STOP["signal"] or "peer", "step": step,
                                            "checkpoint": str(path)})
        ctx.logger.message(
            f"bayling-train: stopped by {_STOP['signal'] or 'a signal on another rank'} after step {step}; "
            f"checkpoint {path}; rerun with --resume auto to continue")
    return STOPPED
