"""MFU of full fine-tuning a ~1B Llama on ONE GPU with BayLing packing (the attention bayling-train picks).

    python benchmarks/gpu_mfu.py [--steps 30] [--warmup 5] [--micro-batch 4] [--max-length 2048]
                                 [--peak-tflops 989] [--attn auto|sdpa_varlen|flash_attention_2|sdpa|...] [--out runs/bench/gpu]

Model: random-init Llama with TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632,
vocab 32000 = the real Llama-2 tokenizer), bf16 weights, torch AdamW (fused), no gradient checkpointing.
Data: the real-text fixture (tests/train/data) tokenised with the ``bayling`` template into the token cache,
BFD-packed into max-length rows (cycled), collated exactly as bayling-train does (``collate_packed``).

MFU = achieved model FLOP/s / peak. Model FLOPs per step = 6 * params * real tokens (dense matmuls, forward
+ backward) + 12 * layers * hidden * sum(sample_len^2) / 2 (causal attention inside each packed sample);
the "6N" figure without the attention term is printed too. Peak default: 989 TFLOP/s (H100 SXM bf16 dense).
Exits with code 2 and a one-line message on a machine without a CUDA GPU.
Writes OUT/gpu_mfu.json and prints a Markdown line for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIXTURE = REPO / "tests" / "train" / "data" / "conversations.jsonl"
from bayling.train.attention import CHOICES  # noqa: E402

SHAPE = dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
             intermediate_size=5632, max_position_embeddings=4096, tie_word_embeddings=False)


def pick_attention(choice: str) -> str:
    """The trainer's own choice (bayling.train.attention): ``auto`` -> flash_attention_2 with flash-attn,
    else sdpa_varlen (per-sample SDPA, no mask); an explicit name is checked as bayling-train checks it, and
    sdpa_varlen is registered with transformers."""
    from bayling.train.attention import check, hf_attn_implementation

    return hf_attn_implementation(check(choice, cpu=False), cpu=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--micro-batch", type=int, default=4, help="packed rows per step")
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--attn", default="auto", choices=CHOICES, help="as model.attn_implementation")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "gpu")
    a = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_mfu.py: error: needs a CUDA GPU, and torch.cuda.is_available() is False on this machine "
              "(run it on a GPU node; the CPU throughput benchmark is benchmarks/train_throughput.py)", file=sys.stderr)
        return 2
    from transformers import LlamaConfig, LlamaForCausalLM

    from bayling.errors import ConfigError
    from bayling.tokenizer import tokenizer_dir
    from bayling.train.cache import CacheSpec, open_cache, prepare_cache
    from bayling.train.packing import collate_packed, pack_best_fit_decreasing, packing_efficiency

    try:
        attn = pick_attention(a.attn)
    except ConfigError as e:
        print(f"gpu_mfu.py: error: {e}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu_mfu_"))
    (work / "data" / "train").mkdir(parents=True)
    (work / "data" / "train" / "00000.jsonl").write_bytes(FIXTURE.read_bytes())
    spec = CacheSpec(work / "data", tokenizer_dir("llama2"), "bayling", a.max_length, "truncate", work / "cache")
    cache = open_cache(prepare_cache(spec))
    bins = pack_best_fit_decreasing(cache.lengths, a.max_length)
    eff = packing_efficiency(cache.lengths, bins, a.max_length)

    dev = torch.device("cuda")
    cfg = LlamaConfig(vocab_size=32000, pad_token_id=cache.pad_id, **SHAPE)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dtype=torch.bfloat16)
    model.config._attn_implementation = attn
    model.to(dev).train()
    n_params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def batch_for(step: int):
        chosen = [bins[(step * a.micro_batch + k) % len(bins)] for k in range(a.micro_batch)]
        b = collate_packed(cache, chosen, a.max_length, attn_implementation=attn, mask_dtype=torch.bfloat16)
        attn_flops = 12 * SHAPE["num_hidden_layers"] * SHAPE["hidden_size"] * sum(
            int(cache.lengths[i]) ** 2 for row in chosen for i in row) / 2
        return b.to(dev), b.n_real_tokens, attn_flops

    times, tokens, flops_attn = [], [], []
    for step in range(a.warmup + a.steps):
        batch, real, af = batch_for(step)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(**batch.model_inputs())
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
            tokens.append(real)
            flops_attn.append(af)
    secs = sum(times)
    tps = sum(tokens) / secs
    mfu_6n = 6 * n_params * tps / (a.peak_tflops * 1e12)
    mfu = (6 * n_params * sum(tokens) + sum(flops_attn)) / secs / (a.peak_tflops * 1e12)
    result = {"device": torch.cuda.get_device_name(0), "attn_implementation": attn, "params": n_params,
              "micro_batch_rows": a.micro_batch, "max_length": a.max_length, "packing_efficiency": eff,
              "steps": a.steps, "median_step_s": statistics.median(times), "real_tokens_per_s": tps,
              "mfu_6N": mfu_6n, "mfu_with_attention": mfu, "peak_tflops": a.peak_tflops,
              "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_mfu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\n| {result['device']} | {n_params / 1e9:.2f}B Llama, bf16, {attn}, {a.micro_batch}x{a.max_length} packed "
          f"({eff:.1%}) | {tps:,.0f} real tok/s | MFU {mfu:.1%} (6N only: {mfu_6n:.1%}) | "
          f"peak mem {result['peak_memory_gb']:.1f} GB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
