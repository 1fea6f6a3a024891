"""Trainer throughput on CPU: bayling-train vs TRL's SFTTrainer vs an Alpaca-style HF Trainer, two model regimes.

    python benchmarks/train_throughput.py [--regime tiny|body] [--systems bayling,trl,hf] [--repeats 3]
                                         [--steps 12] [--warmup 2] [--max-length N] [--out runs/bench/train]
                                         [--zero 0|2|3] [--variant]   # --variant: loss via causal_lm_loss_sum

Regimes (random-init Llama, real Llama-2 tokenizer, 32k vocabulary, fp32):
- ``tiny``: hidden 64, 2 layers (the CI/demo model). The LM head (64 x 32,000) is ~90% of the FLOPs, so
  this regime measures loss code more than anything else. Default max length 2048.
- ``body``: hidden 1024, 4 layers, 16 heads / 4 KV heads, FFN 2816: the decoder layers are ~58% of the
  matmul FLOPs per position (the head is a minority), like a real model where the head is 2-10%.
  Default max length 512, so a step takes seconds on 2 cores.

Same data for all (the demo mix built by ``bayling-build-data``, else the real-text fixture
tests/train/data) through ONE token cache (bayling.train.cache): identical token ids and assistant masks;
same max length, fp32, 2 processes (torchrun, gloo, 1 intra-op thread each), 1 packed row per rank per step.
The systems alternate within every repeat (same machine load); figures are medians over repeats, with the
per-repeat ratios to bayling-train and the load average sampled around each run.

- bayling: ``torchrun -m bayling.cli.train`` with ``zero: --zero`` (default 0: DeepSpeed's data parallelism, the
  fastest stage on CPU; BENCHMARKS.md), BFD packing, its CPU attention (``auto`` = sdpa_varlen: unpadded rows,
  per-sample SDPA, no mask), logits only at target positions; real tokens / step seconds from its metrics.jsonl.
- zero2: the same bayling-train with ``zero: 2`` (ZeRO-2), to time the stage itself side by side.
- trl: TRL ``SFTTrainer`` (``pip install -e '.[bench]'``), packing="bfd" + padding-free + completion-only
  loss, DDP; its settings in benchmarks/_throughput_peers.py.
- hf: ``transformers.Trainer`` (DDP), 4 samples per device padded to the longest, no packing.

Before timing, an equal-loss check: on the rows of bayling-train's first step, from the same weights,
bayling-train's loss path and TRL's (its own packing, collator and loss) must give the same loss (rel. 1e-5)
and gradient norm (rel. 1e-4); the script stops otherwise. Writes OUT/train_throughput_REGIME.json (machine)
and prints a Markdown table (people).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "train" / "data" / "conversations.jsonl"
REGIMES = {
    "tiny": {"shape": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128),
             "max_length": 2048, "label": "tiny Llama (hidden 64, 2 layers, vocab 32k), fp32, CPU"},
    "body": {"shape": dict(hidden_size=1024, num_layers=4, num_heads=16, num_kv_heads=4, intermediate_size=2816),
             "max_length": 512, "label": "Llama hidden 1024, 4 layers, 16/4 heads, FFN 2816, vocab 32k, fp32, CPU"},
}
SYSTEMS = ("bayling", "trl", "hf", "zero2")
LABELS = {"bayling": "bayling-train (BFD packing, zero {zero})", "zero2": "bayling-train (BFD packing, ZeRO-2)", "trl": "TRL 1.16 SFTTrainer (bfd, padding-free)",
          "hf": "HF Trainer, pad to longest, batch 4", "variant": "bayling-train, loss via causal_lm_loss_sum"}


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


def run_bayling(model: Path, data: Path, cache: Path, out: Path, a, env: dict,
                patched: bool = False, zero: str | None = None) -> tuple[float, float]:
    """Real tokens/s from bayling-train's own metrics, and the share of step time spent waiting for data."""
    shutil.rmtree(out, ignore_errors=True)
    overrides = [f"model.path={model}", "model.init=pretrained", "model.gradient_checkpointing=false",
                 f"data.dir={data}", f"data.max_length={a.max_length}", f"data.cache_dir={cache}",
                 "data.packing=true", f"out={out}", "micro_batch=1", "grad_accum=1", f"max_steps={a.steps}",
                 f"zero={zero or a.zero}", "dtype=fp32", "log_every=1", "eval_every=0", "save_every=100000", "optim.lr=0.001"]
    entry = [__file__, "--patched-train"] if patched else ["-m", "bayling.cli.train"]
    res = torchrun([*entry, "--config", str(REPO / "data/recipes/train/tiny_cpu.yaml"),
                    "--resume", "none", *overrides], env)
    if res.returncode != 0:
        raise SystemExit(f"bayling-train failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "real_tokens" in r and r["step"] > a.warmup]
    secs = sum(r["step_seconds"] for r in recs)
    return sum(r["real_tokens"] for r in recs) / secs, sum(r.get("data_wait_seconds", 0.0) for r in recs) / secs


def head_fraction(shape: dict, vocab: int = 32000) -> float:
    """Share of the LM head in the per-position matmul FLOPs (decoder layers + head; attention scores excluded)."""
    h, kv = shape["hidden_size"], shape["hidden_size"] * shape["num_kv_heads"] // shape["num_heads"]
    layer = 2 * h * h + 2 * h * kv + 3 * h * shape["intermediate_size"]
    return vocab * h / (shape["num_layers"] * layer + vocab * h)


def run_peer(kind: str, model: Path, cache: Path, out: Path, a, env: dict) -> tuple[float, list[float]]:
    """Real tokens/s of the TRL or HF peer, and its per-step losses (summed over ranks)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = torchrun([__file__, "--worker", kind, "--model", str(model), "--cache", str(cache), "--out", str(out),
                    "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.baseline_batch),
                    "--max-length", str(a.max_length)], env)
    if res.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    parts = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    losses = [sum(x) for x in zip(*(p["losses"] for p in parts))]
    return sum(p["tokens"] for p in parts) / max(p["seconds"] for p in parts), losses


def bayling_losses(out: Path) -> list[float]:
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["loss"] for r in recs if "loss" in r]


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"


def check_equal_loss(model: Path, cache, bins, a) -> list[dict]:
    """The equal-loss gate (module docstring) on the rows of bayling-train's first step."""
    from _throughput_peers import equal_loss_check

    from bayling.train.plans import StepLayout, plan_steps

    first = plan_steps(bins, StepLayout(micro_batch=1, world_size=2, seed=42, grad_accum=1), 0)[0]
    rows = [bins[b] for rank in first.micro_batches for mb in rank for b in mb]
    checks = equal_loss_check(model, cache, rows, a.max_length, a.out / "equal_loss")
    for c in checks:
        ok = (c["tokens"] == c["trl_tokens"] and c["targets"] == c["trl_targets"]
              and abs(c["bayling_loss"] - c["trl_loss"]) <= 1e-5 * abs(c["trl_loss"])
              and abs(c["bayling_grad_norm"] - c["trl_grad_norm"]) <= 1e-4 * abs(c["trl_grad_norm"]))
        print(f"equal-loss check: {c['samples']} samples, {c['tokens']} tokens, {c['targets']} targets: "
              f"loss {c['bayling_loss']:.6f} vs TRL {c['trl_loss']:.6f}, grad norm {c['bayling_grad_norm']:.6f} "
              f"vs {c['trl_grad_norm']:.6f} -> {'ok' if ok else 'MISMATCH'}", flush=True)
        if not ok:
            raise SystemExit("train_throughput.py: error: bayling-train and TRL disagree on the same batch")
    return checks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "train")
    p.add_argument("--regime", choices=sorted(REGIMES), default="tiny")
    p.add_argument("--systems", default="bayling,trl,hf", help="comma list of " + ",".join(SYSTEMS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-length", type=int, default=None, help="default: 2048 (tiny), 512 (body)")
    p.add_argument("--zero", default="0", choices=["0", "2", "3"],
                   help="bayling-train's ZeRO stage (0: DeepSpeed data parallel, the fastest on CPU)")
    p.add_argument("--baseline-batch", type=int, default=4, help="per-device batch of the HF baseline (Alpaca: 4)")
    p.add_argument("--worker", choices=["trl", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--breakdown", type=int, default=4, metavar="ROWS",
                   help="time the compute parts of each system on this many rows first (0: skip)")
    p.add_argument("--variant", action="store_true",
                   help="also time bayling-train with its loss from packing.causal_lm_loss_sum (logits on targets only)")
    if len(sys.argv) > 1 and sys.argv[1] == "--patched-train":
        raise SystemExit(patched_train_main(sys.argv[2:]))
    a = p.parse_args()
    regime = REGIMES[a.regime]
    a.max_length = a.max_length or regime["max_length"]
    if a.worker:
        import _throughput_peers as peers

        return peers.trl_worker(a) if a.worker == "trl" else peers.hf_worker(a)
    systems = [s for s in a.systems.split(",") if s]
    if not systems or set(systems) - set(SYSTEMS) or "bayling" not in systems:
        raise SystemExit(f"train_throughput.py: error: --systems must include bayling and name only {SYSTEMS}")
    if "trl" in systems:
        import importlib.util

        if importlib.util.find_spec("trl") is None:
            raise SystemExit("train_throughput.py: error: TRL is not installed (pip install -e '.[bench]'), "
                             "or drop it: --systems bayling,hf")

    from bayling.models import build_tiny_llama
    from bayling.tokenizer import tokenizer_dir
    from bayling.train.cache import CacheSpec, open_cache, prepare_cache
    from bayling.train.packing import pack_best_fit_decreasing, packing_efficiency

    a.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")})
    data, data_label = build_data(a.out)
    model = a.out / f"model_{a.regime}"
    if not (model / "config.json").is_file():
        build_tiny_llama(str(tokenizer_dir("llama2")), model, **regime["shape"])
    cache_root = a.out / "cache"
    cache = open_cache(prepare_cache(CacheSpec(data, model, "bayling", a.max_length, "truncate", cache_root)))
    lengths = cache.lengths
    bins = pack_best_fit_decreasing(lengths, a.max_length)
    eff = packing_efficiency(lengths, bins, a.max_length)
    pad_frac = padding_fraction(lengths, a.baseline_batch)
    checks = check_equal_loss(model, cache, bins, a) if "trl" in systems else []
    parts = None
    if "trl" in systems and a.breakdown:
        import torch
        from _throughput_peers import breakdown

        torch.set_num_threads(1)
        parts = breakdown(model, cache, bins[: a.breakdown], a.max_length, a.out / "breakdown")
        print("breakdown per row (s): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()), flush=True)
    names = systems + (["variant"] if a.variant else [])
    tps: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, list[list[float]]] = {n: [] for n in names}
    loads, waits = [], []
    for r in range(a.repeats):
        order = names if r % 2 == 0 else [names[0], *reversed(names[1:])]  # alternate who runs right after ours
        for name in order:
            loads.append(os.getloadavg()[0])
            run_dir = a.out / f"{name}_run"
            if name in ("bayling", "variant", "zero2"):
                t, wait = run_bayling(model, data, cache_root, run_dir, a, env, patched=name == "variant",
                                      zero="2" if name == "zero2" else None)
                tps[name].append(t)
                if name == "bayling":
                    waits.append(wait)
                losses[name].append(bayling_losses(run_dir))
            else:
                t, ls = run_peer(name, model, cache.root, run_dir, a, env)
                tps[name].append(t)
                losses[name].append(ls)
        loads.append(os.getloadavg()[0])
        print(f"repeat {r + 1}/{a.repeats}: " + ", ".join(f"{n} {tps[n][-1]:,.0f}" for n in names)
              + f" real tok/s; load {loads[-1]:.1f}", flush=True)
    ours = tps["bayling"]
    result = {
        "regime": a.regime, "model": regime["label"], "head_fraction_of_matmul_flops": head_fraction(regime["shape"]),
        "data": data_label, "samples": len(cache), "mean_tokens_per_sample": float(lengths.mean()),
        "target_fraction": float(cache.n_targets.sum() / lengths.sum()), "max_length": a.max_length,
        "steps": a.steps, "warmup_steps": a.warmup, "bayling_zero": a.zero, "repeats": a.repeats, "processes": 2, "systems": names,
        "tokens_per_s": tps, "medians": {n: statistics.median(v) for n, v in tps.items()},
        "ratio_bayling_over": {n: [o / x for o, x in zip(ours, v)] for n, v in tps.items() if n != "bayling"},
        "compute_breakdown_per_row_s": parts, "bayling_data_wait_fraction": waits, "losses": losses, "equal_loss_check": checks, "load_average_1min": loads,
        "packing_efficiency": eff, "hf_real_token_fraction": pad_frac, "baseline_batch": a.baseline_batch,
    }
    (a.out / f"train_throughput_{a.regime}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nRegime {a.regime}: {regime['label']}; LM head {result['head_fraction_of_matmul_flops']:.0%} of matmul "
          f"FLOPs per position. Data: {data_label}; {len(cache)} samples, mean {lengths.mean():.0f} tokens, "
          f"{result['target_fraction']:.1%} targets; max length {a.max_length}; load average "
          f"{min(loads):.1f}-{max(loads):.1f}\n")
    print(f"| system | real tokens/s, median (min-max) of {a.repeats} | bayling-train / system per repeat "
          "(median) | loss first -> last step (repeat 1) |")
    print("|---|---|---|---|")
    for n in names:
        ratios = result["ratio_bayling_over"].get(n)
        rtxt = "1x" if ratios is None else (" / ".join(f"{x:.2f}" for x in ratios)
                                            + f" (**{statistics.median(ratios):.2f}x**)")
        ls = losses[n][0]
        ltxt = f"{ls[0]:.3f} -> {ls[-1]:.3f}" if ls else "n/a"
        print(f"| {LABELS[n].format(zero=a.zero)} | {spread(tps[n])} | {rtxt} | {ltxt} |")
    print(f"\nbayling-train waited for its data (collation) {statistics.median(waits):.2%} of step time (median)")
    print(f"real-token fraction: BFD {eff:.1%}, HF pad-to-longest {pad_frac:.1%}; "
          f"written {a.out / f'train_throughput_{a.regime}.json'}")


if __name__ == "__main__":
    main()
