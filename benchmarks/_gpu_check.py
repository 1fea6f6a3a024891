"""The work behind benchmarks/gpu_check.sh: bayling-train itself on one GPU, then export, reload, bayling-eval.

Stages (each a real subprocess of the project's own entry points; nothing is downloaded):
1. a random-init Llama with TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32/4 heads, FFN 5632) and the
   shipped Llama-2 tokenizer; data: the shipped real-text conversations (tests/train/data);
2. ``bayling-train`` in bf16: ZeRO-2, and ZeRO-3 + gradient checkpointing, each at 2048 and 4096 tokens per
   packed row (8,192 tokens per step), ``peak_tflops`` set so the trainer logs its own MFU;
3. the exports of both ZeRO stages reloaded with ``from_pretrained`` (loss on one packed row);
4. ``bayling-eval --suite flores`` on a few directions of the shipped FLORES sample, transformers backend,
   and vLLM when it is installed.
Figures: OUT/gpu_check.json (machine) and a Markdown summary on stdout (people).

MFU. The trainer logs 6 * params * tokens/s / peak (all parameters, no attention term). This check also
reports the usual estimate: (6 * (params - input embedding) + 6 * layers * hidden * E[s^2] / E[s]) *
tokens/s / peak, where s is a sample's length (causal attention inside each packed sample, forward +
backward); peak = 989 TFLOP/s, H100/H200 SXM dense bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "train" / "data" / "conversations.jsonl"
FLORES = REPO / "eval" / "flores_sample"
SHAPE = dict(hidden_size=2048, num_layers=22, num_heads=32, num_kv_heads=4, intermediate_size=5632)
PEAK_TFLOPS = 989.0  # H100 / H200 SXM, bf16 dense
BUDGET_S = 8 * 60
RUNS = [  # (name, zero, gradient checkpointing, max_length, micro_batch): 8,192 tokens per step each
    ("zero2_2048", "2", False, 2048, 4), ("zero2_4096", "2", False, 4096, 2),
    ("zero3_gc_2048", "3", True, 2048, 4), ("zero3_gc_4096", "3", True, 4096, 2),
]
# --smoke-cpu: the same stages on CPU with a tiny model (the orchestration test; not a measurement)
SMOKE_SHAPE = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)
SMOKE_RUNS = [("zero2_2048", "2", False, 256, 2), ("zero3_gc_2048", "3", True, 512, 1)]
NO_CUDA = ("gpu_check: needs a CUDA GPU and torch.cuda.is_available() is False here; nothing was run "
           "(the CPU benchmarks are benchmarks/train_throughput.py)")


def flops_per_token(n_params: int, vocab: int, hidden: int, layers: int, lengths) -> float:
    """Model FLOPs per real token: 6 x (params - input embedding) + causal attention inside each sample."""
    lengths = [int(x) for x in lengths]
    attention = 6.0 * layers * hidden * sum(s * s for s in lengths) / max(sum(lengths), 1)
    return 6.0 * (n_params - vocab * hidden) + attention


def mfu(tokens_per_s: float, per_token_flops: float, peak_tflops: float = PEAK_TFLOPS, gpus: int = 1) -> float:
    return tokens_per_s * per_token_flops / (peak_tflops * 1e12 * gpus)


def summarize_train(metrics_path: Path, warmup: int) -> dict:
    """Figures of one bayling-train run from its metrics.jsonl (steps after ``warmup``)."""
    recs = []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if "loss" in rec and "step_seconds" in rec:
            recs.append(rec)
    timed = [r for r in recs if r["step"] > warmup]
    if not timed:
        raise ValueError(f"{metrics_path}: no step after the {warmup} warm-up steps")
    secs = sum(r["step_seconds"] for r in timed)
    trainer_mfu = [r["mfu"] for r in timed if r.get("mfu") is not None]
    return {
        "steps": len(recs), "timed_steps": len(timed),
        "real_tokens_per_s": sum(r["real_tokens"] for r in timed) / secs,
        "median_step_s": statistics.median(r["step_seconds"] for r in timed),
        "trainer_mfu_6N": statistics.median(trainer_mfu) if trainer_mfu else None,
        "data_wait_fraction": sum(r.get("data_wait_seconds", 0.0) for r in timed) / secs,
        "peak_memory_gb": max(r.get("peak_memory_gb", 0.0) for r in recs),
        "loss_first": recs[0]["loss"], "loss_last": recs[-1]["loss"],
    }


def summarize_eval(results_path: Path) -> dict:
    """{direction: {"bleu": ..., "chrf": ..., "n": ...}} from a bayling-eval results.json."""
    data = json.loads(results_path.read_text(encoding="utf-8"))
    out = {}
    for d in data.get("directions", []):
        scores = d.get("scores", {})
        out[d["direction"]] = {"n": d.get("n"), "bleu": scores.get("bleu", {}).get("score"),
                               "chrf": scores.get("chrf", {}).get("score")}
    return out


def markdown(report: dict) -> str:
    """The human-readable summary of gpu_check.json."""
    lines = [f"# GPU check: {report.get('device', '?')}", "",
             f"Model: {report.get('params', 0) / 1e9:.2f}B Llama (random init), bf16; goal MFU >= 45%; "
             f"total {report.get('total_s', 0):.0f} s", "",
             "| run | real tokens/s | MFU (6N' + attention) | trainer MFU (6N) | peak GB | data wait | loss first -> last |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in report.get("train", {}).items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        tm = f"{r['trainer_mfu_6N']:.1%}" if r.get("trainer_mfu_6N") is not None else "n/a"
        lines.append(f"| {name} | {r['real_tokens_per_s']:,.0f} | {r['mfu']:.1%} | {tm} | {r['peak_memory_gb']:.1f} "
                     f"| {r['data_wait_fraction']:.1%} | {r['loss_first']:.3f} -> {r['loss_last']:.3f} |")
    for name, r in report.get("reload", {}).items():
        lines.append(f"\nreload {name}: " + (f"loss {r['loss']:.4f} on one packed row" if "loss" in r else r["error"]))
    for backend, r in report.get("eval", {}).items():
        body = r.get("error") or ", ".join(f"{k} BLEU {v['bleu']:.1f} chrF++ {v['chrf']:.1f}" for k, v in r.items()
                                           if isinstance(v, dict))
        lines.append(f"\nbayling-eval flores ({backend}): {body}")
    lines.append(f"\nverdict: {report.get('verdict', '?')}")
    return "\n".join(lines) + "\n"


def verdict(report: dict, goal: float = 0.45) -> str:
    runs = report.get("train", {})
    failed = [n for n, r in runs.items() if "error" in r]
    failed += [f"reload {n}" for n, r in report.get("reload", {}).items() if "error" in r]
    failed += [f"eval {n}" for n, r in report.get("eval", {}).items() if "error" in r]
    if failed or not runs:
        return "FAIL: " + (", ".join(failed) or "nothing ran")
    best = max(r["mfu"] for r in runs.values())
    return f"{'PASS' if best >= goal else 'BELOW GOAL'}: best MFU {best:.1%} (goal {goal:.0%})"


def run(cmd: list[str], log: Path, timeout: float, env: dict) -> int:
    """A project entry point as a subprocess, its output in ``log``; 124 when it outlives ``timeout``."""
    with open(log, "w") as fh:
        try:
            return subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=max(timeout, 1)).returncode
        except subprocess.TimeoutExpired:
            return 124


def failure(code: int, log: Path) -> dict:
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
    return {"error": f"exit {code} ({'time budget' if code == 124 else 'see ' + str(log)})", "last_line": tail}


def build_inputs(work: Path, shape: dict) -> tuple[Path, Path, int]:
    """Random-init model (SHAPE, Llama-2 tokenizer + bayling template) and a data dir of the shipped fixture."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from bayling.models import build_tiny_llama
    from bayling.tokenizer import tokenizer_dir

    model, data = work / "model", work / "data"
    if not (model / "config.json").is_file():
        build_tiny_llama(str(tokenizer_dir("llama2")), model, **shape)
    (data / "train").mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, data / "train" / "00000.jsonl")
    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model)).parameters())
    return model, data, n_params


def sample_lengths(model: Path, data: Path, cache_root: Path, max_length: int):
    from bayling.train.cache import CacheSpec, open_cache, prepare_cache

    return open_cache(prepare_cache(CacheSpec(data, model, "bayling", max_length, "truncate", cache_root),
                                    show_progress=False)).lengths


def train_stage(spec: tuple, model: Path, data: Path, work: Path, a, env: dict, left, per_token: float) -> dict:
    """One bayling-train run of ``RUNS``; only its export is kept (the ZeRO checkpoint is ~13 GB)."""
    from bayling.train.attention import resolve

    name, zero, gc, max_length, micro_batch = spec
    if left() < 60:
        return {"error": "skipped: time budget"}
    attn = resolve("auto", cpu=a.smoke_cpu)  # what bayling-train's "auto" picks on this device (recorded)
    out, log = work / name, a.out / f"{name}.log"  # logs stay in OUT
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bayling.cli.train", "--config", str(REPO / "data/recipes/train/tiny_cpu.yaml"),
           "--resume", "none", f"model.path={model}", "model.init=pretrained", "model.attn_implementation=auto",
           f"model.gradient_checkpointing={str(gc).lower()}", f"data.dir={data}", f"data.max_length={max_length}",
           f"data.cache_dir={work / 'cache'}", f"out={out}", f"micro_batch={micro_batch}", "grad_accum=1",
           f"max_steps={a.steps}", f"zero={zero}", "dtype=bf16", "log_every=1", "eval_every=0",
           f"save_every={a.steps}", "keep_last=1", f"peak_tflops={PEAK_TFLOPS}", "optim.lr=1e-5"]
    code = run(cmd, log, left() - 30, env)
    if code != 0:
        return failure(code, log)
    result = summarize_train(out / "metrics.jsonl", a.warmup)
    result.update(zero=zero, gradient_checkpointing=gc, max_length=max_length, micro_batch=micro_batch,
                  attn_implementation=attn, mfu=mfu(result["real_tokens_per_s"], per_token))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return result


def reload_stage(work: Path, names: list[str], left, device: str = "cuda") -> dict:
    """Each export reloads with ``from_pretrained`` and gives a finite loss on one packed row."""
    import math

    import torch
    from transformers import AutoModelForCausalLM

    from bayling.train.cache import CacheSpec, open_cache, prepare_cache
    from bayling.train.packing import causal_lm_loss_sum, collate_packed, pack_best_fit_decreasing

    out = {}
    for name in names:
        final = work / name / "final"
        if left() < 30 or not (final / "config.json").is_file():
            out[name] = {"error": "skipped: " + ("time budget" if left() < 30 else "no export")}
            continue
        model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.bfloat16).to(device).eval()
        cache = open_cache(prepare_cache(CacheSpec(work / "data", final, "bayling", 2048, "truncate", work / "cache"),
                                         show_progress=False))
        batch = collate_packed(cache, pack_best_fit_decreasing(cache.lengths, 2048)[:1], 2048).to(device)
        with torch.no_grad():
            loss = float(causal_lm_loss_sum(model, batch) / batch.n_targets)
        out[name] = {"loss": loss, "dtype": str(next(model.parameters()).dtype)} if math.isfinite(loss) \
            else {"error": f"non-finite loss {loss}"}
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def eval_stage(final: Path, work: Path, a, env: dict, left) -> dict:
    """bayling-eval --suite flores on 4 directions of the shipped sample: transformers, and vLLM if installed."""
    import importlib.util

    backends = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    out = {}
    for backend in backends:
        if left() < 30 or not (final / "config.json").is_file():
            out[backend] = {"error": "skipped: " + ("time budget" if left() < 30 else "no export")}
            continue
        dest, log = work / f"eval_{backend}", a.out / f"eval_{backend}.log"
        shutil.rmtree(dest, ignore_errors=True)
        cmd = [sys.executable, "-m", "bayling.cli.evaluate", "--suite", "flores", "--model", str(final),
               "--flores-dir", str(FLORES), "--langs", "deu,fra", "--directions", "en-x,x-en",
               "--limit", str(a.eval_lines), "--beams", "1", "--max-new-tokens", "64", "--batch-size", "8",
               "--backend", backend, "--dtype", "bfloat16", "--out", str(dest), "--no-progress"]
        t0 = time.time()
        code = run(cmd, log, left() - 10, env)
        out[backend] = summarize_eval(dest / "results.json") if code == 0 else failure(code, log)
        out[backend]["seconds"] = time.time() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--eval-lines", type=int, default=8)
    ap.add_argument("--smoke-cpu", action="store_true", help="tiny model on CPU: checks the stages, measures nothing")
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not a.smoke_cpu:
        print(NO_CUDA, file=sys.stderr)
        return 2
    shape, runs, device = (SMOKE_SHAPE, SMOKE_RUNS, "cpu") if a.smoke_cpu else (SHAPE, RUNS, "cuda")
    start = time.time()
    left = lambda: BUDGET_S - (time.time() - start)  # noqa: E731
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=a.out))  # fresh, ours: the only folder this script deletes
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", DS_BUILD_OPS="0")
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke)",
                    "peak_tflops": PEAK_TFLOPS, "train": {}}
    model, data, report["params"] = build_inputs(work, shape)
    per_token = {L: flops_per_token(report["params"], 32000, shape["hidden_size"], shape["num_layers"],
                                    sample_lengths(model, data, work / "cache", L)) for L in {r[3] for r in runs}}
    report["flops_per_token"] = per_token
    for spec in runs:
        report["train"][spec[0]] = train_stage(spec, model, data, work, a, env, left, per_token[spec[3]])
    report["reload"] = reload_stage(work, ["zero2_2048", "zero3_gc_2048"], left, device)
    report["eval"] = eval_stage(work / "zero3_gc_2048" / "final", work, a, env, left)
    report["total_s"] = time.time() - start
    report["verdict"] = verdict(report)
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (a.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    shutil.rmtree(work, ignore_errors=True)  # weights, exports, caches: all made by this script (logs stay)
    return 0 if report["verdict"].startswith("PASS") else 1


if __name__ == "__main__":
    sys.exit(main())
