"""Host-side collation per step vs the GPU step it feeds (issue 14.5): can the input pipeline stall a GPU?

    python benchmarks/collate_cost.py [--repeats 20] [--out runs/bench/collate]

Times ``bayling.train.packing.collate_packed`` (what bayling-train's loop runs for every micro-batch) on the
shipped real-text conversations packed by BFD, at the shapes of benchmarks/gpu_check.sh (4 x 2048 and
2 x 4096 tokens per step; SDPA block-diagonal mask, and flash-attention varlen without a mask), one thread,
and compares the median with the step time of TinyLlama-1.1B's shape on an H100/H200 at 45% MFU (the goal):
step = tokens x model FLOPs per token / (0.45 x 989 TFLOP/s). The share is what a step would wait for its
data if collation ran synchronously, which bayling-train's background collation hides on GPU
(bayling/train/loop.py, ``BatchFeed``). Writes OUT/collate_cost.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIXTURE = REPO / "tests" / "train" / "data" / "conversations.jsonl"
PARAMS_1B, VOCAB, HIDDEN, LAYERS = 1_100_048_384, 32000, 2048, 22


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "collate")
    a = ap.parse_args()
    import torch

    from bayling.tokenizer import tokenizer_dir
    from bayling.train.cache import CacheSpec, open_cache, prepare_cache
    from bayling.train.packing import collate_packed, pack_best_fit_decreasing

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        (data / "train").mkdir(parents=True)
        shutil.copy(FIXTURE, data / "train" / "00000.jsonl")
        for length, micro in ((2048, 4), (4096, 2)):
            cache = open_cache(prepare_cache(CacheSpec(data, tokenizer_dir("llama2"), "bayling", length, "truncate",
                                                       Path(tmp) / "cache"), show_progress=False))
            bins = pack_best_fit_decreasing(cache.lengths, length)
            for attn in ("sdpa", "flash_attention_2"):
                times, tokens, sq = [], 0, 0
                for r in range(a.repeats):
                    chosen = [bins[(r * micro + k) % len(bins)] for k in range(micro)]
                    t0 = time.perf_counter()
                    batch = collate_packed(cache, chosen, length, attn, torch.bfloat16)
                    times.append(time.perf_counter() - t0)
                    tokens += batch.n_real_tokens
                    sq += sum(int(cache.lengths[i]) ** 2 for b in chosen for i in b)
                per_token = 6 * (PARAMS_1B - VOCAB * HIDDEN) + 6 * LAYERS * HIDDEN * sq / tokens
                step = (tokens / a.repeats) * per_token / (0.45 * 989e12)
                med = statistics.median(times)
                rows.append({"max_length": length, "micro_batch": micro, "attn": attn, "collate_ms": med * 1e3,
                             "collate_ms_max": max(times) * 1e3, "gpu_step_ms_at_45pct_mfu": step * 1e3,
                             "share_of_step": med / step})
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "collate_cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| rows x length | attention | collate ms (median, max) | 1B step ms on H100 at 45% MFU | collate / step |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['micro_batch']} x {r['max_length']} | {r['attn']} | {r['collate_ms']:.1f} ({r['collate_ms_max']:.1f}) "
              f"| {r['gpu_step_ms_at_45pct_mfu']:.0f} | {r['share_of_step']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
