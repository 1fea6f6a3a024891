"""bf16 training on CPU: the GPU path's dtype plumbing (bf16 weights and activations, fp32 loss and master
weights, 16-bit export) runs here and tracks fp32 within a stated tolerance."""

from __future__ import annotations

import json

import pytest
import torch
import train_harness as th

from bayling.train import attention
from bayling.train.cache import open_cache
from bayling.train.packing import causal_lm_loss_sum, collate_packed

# bf16 has an 8-bit mantissa (relative rounding 2^-9 ~ 0.2%) on weights and activations (the loss itself is
# fp32); on the tiny model the per-step loss (~10.4) moved by <= 3e-4 against fp32 when measured (2026-12-03),
# so 0.01 absolute leaves margin while staying well below the step-to-step spread of the losses (~0.1).
LOSS_ATOL = 0.01
STEPS = 4


def run_train(tmp_path, tiny_llama2, dtype: str):
    out = tmp_path / f"run_{dtype}"
    args = th.train_args(out, tiny_llama2, tmp_path / "cache",
                         [f"dtype={dtype}", f"max_steps={STEPS}", "save_every=4", "eval_every=0",
                          "model.attn_implementation=auto", "grad_accum=4"])
    proc = th.run(1, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow  # two real bayling-train runs (DeepSpeed ZeRO-2, one process), ~30 s each on 2 busy cores
def test_bf16_cpu_training_tracks_fp32(tmp_path, tiny_llama2):
    runs = {d: run_train(tmp_path, tiny_llama2, d) for d in ("fp32", "bf16")}
    losses = {d: th.step_losses(out) for d, out in runs.items()}
    assert sorted(losses["bf16"]) == sorted(losses["fp32"]) == list(range(1, STEPS + 1))
    for step, ref in losses["fp32"].items():
        assert abs(losses["bf16"][step] - ref) < LOSS_ATOL, (step, losses["bf16"][step], ref)
    spread = max(losses["fp32"].values()) - min(losses["fp32"].values())
    assert spread > 2 * LOSS_ATOL  # the steps differ by more than the tolerance: the comparison has teeth
    for dtype, want in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        ckpt = runs[dtype] / "checkpoints" / f"step-{STEPS:06d}"
        states = torch.load(ckpt / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        assert {v.dtype for v in states["module"].values()} == {want}, dtype  # the weights trained in
        config = json.loads((runs[dtype] / "final" / "config.json").read_text())
        assert config["dtype"] == "bfloat16"  # 16-bit export by default, from either
    assert list((runs["bf16"] / "checkpoints" / f"step-{STEPS:06d}").glob("bf16_zero_*optim_states.pt"))


def test_bf16_activations_and_fp32_loss(token_cache_dir, tiny_llama2):
    """In the model itself: bf16 hidden states and weight gradients, an fp32 loss within 0.5% of fp32's."""
    from transformers import AutoModelForCausalLM

    cache = open_cache(token_cache_dir)
    name = attention.hf_attn_implementation("auto", cpu=True)
    batch = collate_packed(cache, [[0, 1, 2], [3, 4]], 512, attention.resolve("auto", cpu=True))
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama2, attn_implementation=name, dtype=dtype)
        seen: list[torch.Tensor] = []
        model.model.layers[0].register_forward_hook(lambda m, i, o, seen=seen: seen.append(o))
        loss = causal_lm_loss_sum(model, batch)
        loss.backward()
        assert seen and seen[0].dtype == dtype
        assert loss.dtype == torch.float32
        assert model.lm_head.weight.grad.dtype == model.model.layers[0].self_attn.q_proj.weight.grad.dtype == dtype
        losses[dtype] = float(loss.detach()) / batch.n_targets
    assert losses[torch.bfloat16] == pytest.approx(losses[torch.float32], rel=5e-3)
    assert losses[torch.bfloat16] != losses[torch.float32]  # it really ran in bf16
