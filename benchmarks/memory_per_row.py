"""Peak memory of one training step per packed row: bayling-train's attention/loss paths vs TRL's SFTTrainer.

Why: the memory of one packed row decides the context length a GPU can train at. Two things used to grow
with the row: a dense block-diagonal attention mask ([L, L], quadratic) and fp32 logits over the vocabulary
(Llama-3: 128,256 columns per scored token). This script measures one forward+backward step of a small
Llama body with the REAL vocabulary sizes at 2k-16k tokens per packed row.

Systems (same model weights, same tokens, same assistant mask, same loss value - checked):
  trl                 TRL's SFTTrainer loss path: its padding-free collator output
                      (DataCollatorForLanguageModeling(padding_free=True) on a packed row with seq_lengths) and
                      the model patched by trl's add_fused_lm_head, called with fused_lm_head=True, as
                      SFTTrainer.compute_loss does. Attention "sdpa": on CPU transformers turns the reset
                      position ids into a dense [1, 1, T, T] mask.
  sdpa                bayling, dense block-diagonal mask (the pre-issue-14 default), chunked target-only loss
  sdpa_varlen:nochunk bayling, no mask (per-sample SDPA), target-only logits in ONE chunk (the old loss)
  sdpa_varlen         bayling, no mask, chunked loss: the default on CPU
  eager               bayling, dense additive mask + [B, H, L, L] scores (not in the default set)

Method: each case runs in a fresh subprocess. After building the model and the batch it calls gc and
glibc's malloc_trim(0), resets the kernel's RSS high-water mark (``echo 5 > /proc/self/clear_refs``) and
reads VmRSS as the baseline; after the step it reads VmHWM. Step memory = VmHWM - baseline: activations,
saved tensors, masks, logits and the parameter gradients (the same size for every system). The CPU
allocator does not cache, so this is the peak of live tensors plus allocator slack.

    pip install -e '.[bench]'                                          # TRL, pinned
    python benchmarks/memory_per_row.py                                # 128,256 + 32,000 vocab, 2k-16k
    python benchmarks/memory_per_row.py --vocabs 32000 --lengths 2048  # one quick case
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SYSTEMS = ("trl", "sdpa", "sdpa_varlen:nochunk", "sdpa_varlen")


def proc_status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def make_docs(length: int, vocab: int, seed: int):
    """Documents filling exactly ``length`` tokens: 64-1024 tokens each, the first 30-60% prompt (no loss)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    docs, used = [], 0
    while used < length:
        n = min(int(rng.integers(64, 1025)), length - used)
        ids = rng.integers(3, vocab, size=n, dtype=np.int64)
        labels = ids.copy()
        labels[: max(1, int(n * rng.uniform(0.3, 0.6)))] = -100
        docs.append((ids, labels))
        used += n
    return docs


class DocCache:
    """The token-cache interface collate_packed reads (``get``, ``pad_id``, ``lengths``)."""

    def __init__(self, docs):
        self.docs, self.pad_id, self.lengths = docs, 0, [len(d[0]) for d in docs]

    def get(self, i):
        return self.docs[i]


def build_model(a, vocab: int, attn: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=a.hidden, intermediate_size=a.hidden * 8 // 3 // 16 * 16,
                      num_hidden_layers=a.layers, num_attention_heads=a.hidden // 64,
                      num_key_value_heads=max(1, a.hidden // 128), max_position_embeddings=max(a.lengths),
                      tie_word_embeddings=False, use_cache=False)
    torch.manual_seed(0)
    cfg._attn_implementation = attn
    model = LlamaForCausalLM(cfg).to({"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]).train()
    if a.checkpointing:  # as bayling.train.engine.load_model (transformers 5 renamed the method)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def run_case(a, system: str, vocab: int, length: int) -> dict:
    """One step in this (fresh) process; returns the measurement as a dict."""
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    docs = make_docs(length, vocab, a.seed)
    impl, _, variant = system.partition(":")
    if system == "trl":
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
        from trl.trainer.utils import add_fused_lm_head

        model = build_model(a, vocab, "sdpa")
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer.__init__
        example = {"input_ids": np.concatenate([d[0] for d in docs]).tolist(),
                   "labels": np.concatenate([d[1] for d in docs]).tolist(), "seq_lengths": [len(d[0]) for d in docs]}
        inputs = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([example])
        n_targets = int((inputs["labels"][:, 1:] != -100).sum())

        def step():
            out = model(**inputs, use_cache=False, fused_lm_head=True)  # SFTTrainer.compute_loss
            loss = -out.log_probs.sum() / out.label_mask.sum()
            loss.backward()
            return float(loss.detach())
    else:
        from bayling.train.attention import hf_attn_implementation
        from bayling.train.packing import LOSS_CHUNK_ELEMENTS, causal_lm_loss_sum, collate_packed

        model = build_model(a, vocab, hf_attn_implementation(impl, cpu=True))
        batch = collate_packed(DocCache(docs), [list(range(len(docs)))], length, impl,
                               mask_dtype=next(model.parameters()).dtype)
        n_targets = batch.n_targets
        chunk = 1 << 62 if variant == "nochunk" else LOSS_CHUNK_ELEMENTS

        def step():
            loss = causal_lm_loss_sum(model, batch, chunk_elements=chunk) / n_targets
            loss.backward()
            return float(loss.detach())

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = proc_status_kb("VmRSS")
    t0 = time.perf_counter()
    loss = step()
    seconds = time.perf_counter() - t0
    peak = proc_status_kb("VmHWM")
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return {"system": system, "vocab": vocab, "length": length, "docs": len(docs), "targets": n_targets,
            "loss": loss, "step_mib": (peak - base) / 1024, "baseline_mib": base / 1024,
            "grads_mib": grads / 2**20, "seconds": seconds}


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def child_cmd(a, system, vocab, length) -> list[str]:
    cmd = [sys.executable, __file__, "--case", system, str(vocab), str(length), "--hidden", str(a.hidden),
           "--layers", str(a.layers), "--dtype", a.dtype, "--threads", str(a.threads), "--seed", str(a.seed),
           "--lengths", *map(str, a.lengths)]
    return cmd + ([] if a.checkpointing else ["--no-checkpointing"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocabs", type=int, nargs="+", default=[128256, 32000], help="Llama-3 and Llama-2 sizes")
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384], help="tokens per row")
    ap.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS),
                    choices=[*DEFAULT_SYSTEMS, "eager", "sdpa_varlen:nochunk"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                    help="activation checkpointing is on by default (bayling recipes and TRL's SFTConfig default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "memory_per_row.json")
    ap.add_argument("--render", type=Path, nargs="+", help="print one table from earlier --out files and exit")
    ap.add_argument("--case", nargs=3, metavar=("SYSTEM", "VOCAB", "LENGTH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.case:
        print(json.dumps(run_case(a, a.case[0], int(a.case[1]), int(a.case[2]))))
        return 0
    if a.render:
        parts = [json.loads(f.read_text()) for f in a.render]
        merged = {"settings": parts[0]["settings"], "results": [r for p in parts for r in p["results"]],
                  "load_average": [x for p in parts for x in p["load_average"]]}
        print(render(merged))
        return 0 if losses_agree(merged["results"]) else 1
    import importlib.util

    if "trl" in a.systems and importlib.util.find_spec("trl") is None:
        print("memory_per_row.py: error: system 'trl' needs TRL: pip install -e '.[bench]' (or drop it with "
              "--systems)", file=sys.stderr)
        return 2
    from tqdm import tqdm

    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO)}
    cases = [(v, n) for v in a.vocabs for n in a.lengths]
    results, loads = [], [load_avg()]
    with tqdm(total=len(cases) * len(a.systems), desc="memory_per_row", unit="case") as bar:
        for vocab, length in cases:
            for system in a.systems:  # alternated within each (vocab, length)
                bar.set_postfix_str(f"{system} V={vocab} L={length}")
                proc = subprocess.run(child_cmd(a, system, vocab, length), capture_output=True, text=True, env=env)
                if proc.returncode:
                    results.append({"system": system, "vocab": vocab, "length": length,
                                    "error": proc.stderr.strip().splitlines()[-1:]})
                else:
                    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                loads.append(load_avg())
                bar.update()
    summary = {"settings": {k: v for k, v in vars(a).items() if k not in ("case", "out")},
               "load_average": loads, "results": results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(render(summary))
    print(f"\nmachine-readable: {a.out}")
    return 1 if any("error" in r for r in results) or not losses_agree(results) else 0


def losses_agree(results) -> bool:
    """Same batch, same weights: every system's loss must agree per (vocab, length) (rel 1e-4)."""
    ok = True
    for key in {(r["vocab"], r["length"]) for r in results}:
        vals = [r["loss"] for r in results if (r["vocab"], r["length"]) == key and "loss" in r]
        if vals and (max(vals) - min(vals)) > 1e-4 * abs(statistics.mean(vals)):
            print(f"LOSS MISMATCH at vocab {key[0]}, length {key[1]}: {vals}")
            ok = False
    return ok


def render(summary) -> str:
    res = summary["results"]
    systems = list(dict.fromkeys(r["system"] for r in res))
    s = summary["settings"]
    head = (f"Peak step memory (MiB above the post-build baseline), {s['layers']} layers, hidden {s['hidden']}, "
            f"{s['dtype']}, activation checkpointing {'on' if s['checkpointing'] else 'off'}; "
            f"ratio = bayling sdpa_varlen / trl")
    lines = [head, "", "| vocab | tokens/row | " + " | ".join(systems) + " | ratio | loss (all equal) |",
             "|---" * (len(systems) + 4) + "|"]
    for vocab in dict.fromkeys(r["vocab"] for r in res):
        for length in dict.fromkeys(r["length"] for r in res):
            row = {r["system"]: r for r in res if r["vocab"] == vocab and r["length"] == length}
            cells = [f"{row[x]['step_mib']:,.0f}" if "step_mib" in row.get(x, {}) else "error" for x in systems]
            ratio = ""
            if "step_mib" in row.get("trl", {}) and "step_mib" in row.get("sdpa_varlen", {}):
                ratio = f"{row['sdpa_varlen']['step_mib'] / row['trl']['step_mib']:.2f}x"
            loss = next((f"{r['loss']:.4f}" for r in row.values() if "loss" in r), "")
            lines.append(f"| {vocab:,} | {length:,} | " + " | ".join(cells) + f" | {ratio} | {loss} |")
    lines.append("")
    lines.append("Step seconds: " + "; ".join(
        f"{r['system']} V={r['vocab']} L={r['length']}: {r['seconds']:.1f}" for r in res if "seconds" in r))
    lines.append(f"Load average (1/5/15 min) before and after each case: {summary['load_average']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
