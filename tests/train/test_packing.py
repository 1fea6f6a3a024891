"""Packing: BFD bins, deterministic step plans, and attention isolation proven on a tiny Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayling.train.packing import (
    causal_lm_loss_sum,
    collate_packed,
    collate_padded,
    pack_best_fit_decreasing,
    packing_efficiency,
)
from bayling.train.plans import StepLayout, bin_target_counts, plan_steps, step_target_tokens
from bayling.train.tokenize import IGNORE_INDEX


@pytest.fixture(scope="module")
def models(tiny_llama2):
    from transformers import AutoModelForCausalLM

    out = {}
    for impl in ("sdpa", "eager"):
        m = AutoModelForCausalLM.from_pretrained(tiny_llama2, attn_implementation=impl, dtype=torch.float32)
        out[impl] = m.eval()
    return out


def per_sample_losses(model, batch) -> dict[int, float]:
    """Summed next-token loss of every sample in the batch, keyed by its sample number."""
    logits = model(**batch.model_inputs(with_labels=False)).logits.float()
    tok_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none",
    )
    seq = batch.seq_ids[:, 1:].reshape(-1)
    return {int(s): tok_loss[seq == s].sum() for s in seq.unique().tolist() if s >= 0}


def grads_of(model, batch) -> dict[str, torch.Tensor]:
    model.zero_grad()
    total = sum(per_sample_losses(model, batch).values())
    total.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def pick_bins(cache, max_length):
    """Two bins of 3+ samples each, so samples sit behind other samples in their row."""
    short = [i for i in np.argsort(cache.lengths) if cache.lengths[i] < max_length // 3][:40]
    bins = pack_best_fit_decreasing(cache.lengths[short], max_length)
    bins = [[short[j] for j in b] for b in bins if len(b) >= 3][:2]
    assert len(bins) == 2
    return bins


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_equals_unpacked_losses_and_gradients(cache, models, impl):
    model, L = models[impl], 512
    bins = pick_bins(cache, L)
    packed = collate_packed(cache, bins, L, attn_implementation=impl)
    order = [i for b in bins for i in b]
    padded = collate_padded(cache, order)
    lp, lu = per_sample_losses(model, packed), per_sample_losses(model, padded)
    assert sorted(lp) == sorted(lu) == list(range(len(order)))
    for s in lp:
        assert torch.allclose(lp[s], lu[s], atol=1e-4, rtol=1e-5), (s, lp[s], lu[s])
    gp, gu = grads_of(model, packed), grads_of(model, padded)
    assert gp.keys() == gu.keys() and gp
    for n in gp:
        assert torch.allclose(gp[n], gu[n], atol=1e-5, rtol=1e-4), n
    # same targets, none lost at the seams
    assert packed.n_targets == padded.n_targets == sum(int(cache.n_targets[i]) for i in order)


def test_negative_control_plain_causal_mask_leaks(cache, models):
    """Same packed rows with a plain causal mask: samples behind others see them, losses change."""
    model, L = models["sdpa"], 512
    bins = pick_bins(cache, L)
    packed = collate_packed(cache, bins, L)
    leaky = collate_packed(cache, bins, L)
    leaky.attention_mask = torch.ones_like(leaky.input_ids)  # 2D: transformers applies plain causal
    lp, ll = per_sample_losses(model, packed), per_sample_losses(model, leaky)
    first_of_row = {0, len(bins[0])}
    for s in lp:
        same = torch.allclose(lp[s], ll[s], atol=1e-4, rtol=1e-5)
        assert same == (s in first_of_row), s  # only the first sample of a row is unaffected


def test_position_ids_restart_and_labels_masked_at_seams(cache):
    bins = pick_bins(cache, 512)
    b = collate_packed(cache, bins, 512)
    for r, row in enumerate(bins):
        start = 0
        for i in row:
            n = int(cache.lengths[i])
            assert b.position_ids[r, start : start + n].tolist() == list(range(n))
            assert b.labels[r, start] == IGNORE_INDEX  # never predict a sample from the previous one
            ids, labels = cache.get(i)
            assert b.input_ids[r, start : start + n].tolist() == ids.tolist()
            start += n
        assert (b.labels[r, start:] == IGNORE_INDEX).all() and (b.input_ids[r, start:] == cache.pad_id).all()
    assert b.n_real_tokens == sum(int(cache.lengths[i]) for row in bins for i in row)


def test_flash_varlen_collate_flattens_with_cu_seqlens(cache):
    bins = pick_bins(cache, 512)
    b = collate_packed(cache, bins, 512, attn_implementation="flash_attention_2")
    lens = [int(cache.lengths[i]) for row in bins for i in row]
    assert b.input_ids.shape == (1, sum(lens)) and b.attention_mask is None
    assert b.extra["cu_seq_lens_q"].tolist() == np.concatenate([[0], np.cumsum(lens)]).tolist()
    assert b.extra["max_length_q"] == max(lens)


def test_bfd_efficiency_on_realistic_lengths():
    """>= 98% at 2048 on an SFT-like length mix: many short answers, a long tail of long dialogues."""
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(mean=5.6, sigma=0.8, size=20000), 16, 2048).astype(int)
    bins = pack_best_fit_decreasing(lengths, 2048)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(lengths[b].sum() <= 2048 for b in bins)
    assert packing_efficiency(lengths, bins, 2048) >= 0.98
    assert bins == pack_best_fit_decreasing(lengths, 2048)  # deterministic


def test_bfd_on_cache_lengths(cache):
    bins = pack_best_fit_decreasing(cache.lengths, 2048)
    assert sorted(i for b in bins for i in b) == list(range(len(cache)))
    # the last bin can be partly empty; all others fill a 2048 row almost completely
    full = [b for b in bins[:-1]]
    assert packing_efficiency(cache.lengths, full, 2048) >= 0.97


def test_plan_steps_deterministic_and_balanced():
    layout = StepLayout(micro_batch=2, grad_accum=3, world_size=2, seed=1)
    plan = plan_steps(103, layout, epoch=0)
    assert plan == plan_steps(103, StepLayout(2, 2, 1, 3), 0)
    assert plan != plan_steps(103, layout, 1)  # reshuffled each epoch
    seen = [b for s in plan for b in s.bins()]
    assert len(seen) == len(set(seen)) and len(seen) >= 103 - 5
    for s in plan:
        assert len(s.micro_batches) == 2 and all(len(r) == 3 for r in s.micro_batches)
        assert all(1 <= len(mb) <= 2 for r in s.micro_batches for mb in r)
    assert sum(len(mb) for mb in plan[-1].micro_batches[0]) >= 3  # partial last step still feeds every slot


def test_step_target_tokens_counts_whole_step(cache):
    bins = pack_best_fit_decreasing(cache.lengths, 1024)
    bt = bin_target_counts(bins, cache.n_targets)
    plan = plan_steps(bins, StepLayout(2, 2, seed=0, grad_accum=2), epoch=0)
    step = plan[0]
    total = 0
    for rank in range(2):
        for mb in step.micro_batches[rank]:
            total += collate_packed(cache, [bins[b] for b in mb], 1024).n_targets
    assert step_target_tokens(step, bt) == total
    assert step_target_tokens(step, bt, rank=0) + step_target_tokens(step, bt, rank=1) == total


@pytest.mark.parametrize("packed", [True, False])
def test_loss_on_target_positions_only_equals_full_logit_loss(cache, models, packed):
    model = models["sdpa"]
    bins = pick_bins(cache, 512)
    if packed:
        batch = collate_packed(cache, bins, 512)
    else:
        batch = collate_padded(cache, [i for b in bins for i in b])
    model.zero_grad()
    fast = causal_lm_loss_sum(model, batch)
    fast.backward()
    g_fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    full = sum(per_sample_losses(model, batch).values())
    g_full = grads_of(model, batch)
    assert torch.allclose(fast, full, rtol=1e-5)
    for n in g_full:
        assert torch.allclose(g_fast[n], g_full[n], atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize("per_step,micro_batch,world", [(128, 4, 8), (128, 2, 16), (32, 1, 4), (7, 1, 2)])
def test_instruction_steps_hold_exactly_n_instructions(per_step, micro_batch, world):
    """instructions_per_step: every step holds exactly N instructions (whatever their lengths), packed
    rows never exceed max_length, every (rank, micro-step) has 1..micro_batch rows, each sample appears at
    most once per epoch, and the plan is a pure function of (seed, epoch)."""
    from bayling.train.plans import instruction_grad_accum, plan_instruction_steps

    rng = np.random.default_rng(7)
    lengths = np.clip(rng.lognormal(5.6, 0.8, 3000).astype(np.int64), 8, 2048)
    ga = instruction_grad_accum(lengths, per_step, StepLayout(micro_batch, world, seed=3, grad_accum=None), 2)
    layout = StepLayout(micro_batch, world, seed=3, grad_accum=ga)
    for epoch in (0, 1):
        steps = plan_instruction_steps(lengths, per_step, layout, epoch)
        assert len(steps) == len(lengths) // per_step
        seen = []
        for st in steps:
            samples = [i for row in st.rows for i in row]
            assert len(samples) == per_step
            assert all(int(lengths[row].sum()) <= 2048 for row in st.rows)
            for rank in st.micro_batches:
                assert len(rank) == ga and all(1 <= len(mb) <= micro_batch for mb in rank)
            assert sorted(k for rank in st.micro_batches for mb in rank for k in mb) == list(range(len(st.rows)))
            seen += samples
        assert len(seen) == len(set(seen))
        again = plan_instruction_steps(lengths, per_step, layout, epoch)
        assert [s.rows for s in again] == [s.rows for s in steps]


def test_instruction_steps_pin_the_paper_geometry():
    """Golden: 128 instructions of a log-normal SFT-like mix (median 267 tokens) pack into 20-30 rows of
    2048, so 8 GPUs x micro-batch 4 need one micro-step; 128 packed ROWS (the old global_batch) held ~5x more
    instructions per step."""
    from bayling.train.plans import instruction_grad_accum, plan_instruction_steps

    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.6, 0.8, 12800).astype(np.int64), 8, 2048)
    ga = instruction_grad_accum(lengths, 128, StepLayout(micro_batch=4, world_size=8, seed=42, grad_accum=None), 1)
    steps = plan_instruction_steps(lengths, 128, StepLayout(4, 8, 42, grad_accum=ga), 0)
    rows = [len(s.rows) for s in steps]
    assert ga == 1 and len(steps) == 100
    assert (min(rows), max(rows), sum(rows)) == (20, 30, 2355)  # 23.6 rows of 2048 hold 128 instructions


def test_too_few_instructions_for_the_ranks_is_a_config_error():
    from bayling.config import load_config
    from bayling.errors import ConfigError
    from bayling.train.config import TrainConfig

    cfg = load_config(TrainConfig, None, ["instructions_per_step=4", "model.path=x", "data.dir=y"])
    with pytest.raises(ConfigError, match="cannot keep 8 processes busy"):
        cfg.resolved_grad_accum(8)
    with pytest.raises(ConfigError, match="remove grad_accum"):
        load_config(TrainConfig, None, ["instructions_per_step=128", "global_batch=128"])
