"""Run every benchmark behind BENCHMARKS.md with the command documented there (`make bench`).

Why one runner: each figure in BENCHMARKS.md must be reproducible by one documented command; this registry is
that list, so `make bench` re-measures all of them in one go and `--quick` checks that each still runs (a small
setting of the same script, minutes instead of an hour). GPU benchmarks are skipped, with a line saying so, on
a machine without CUDA. Each benchmark's output goes to RUN_DIR/NAME.log; RUN_DIR/SUMMARY.md lists exit codes
and times.

    python benchmarks/run_all.py                 # full documented settings (about an hour on 2 CPU cores)
    python benchmarks/run_all.py --quick         # each benchmark at a small setting
    python benchmarks/run_all.py --only generation_speed --list
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    script: str
    full: tuple[str, ...]  # the arguments BENCHMARKS.md documents
    quick: tuple[str, ...]  # a small setting of the same script: does it still run?
    needs_gpu: bool = False


BENCHMARKS: dict[str, Benchmark] = {
    "generation_speed": Benchmark("generation_speed.py", ("--repeats", "5", "--threads", "2", "--max-new-tokens", "64"),
                                  ("--repeats", "1", "--prompts", "8", "--batch-size", "8", "--max-new-tokens", "8")),
    "train_throughput": Benchmark("train_throughput.py", ("--repeats", "3", "--steps", "12"),
                                  ("--repeats", "1", "--steps", "3", "--warmup", "1", "--max-length", "256")),
    "train_throughput_body": Benchmark("train_throughput.py", ("--regime", "body", "--systems", "bayling,trl",
                                                               "--repeats", "3", "--steps", "8"),
                                       ("--regime", "body", "--systems", "bayling,trl", "--repeats", "1",
                                        "--steps", "3", "--warmup", "1", "--max-length", "256")),
    "data_throughput": Benchmark("data_throughput.py", (), ("--sizes", "2000", "20000")),
    "cache_build": Benchmark("cache_build.py", ("--repeats", "5", "--conversations", "1000"),
                             ("--repeats", "1", "--conversations", "100")),
    "data_scale": Benchmark("data_scale.py", (), ("--scale", "0.002")),
    "eval_protocol_cost": Benchmark("eval_protocol_cost.py", (),
                                    ("--prompts", "4", "--max-new-tokens", "8", "--batch-size", "4")),
    "ablation_cross_lingual": Benchmark("ablation_cross_lingual.py", ("--steps", "500", "--langs", "deu,fra,rus,vie"),
                                        ("--steps", "10", "--langs", "deu", "--out", "runs/bench/ablation_quick")),
    "merge_experts": Benchmark("merge_experts.py", (),
                               ("--base-steps", "10", "--expert-steps", "5", "--test-lines", "5", "--dev-lines", "5",
                                "--dev-limit", "2", "--seeds", "0,1", "--bootstrap-samples", "50", "--force",
                                "--out", "runs/bench/merge_quick")),
    "merge_formulations": Benchmark("merge_formulations.py", ("--params", "2000000", "--experts", "2", "4"),
                                    ("--params", "20000", "--experts", "2", "--iterations", "1")),
    "memory_per_row": Benchmark("memory_per_row.py", (), ("--vocabs", "32000", "--lengths", "2048",
                                                         "--out", "runs/bench/memory_per_row_quick.json")),
    "collate_cost": Benchmark("collate_cost.py", ("--repeats", "20"), ("--repeats", "2")),
    "mask_build": Benchmark("mask_build.py", (), ("--repeats", "1")),
    "gloo_collectives": Benchmark("gloo_collectives.py", (), ("--numel", "1000000", "--repeats", "1")),
    "cpu_contention": Benchmark("cpu_contention.py", ("--repeats", "3"),
                                ("--repeats", "1", "--prompts", "4", "--max-new-tokens", "4")),
    "gpu_mfu": Benchmark("gpu_mfu.py", ("--micro-batch", "4", "--max-length", "2048", "--peak-tflops", "989"),
                         ("--steps", "3", "--warmup", "1"), needs_gpu=True),
}


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small settings: check each benchmark still runs")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    ap.add_argument("--list", action="store_true", help="print the commands and exit")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "all")
    args = ap.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    cuda = has_cuda()
    rows, failed = [], 0
    if not args.list:
        args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        bench = BENCHMARKS[name]
        cmd = [sys.executable, str(REPO / "benchmarks" / bench.script), *(bench.quick if args.quick else bench.full)]
        shown = "python " + " ".join(["benchmarks/" + bench.script, *cmd[2:]])
        if args.list:
            print(shown)
            continue
        if bench.needs_gpu and not cuda:
            print(f"[skip] {name}: needs a CUDA GPU", flush=True)
            rows.append((name, "skipped (no CUDA)", 0.0, shown))
            continue
        print(f"[run ] {shown}", flush=True)
        start = time.perf_counter()
        with open(args.out / f"{name}.log", "w") as log:
            code = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
        failed += code != 0
        rows.append((name, f"exit {code}", wall, shown))
        print(f"[{'ok' if code == 0 else 'FAIL':4}] {name}: {wall:.0f} s, log {args.out / (name + '.log')}", flush=True)
    if args.list:
        return 0
    lines = ["# Benchmarks run", "", f"Settings: {'quick' if args.quick else 'documented (full)'}", "",
             "| benchmark | result | wall s | command |", "|---|---|---:|---|"]
    lines += [f"| {n} | {r} | {w:.0f} | `{c}` |" for n, r, w, c in rows]
    (args.out / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print(f"summary: {args.out / 'SUMMARY.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
