"""Background collation (issue 14.5): the next step's micro-batches are prepared while a step runs, and the
loop still sees exactly the batches, in exactly the order, of synchronous collation — from step 0 and
from any resume step, across epoch boundaries, for every rank."""

from __future__ import annotations

import time

import pytest
import torch

from bayling.train.cache import open_cache
from bayling.train.loop import BatchFeed, DataPlan, background_collate


def make_plan(token_cache_dir, **kw) -> DataPlan:
    args = dict(packing=True, max_length=512, micro_batch=2, grad_accum=2, world_size=2, seed=42,
                attn_implementation="sdpa", mask_dtype=torch.float32)
    args.update(kw)
    return DataPlan.build(open_cache(token_cache_dir), **args)


def same_batch(a, b) -> bool:
    for name in ("input_ids", "labels", "position_ids", "attention_mask", "seq_ids"):
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None) or (x is not None and not torch.equal(x, y)):
            return False
    return a.extra.keys() == b.extra.keys()


@pytest.mark.parametrize("start", [0, 3])
@pytest.mark.parametrize("instructions_per_step", [None, 8])
def test_background_feed_gives_the_synchronous_batches_in_order(token_cache_dir, start, instructions_per_step):
    plan = make_plan(token_cache_dir, instructions_per_step=instructions_per_step)
    spe = plan.steps_per_epoch
    stop = min(spe + 3, 40)  # crosses into the second epoch (a new shuffle) when the epoch is short
    for rank in (0, 1):
        sync = BatchFeed(plan, rank, stop, background=False)
        feed = BatchFeed(plan, rank, stop, background=True)
        try:
            for step in range(start, stop):
                s_sched, s_batches, _ = sync.get(step)
                b_sched, b_batches, _ = feed.get(step)
                assert b_sched == s_sched
                assert len(b_batches) == len(s_batches) == len(s_sched.micro_batches[rank])
                assert all(same_batch(x, y) for x, y in zip(b_batches, s_batches)), (rank, step)
        finally:
            feed.close()
    ids = [tuple(feed_batch.input_ids.flatten().tolist())
           for step in (start, start + 1) for feed_batch in BatchFeed(plan, 0, stop, background=False).get(step)[1]]
    assert len(set(ids)) > 1, "the steps hold different rows"


class SlowCollate(DataPlan):
    """The real plan whose collation of a micro-batch takes ``delay`` seconds (a GPU-sized batch on a slow host)."""

    delay = 0.2

    def collate(self, ids, step=None):
        time.sleep(self.delay)
        return super().collate(ids, step)


def slow_plan(token_cache_dir, delay: float) -> SlowCollate:
    base = make_plan(token_cache_dir, grad_accum=1)
    slow = SlowCollate(**{f: getattr(base, f) for f in ("cache", "bins", "bin_targets", "micro_batch", "grad_accum",
                                                         "world_size", "seed", "max_length", "packing",
                                                         "attn_implementation", "mask_dtype")})
    slow.delay = delay
    return slow


def waits(plan, step_seconds: float, steps: int = 6, **feed_kw) -> list[float]:
    feed = BatchFeed(plan, 0, steps, **feed_kw)
    try:
        out = []
        for step in range(steps):
            out.append(feed.get(step)[2])
            time.sleep(step_seconds)  # the "step" (forward, backward, optimizer) runs meanwhile
        return out
    finally:
        feed.close()


def test_background_feed_hides_collation_behind_the_step(token_cache_dir):
    plan = slow_plan(token_cache_dir, 0.1)
    sync, background = waits(plan, 0.15, background=False), waits(plan, 0.15, background=True)
    assert sum(sync) >= 6 * 0.1
    assert sum(background[1:]) < 0.5 * sum(sync[1:]), (sync, background)  # only the first step waits in full


def test_collation_slower_than_a_step_is_hidden_by_working_several_steps_ahead(token_cache_dir):
    plan = slow_plan(token_cache_dir, 0.2)  # one worker cannot keep up with a 0.125 s step; two can
    one, two = (waits(plan, 0.125, steps=8, background=True, ahead=k) for k in (1, 2))
    assert sum(one[2:]) >= 6 * 0.05, one
    assert sum(two[2:]) < 0.5 * sum(one[2:]), (one, two)


def test_default_is_on_with_an_accelerator_only():
    assert background_collate(None, "cpu") is False
    assert background_collate(None, torch.device("cuda", 0)) is True
    assert background_collate(True, "cpu") is True and background_collate(False, "cuda") is False


@pytest.mark.slow
def test_a_run_with_background_collation_trains_exactly_like_the_reference(tmp_path_factory, tiny_llama2):
    """Real 2-process ZeRO-2 run with the feed forced on (CPU default: off): every step's loss equals the
    synchronous reference run's (same batches, same order), and data waits are logged."""
    import train_harness as th

    base = tmp_path_factory.getbasetemp()
    ref = th.step_losses(th.zero2_reference(base, tiny_llama2))
    out = th.cached_run(base, "zero2_background", 2, tiny_llama2, [*th.ZERO2_EXTRA, "data.background_collate=true"])
    assert th.step_losses(out) == ref
    waits = [r["data_wait_seconds"] for r in th.metrics(out) if "loss" in r]
    assert len(waits) == th.REFERENCE_STEPS and all(w >= 0 for w in waits)
