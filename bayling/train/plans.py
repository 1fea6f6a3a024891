"""Step plans: which packed rows every rank sees in every optimizer step, decided before training starts.

Why in advance: the loop divides the summed token loss by the target tokens of the WHOLE optimizer step
(burn #6: across gradient accumulation and ranks). A plan that is a pure function of (seed, epoch) gives
that denominator without any communication (``step_target_tokens``) and lets a resumed run continue at
the exact step. Two batch semantics (docs/training.md, "What a step holds"): ``plan_steps`` deals the
run-wide packed bins into steps of ``micro_batch x grad_accum x world`` rows; ``plan_instruction_steps``
gives every step exactly N instructions (the paper's unit), packed per step.

Public API::

    layout = StepLayout(micro_batch, world_size, seed, grad_accum, max_length, packing)
    plan = plan_steps(bins, layout, epoch)                       # list[Step]
    plan[k].micro_batches[rank][j] -> list of bin indices for micro-batch j of rank `rank`
    bin_targets = bin_target_counts(bins, cache.n_targets)
    step_target_tokens(plan[k], bin_targets) -> int             # across GA and ranks
    ga = instruction_grad_accum(cache.lengths, n, layout, epochs); plan_instruction_steps(cache.lengths, n, layout, epoch)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bayling.train.packing import pack_best_fit_decreasing


@dataclass(frozen=True)
class StepLayout:
    """How one optimizer step is laid out over processes: the part of the config every planner reads
    (``grad_accum`` None only while :func:`instruction_grad_accum` works it out)."""

    micro_batch: int
    world_size: int
    seed: int
    grad_accum: int | None = 1
    max_length: int = 2048
    packing: bool = True

    @property
    def slots(self) -> int:
        """(rank, micro-step) pairs per step: each must get at least one row."""
        return self.grad_accum * self.world_size


@dataclass
class Step:
    """One optimizer step: ``micro_batches[rank][j]`` = bin indices of micro-batch j on that rank.

    ``rows`` is set by :func:`plan_instruction_steps`: the step's own packed rows (lists of sample ids),
    which ``micro_batches`` then index instead of the run-wide bins."""

    epoch: int
    index: int
    micro_batches: list[list[list[int]]]
    rows: list[list[int]] | None = None

    def bins(self) -> list[int]:
        return [b for rank in self.micro_batches for mb in rank for b in mb]


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The epoch's shuffle: a pure function of (seed, epoch), so a resumed run replays it exactly."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def _deal(n_rows: int, layout: StepLayout) -> list[list[list[int]]]:
    """Rows 0..n_rows-1 dealt round-robin over the (rank, micro-step) slots."""
    mbs: list[list[list[int]]] = [[[] for _ in range(layout.grad_accum)] for _ in range(layout.world_size)]
    for k in range(n_rows):
        slot = k % layout.slots
        mbs[slot % layout.world_size][slot // layout.world_size].append(k)
    return mbs


def plan_steps(bins: Sequence[Sequence[int]] | int, layout: StepLayout, epoch: int) -> list[Step]:
    """Deterministic per-epoch plan: shuffle bins (seed, epoch), deal them into optimizer steps.

    Every rank gets exactly ``grad_accum`` micro-batches per step (DeepSpeed needs equal micro-steps);
    a last partial step deals its bins round-robin so micro-batches may hold fewer than ``micro_batch``
    bins (exact because the loss is normalised by target tokens, not by batch size). Bins left after
    that (fewer than ``grad_accum * world_size``) are skipped this epoch; the shuffle changes per epoch.
    """
    if min(layout.micro_batch, layout.grad_accum or 0, layout.world_size) < 1:
        raise ValueError("micro_batch, grad_accum and world_size must be >= 1")
    n_bins = bins if isinstance(bins, int) else len(bins)
    perm = _epoch_order(n_bins, layout.seed, epoch)
    per_step = layout.micro_batch * layout.slots
    steps: list[Step] = []
    for start in range(0, n_bins, per_step):
        chunk = perm[start : start + per_step]
        if len(chunk) < layout.slots:
            break
        mbs = [[[chunk[k] for k in mb] for mb in rank] for rank in _deal(len(chunk), layout)]
        steps.append(Step(epoch, len(steps), mbs))
    return steps


def step_rows(lengths: np.ndarray, chunk: list[int], max_length: int, packing: bool) -> list[list[int]]:
    """The packed rows (sample ids) of one step's instructions ``chunk``."""
    if not packing:
        return [[i] for i in chunk]
    local = pack_best_fit_decreasing(lengths[chunk], max_length)
    return [[chunk[k] for k in b] for b in local]


def _instruction_chunks(lengths: np.ndarray, per_step: int, seed: int, epoch: int):
    perm = _epoch_order(len(lengths), seed, epoch)
    return [perm[start:start + per_step] for start in range(0, len(perm) - per_step + 1, per_step)]


def instruction_grad_accum(lengths, per_step: int, layout: StepLayout, epochs: int) -> int:
    """Micro-steps per rank that hold the fullest step of every planned epoch (DeepSpeed needs one fixed GA);
    ``layout.grad_accum`` is ignored (it is what this works out)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    most = 1
    for epoch in range(epochs):
        for chunk in _instruction_chunks(lengths, per_step, layout.seed, epoch):
            most = max(most, len(step_rows(lengths, chunk, layout.max_length, layout.packing)))
    return -(-most // (layout.micro_batch * layout.world_size))


def plan_instruction_steps(lengths, per_step: int, layout: StepLayout, epoch: int) -> list[Step]:
    """Steps of exactly ``per_step`` instructions (the paper's unit), whatever their lengths.

    The epoch's shuffled samples are cut into groups of ``per_step``; each group is packed on its own
    (best-fit decreasing), so a step holds a variable number of rows. Rows are dealt round-robin over the
    ``world_size x grad_accum`` (rank, micro-step) slots, ``grad_accum`` being large enough for the fullest
    step; a slot that would stay empty gets a row split off the fullest multi-sample row (never a sample
    cut), so every micro-batch has work and every rank runs the same micro-steps. The loss stays exact: it
    is normalised by the target tokens of the step's instructions, however they are laid out.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    slots = layout.slots
    steps: list[Step] = []
    for chunk in _instruction_chunks(lengths, per_step, layout.seed, epoch):
        rows = step_rows(lengths, chunk, layout.max_length, layout.packing)
        while len(rows) < slots:
            widest = max(range(len(rows)), key=lambda r: len(rows[r]))
            if len(rows[widest]) < 2:
                raise ValueError(f"{per_step} instructions cannot fill {slots} micro-batches")
            half = len(rows[widest]) // 2
            rows.append(rows[widest][half:])
            rows[widest] = rows[widest][:half]
        if len(rows) > slots * layout.micro_batch:
            raise ValueError(f"a step needs {len(rows)} rows, more than {slots} x micro_batch {layout.micro_batch}")
        steps.append(Step(epoch, len(steps), _deal(len(rows), layout), rows))
    return steps


def bin_target_counts(bins: Sequence[Sequence[int]], n_targets: np.ndarray) -> np.ndarray:
    """Target tokens per bin (``n_targets`` per sample comes from the cache)."""
    nt = np.asarray(n_targets, dtype=np.int64)
    return np.asarray([int(nt[list(b)].sum()) for b in bins], dtype=np.int64)


def step_target_tokens(step: Step, bin_targets: np.ndarray, rank: int | None = None) -> int:
    """Target tokens of the whole step (all ranks, all micro-batches), or of one rank's share."""
    ranks = step.micro_batches if rank is None else [step.micro_batches[rank]]
    return int(sum(int(bin_targets[b]) for r in ranks for mb in r for b in mb))
