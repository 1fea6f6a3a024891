"""Attention paths for packed rows: every CPU-trainable implementation gives the unpacked per-sample losses
and gradients; the chunked loss equals the full-logit loss; unavailable choices are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayling.errors import ConfigError
from bayling.train import attention
from bayling.train.packing import (
    IGNORE_INDEX,
    causal_lm_loss_sum,
    collate_packed,
    collate_padded,
    pack_best_fit_decreasing,
)

# fp32 on CPU; per-sample loss sums of ~100 tokens (~1e3 in value): the packed and unpacked rows differ only
# in summation order inside the kernels, measured <= 2e-5 absolute on the losses.
LOSS_ATOL, LOSS_RTOL = 1e-4, 1e-5
GRAD_ATOL, GRAD_RTOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def models(tiny_llama2):
    from transformers import AutoModelForCausalLM

    out = {}
    for impl in ("sdpa_varlen", "sdpa"):
        name = attention.hf_attn_implementation(impl, cpu=True)
        out[impl] = AutoModelForCausalLM.from_pretrained(tiny_llama2, attn_implementation=name,
                                                         dtype=torch.float32).eval()
    return out


def per_sample_losses(model, batch) -> dict[int, torch.Tensor]:
    logits = model(**batch.model_inputs(with_labels=False)).logits.float()
    tok = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                            batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                                            reduction="none")
    seq = batch.seq_ids[:, 1:].reshape(-1)
    return {int(s): tok[seq == s].sum() for s in seq.unique().tolist() if s >= 0}


def grads_of(model, loss_fn) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss_fn().backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def pick_bins(cache, max_length=512):
    short = [i for i in np.argsort(cache.lengths) if cache.lengths[i] < max_length // 3][:40]
    bins = pack_best_fit_decreasing(cache.lengths[short], max_length)
    bins = [[short[j] for j in b] for b in bins if len(b) >= 3][:2]
    assert len(bins) == 2
    return bins


def test_sdpa_varlen_batch_has_no_mask_and_one_flat_row(cache):
    bins = pick_bins(cache)
    b = collate_packed(cache, bins, 512, attn_implementation="sdpa_varlen")
    total = sum(int(cache.lengths[i]) for r in bins for i in r)
    assert b.attention_mask is None and b.input_ids.shape == (1, total)  # no [L, L] tensor, no padding
    cu = b.extra["cu_seq_lens_q"].tolist()
    assert cu[0] == 0 and cu[-1] == total and len(cu) == sum(len(r) for r in bins) + 1
    dense = collate_packed(cache, bins, 512, attn_implementation="sdpa")
    assert dense.attention_mask.shape == (2, 1, 512, 512)  # the quadratic mask the new default avoids


@pytest.mark.parametrize("impl", ["sdpa_varlen"])  # sdpa and eager: tests/train/test_packing.py
def test_packed_equals_unpacked(cache, models, impl):
    """Each sample's loss and the gradients of their sum are those of the samples run one per row."""
    model = models[impl]
    bins = pick_bins(cache)
    order = [i for b in bins for i in b]
    packed = collate_packed(cache, bins, 512, attn_implementation=impl)
    padded = collate_padded(cache, order)  # reference: sdpa model, one padded row per sample
    ref_model = models["sdpa"]
    lp, lu = per_sample_losses(model, packed), per_sample_losses(ref_model, padded)
    assert sorted(lp) == sorted(lu) == list(range(len(order)))
    for s in lp:
        torch.testing.assert_close(lp[s], lu[s], atol=LOSS_ATOL, rtol=LOSS_RTOL)
    ref_model.load_state_dict(model.state_dict())
    gp = grads_of(model, lambda: sum(per_sample_losses(model, packed).values()))
    gu = grads_of(ref_model, lambda: sum(per_sample_losses(ref_model, padded).values()))
    assert gp.keys() == gu.keys() and len(gp) > 10
    for n in gp:
        torch.testing.assert_close(gp[n], gu[n], atol=GRAD_ATOL, rtol=GRAD_RTOL, msg=n)


def test_sdpa_varlen_unpacked_layout_matches_padded(cache, models):
    """packing: false with a flat implementation: one segment per sample, same losses as padded rows."""
    order = [int(i) for i in np.argsort(cache.lengths)[:5]]
    flat = collate_padded(cache, order, attn_implementation="sdpa_varlen")
    assert flat.attention_mask is None and flat.input_ids.shape[0] == 1
    lf = per_sample_losses(models["sdpa_varlen"], flat)
    lu = per_sample_losses(models["sdpa"], collate_padded(cache, order))
    for s in lu:
        torch.testing.assert_close(lf[s], lu[s], atol=LOSS_ATOL, rtol=LOSS_RTOL)


def test_negative_control_one_segment_leaks(cache, models):
    """Boundaries matter: the same flat row with ONE segment (plain causal attention across samples) gives
    different losses for every sample but the first, so the equality above is not vacuous."""
    bins = pick_bins(cache)
    packed = collate_packed(cache, bins, 512, attn_implementation="sdpa_varlen")
    lp = per_sample_losses(models["sdpa_varlen"], packed)
    T = packed.input_ids.shape[1]
    whole = torch.tensor([0, T], dtype=torch.int32)
    packed.extra.update(cu_seq_lens_q=whole, cu_seq_lens_k=whole, max_length_q=T, max_length_k=T)
    leak = per_sample_losses(models["sdpa_varlen"], packed)
    torch.testing.assert_close(leak[0], lp[0], atol=LOSS_ATOL, rtol=LOSS_RTOL)  # nothing before sample 0
    assert all(abs(float(leak[s].detach() - lp[s].detach())) > 1e-2 for s in lp if s > 0)


def test_sdpa_varlen_refuses_a_batch_without_boundaries(cache, models):
    padded = collate_padded(cache, [0, 1])  # 2D mask, no cu_seq_lens: would silently mix samples
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        models["sdpa_varlen"](**padded.model_inputs(with_labels=False))


def full_logit_loss(model, batch) -> torch.Tensor:
    logits = model(**batch.model_inputs(with_labels=False)).logits.float()
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                                             reduction="sum")


@pytest.mark.parametrize("rows_per_chunk", [32, 100_000])
def test_chunked_loss_equals_full_logits(cache, models, rows_per_chunk):
    """causal_lm_loss_sum (target-only logits, LM head + CE in checkpointed chunks) = the full-logit loss,
    value and gradients, with many chunks (32 rows each) and with one."""
    model = models["sdpa_varlen"]
    batch = collate_packed(cache, pick_bins(cache), 512, attn_implementation="sdpa_varlen")
    vocab = model.get_output_embeddings().out_features
    chunked = causal_lm_loss_sum(model, batch, chunk_elements=rows_per_chunk * vocab)
    full = full_logit_loss(model, batch)
    torch.testing.assert_close(chunked, full, atol=1e-3, rtol=1e-6)
    assert 1.0 < float(full.detach()) / batch.n_targets < 20.0  # a real CE over real targets
    assert batch.n_targets > 3 * 32  # the 32-row case really runs several chunks (188 targets)
    gc = grads_of(model, lambda: causal_lm_loss_sum(model, batch, chunk_elements=rows_per_chunk * vocab))
    gf = grads_of(model, lambda: full_logit_loss(model, batch))
    assert gc.keys() == gf.keys()
    for n in gc:
        torch.testing.assert_close(gc[n], gf[n], atol=GRAD_ATOL, rtol=GRAD_RTOL, msg=n)


def test_chunked_loss_of_a_batch_without_targets_is_a_differentiable_zero(cache, models):
    model = models["sdpa_varlen"]
    batch = collate_packed(cache, [[0]], 512, attn_implementation="sdpa_varlen")
    batch.labels[:] = IGNORE_INDEX
    loss = causal_lm_loss_sum(model, batch)
    assert float(loss) == 0.0
    loss.backward()  # a rank whose micro-batch has no targets still joins the backward


def test_auto_defaults_and_refusals():
    assert attention.resolve("auto", cpu=True) == "sdpa_varlen"
    assert attention.check("auto", cpu=True) == "sdpa_varlen"
    assert attention.check("sdpa", cpu=True) == "sdpa"
    with pytest.raises(ConfigError, match="no FlexAttention backward on CPU") as err:
        attention.check("flex_attention", cpu=True)
    assert err.value.field == "model.attn_implementation"
    with pytest.raises(ConfigError, match="cannot train on CPU"):
        attention.check("flash_attention_2", cpu=True)
    if attention.importlib.util.find_spec("flash_attn") is None:  # the state of this CPU machine
        assert attention.resolve("auto", cpu=False) == "sdpa_varlen"
        with pytest.raises(ConfigError, match="needs the flash_attn package"):
            attention.check("flash_attention_2", cpu=False)
    assert attention.check("flex_attention", cpu=False) == "flex_attention"
    with pytest.raises(ConfigError, match="unknown attention"):
        attention.check("sdpa_packed", cpu=True)


@pytest.mark.slow  # bayling-train --check imports DeepSpeed (~10 s)
@pytest.mark.parametrize("impl,needle", [("flex_attention", "no FlexAttention backward on CPU"),
                                         ("flash_attention_3", "cannot train on CPU")])
def test_check_refuses_gpu_only_attention_in_one_line(tmp_path, tiny_llama2, impl, needle):
    import train_harness as th
    from hostile import assert_one_line_error, run_cli

    args = ["--config", str(th.CONFIG), f"out={tmp_path / 'run'}", f"model.path={tiny_llama2}",
            "model.init=pretrained", f"data.dir={th.FIXTURE_DATA}", f"data.cache_dir={tmp_path / 'cache'}",
            f"model.attn_implementation={impl}", "--check"]
    assert_one_line_error(run_cli("bayling-train", args), "bayling-train", "model.attn_implementation", needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # torch.compile of flex attention and its BlockMask (~50 s on 2 busy cores)
def test_flex_attention_forward_isolates_samples_on_cpu(cache, models, tiny_llama2):
    """flex_attention cannot train on CPU (no backward), but its forward runs compiled: the collated layout
    (padded rows, reset positions, no mask -> transformers' document BlockMask) gives the unpacked losses;
    negative control: the same batch with a KV cache (no packing detection) mixes samples."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama2, attn_implementation="flex_attention",
                                                 dtype=torch.float32).eval()
    bins = pick_bins(cache)
    packed = collate_packed(cache, bins, 512, attn_implementation="flex_attention")
    assert packed.attention_mask is None and packed.position_ids is not None
    with torch.no_grad():
        lp = per_sample_losses(model, packed)
        lu = per_sample_losses(models["sdpa"], collate_padded(cache, [i for b in bins for i in b]))
        packed.extra["use_cache"] = True  # what an eval-mode model defaults to: transformers skips packing
        leak = per_sample_losses(model, packed)  # detection with a cache, so the batch must carry use_cache=False
    assert sorted(lp) == sorted(lu)
    for s in lp:
        torch.testing.assert_close(lp[s], lu[s], atol=LOSS_ATOL, rtol=LOSS_RTOL)
    assert all(abs(float(leak[s] - lp[s])) > 1e-2 for s in lp if s not in (0, len(bins[0])))
