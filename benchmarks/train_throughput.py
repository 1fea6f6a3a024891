"""Trainer throughput on CPU: bayling-train (packing) vs an Alpaca-style HF Trainer baseline (pad to longest).

    python benchmarks/train_throughput.py [--repeats 3] [--steps 12] [--max-length 2048] [--out runs/bench/train]
                                         [--variant]   # also: bayling-train with packing.causal_lm_loss_sum

Same tiny random-init Llama (hidden 64, 2 layers, real Llama-2 tokenizer), same data (the demo mix built
by ``bayling-build-data``; if the demo recipe is absent, the real-text fixture tests/train/data), same
max length, fp32, 2 processes (torchrun, gloo) each. The two systems alternate within every repeat
(side by side, same machine load); the figures are medians over repeats.

- bayling-train: ``torchrun --nproc_per_node 2 -m bayling.cli.train`` (DeepSpeed ZeRO-2, BFD packing,
  block-diagonal SDPA mask), micro-batch = 1 packed row per rank; real tokens/s from its metrics.jsonl.
- baseline: ``transformers.Trainer`` under DDP, ``per_device_train_batch_size`` samples padded to the
  longest in the batch, no packing (the Alpaca recipe's collator), same labels; real tokens counted by
  its collator, time between the end of the warm-up steps and the end of training.

Also reported: packing efficiency (real / slot tokens) of BFD at 2048 on the data, against the
baseline's fraction of real tokens when padding random batches to their longest sample.
Writes OUT/train_throughput.json (machine) and prints a Markdown table (people).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "train" / "data" / "conversations.jsonl"


def build_data(out: Path) -> tuple[Path, str]:
    """The demo mix from bayling-build-data, or the shipped real-text fixture when the demo is not there."""
    recipe = REPO / "data" / "recipes" / "demo.yaml"
    target = out / "data"
    if recipe.is_file():
        if not (target / "manifest.json").is_file():
            cmd = [sys.executable, "-m", "bayling.cli.build_data", "--recipe", str(recipe), "--out", str(target),
                   "--no-progress"]
            if subprocess.run(cmd, cwd=REPO).returncode == 0:
                return target, "demo mix (bayling-build-data, data/recipes/demo.yaml)"
            print("bayling-build-data failed; using the fixture instead", file=sys.stderr)
        else:
            return target, "demo mix (bayling-build-data, data/recipes/demo.yaml)"
    target = out / "fixture_data"
    (target / "train").mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, target / "train" / "00000.jsonl")
    return target, "tests/train/data/conversations.jsonl (demo recipe absent)"


def padding_fraction(lengths: np.ndarray, batch: int, seeds: int = 5) -> float:
    """Real-token fraction of random batches padded to their longest sample (median over shuffles)."""
    fracs = []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(lengths))
        real = slots = 0
        for i in range(0, len(order), batch):
            chunk = lengths[order[i : i + batch]]
            real += int(chunk.sum())
            slots += int(chunk.max()) * len(chunk)
        fracs.append(real / slots)
    return statistics.median(fracs)


def torchrun(args: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)


def patched_train_main(argv: list[str]) -> int:
    """bayling-train with its loss computed by ``causal_lm_loss_sum`` (the ``--variant`` measurement)."""
    from bayling.cli import train as cli
    from bayling.train import loop
    from bayling.train.packing import causal_lm_loss_sum

    loop.token_loss_sum = causal_lm_loss_sum
    return cli.main(argv)


def run_bayling(model: Path, data: Path, cache: Path, out: Path, a, env: dict, patched: bool = False) -> float:
    shutil.rmtree(out, ignore_errors=True)
    overrides = [f"model.path={model}", "model.init=pretrained", "model.gradient_checkpointing=false",
                 f"data.dir={data}", f"data.max_length={a.max_length}", f"data.cache_dir={cache}",
                 "data.packing=true", f"out={out}", "micro_batch=1", "grad_accum=1", f"max_steps={a.steps}",
                 "zero=2", "dtype=fp32", "log_every=1", "eval_every=0", "save_every=100000", "optim.lr=0.001"]
    entry = [__file__, "--patched-train"] if patched else ["-m", "bayling.cli.train"]
    res = torchrun([*entry, "--config", str(REPO / "data/recipes/train/tiny_cpu.yaml"),
                    "--resume", "none", *overrides], env)
    if res.returncode != 0:
        raise SystemExit(f"bayling-train failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "real_tokens" in r and r["step"] > a.warmup]
    return sum(r["real_tokens"] for r in recs) / sum(r["step_seconds"] for r in recs)


def run_baseline(model: Path, cache: Path, out: Path, a, env: dict) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = torchrun([__file__, "--worker", "--model", str(model), "--cache", str(cache), "--out", str(out),
                    "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.baseline_batch)], env)
    if res.returncode != 0:
        raise SystemExit(f"baseline failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    parts = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    return sum(p["tokens"] for p in parts) / max(p["seconds"] for p in parts)


def baseline_worker(a) -> None:
    """One DDP rank of the Alpaca-style baseline: HF Trainer, pad to longest in the batch, no packing."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from bayling.train.cache import open_cache

    rank = int(os.environ.get("RANK", "0"))
    cache = open_cache(a.cache)
    counted: list[int] = []

    def collate(features):
        n = max(len(f[0]) for f in features)
        ids = torch.full((len(features), n), cache.pad_id, dtype=torch.long)
        lab = torch.full((len(features), n), -100, dtype=torch.long)
        att = torch.zeros((len(features), n), dtype=torch.long)
        for r, (i, lb) in enumerate(features):
            ids[r, : len(i)], lab[r, : len(i)], att[r, : len(i)] = torch.from_numpy(i), torch.from_numpy(lb), 1
        counted.append(int(att.sum()))
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(cache)

        def __getitem__(self, i):
            return cache.get(i)

    marks: dict = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == a.warmup:
                marks["t0"], marks["n0"] = time.perf_counter(), len(counted)

        def on_train_end(self, args, state, control, **kw):
            marks["t1"], marks["n1"] = time.perf_counter(), len(counted)

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    targs = TrainingArguments(output_dir=str(a.out / "trainer"), per_device_train_batch_size=a.batch,
                              gradient_accumulation_steps=1, max_steps=a.steps, learning_rate=1e-3,
                              lr_scheduler_type="cosine", warmup_steps=1, logging_steps=10**6,
                              save_strategy="no", report_to=[], use_cpu=True, ddp_backend="gloo",
                              dataloader_num_workers=0, remove_unused_columns=False, seed=42,
                              disable_tqdm=True)
    Trainer(model=model, args=targs, train_dataset=Data(), data_collator=collate, callbacks=[Clock()]).train()
    tokens = sum(counted[marks["n0"] : marks["n1"]])
    (a.out / f"rank{rank}.json").write_text(json.dumps({"tokens": tokens, "seconds": marks["t1"] - marks["t0"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "train")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--baseline-batch", type=int, default=4, help="per-device batch of the baseline (Alpaca: 4)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--variant", action="store_true",
                   help="also time bayling-train with its loss from packing.causal_lm_loss_sum (logits on targets only)")
    if len(sys.argv) > 1 and sys.argv[1] == "--patched-train":
        raise SystemExit(patched_train_main(sys.argv[2:]))
    a = p.parse_args()
    if a.worker:
        return baseline_worker(a)

    from bayling.models import build_tiny_llama
    from bayling.tokenizer import tokenizer_dir
    from bayling.train.cache import CacheSpec, open_cache, prepare_cache
    from bayling.train.packing import pack_best_fit_decreasing, packing_efficiency

    a.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")})
    data, data_label = build_data(a.out)
    model = a.out / "model"
    if not (model / "config.json").is_file():
        build_tiny_llama(str(tokenizer_dir("llama2")), model)
    cache_root = a.out / "cache"
    cache = open_cache(prepare_cache(CacheSpec(data, model, "bayling", a.max_length, "truncate", cache_root)))
    lengths = cache.lengths
    eff_2048 = packing_efficiency(lengths, pack_best_fit_decreasing(lengths, 2048), 2048) if a.max_length >= 2048 \
        else None
    pad_frac = padding_fraction(lengths, a.baseline_batch)
    ours, base, variant = [], [], []
    for r in range(a.repeats):
        ours.append(run_bayling(model, data, cache_root, a.out / "bayling_run", a, env))
        base.append(run_baseline(model, cache.root, a.out / "baseline_run", a, env))
        if a.variant:
            variant.append(run_bayling(model, data, cache_root, a.out / "variant_run", a, env, patched=True))
        extra = f", bayling-train+causal_lm_loss_sum {variant[-1]:,.0f}" if a.variant else ""
        print(f"repeat {r + 1}/{a.repeats}: bayling-train {ours[-1]:,.0f} real tok/s, baseline {base[-1]:,.0f}{extra}",
              flush=True)
    result = {
        "data": data_label, "samples": len(cache), "mean_tokens_per_sample": float(lengths.mean()),
        "max_length": a.max_length, "steps": a.steps, "warmup_steps": a.warmup, "repeats": a.repeats,
        "baseline_batch": a.baseline_batch, "processes": 2, "model": "tiny Llama (hidden 64, 2 layers), fp32, CPU",
        "bayling_tokens_per_s": ours, "baseline_tokens_per_s": base,
        "bayling_median": statistics.median(ours), "baseline_median": statistics.median(base),
        "speedup": statistics.median(ours) / statistics.median(base),
        "speedup_per_repeat": [o / b for o, b in zip(ours, base)],
        "median_speedup_per_repeat": statistics.median(o / b for o, b in zip(ours, base)),
        "variant_tokens_per_s": variant,
        "variant_median": statistics.median(variant) if variant else None,
        "variant_speedup_per_repeat": [v / b for v, b in zip(variant, base)],
        "packing_efficiency_2048": eff_2048, "baseline_real_token_fraction": pad_frac,
    }
    (a.out / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nData: {data_label}; {len(cache)} samples, mean {lengths.mean():.0f} tokens; max length {a.max_length}\n")
    print(f"| system | real tokens/s (median of {a.repeats}) | real-token fraction |")
    print("|---|---|---|")
    eff = f"{eff_2048:.1%} (BFD at 2048)" if eff_2048 is not None else "n/a"
    print(f"| bayling-train (packing, ZeRO-2, 2 procs) | {result['bayling_median']:,.0f} | {eff} |")
    if variant:
        print(f"| bayling-train, loss via causal_lm_loss_sum | {result['variant_median']:,.0f} | {eff} |")
    print(f"| HF Trainer, pad to longest, batch {a.baseline_batch} (2 procs) | {result['baseline_median']:,.0f} "
          f"| {pad_frac:.1%} |")
    ratios = ", ".join(f"{x:.2f}" for x in result["speedup_per_repeat"])
    print(f"\nspeedup (ratio of medians): {result['speedup']:.2f}x (goal >= 2x); per repeat: {ratios}; "
          f"written {a.out / 'train_throughput.json'}")


if __name__ == "__main__":
    main()
