"""CPU work under contention: evaluation-style generation, quiet vs loaded, torch's default threads vs bayling's.

    python benchmarks/cpu_contention.py [--repeats 3] [--prompts 16] [--batch-size 8] [--max-new-tokens 32]
                                        [--hogs N] [--out runs/bench/contention]

The workload is what ``bayling-eval`` does on CPU: ``bayling.eval.generate.HFGenerator`` (a tiny random-init
Llama, the real Llama-2 tokenizer) translating FLORES sample prompts in batches, greedy, a fixed number of
new tokens. Each measurement is a fresh process (OpenMP reads its settings at start), timed around the
generation only. Settings compared, alternated within every repeat:

- ``torch default``: no OMP_* variables: libgomp's default wait policy (spin, then sleep) and torch's
  default thread count (every core) — how bayling-eval ran before issue 14.8;
- ``bayling``: what bayling's entry points now set (bayling/threads.py): ``OMP_WAIT_POLICY=PASSIVE`` and
  threads = this process's CPUs (affinity, Slurm allocation, local ranks);
- ``1 thread``: PASSIVE with one intra-op thread (the floor: no thread ever waits for another).

Conditions, both in every repeat: ``quiet`` (whatever else runs on the machine) and ``loaded``: this script
starts ``--hogs`` busy-looping processes (default: one per CPU) for the duration of the measurements.
Reported: medians, spread, loaded/quiet slowdown per setting, load averages. Writes OUT/cpu_contention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOG = "import os\nos.nice(0)\nwhile True:\n    pass\n"


def settings(default_threads: int) -> dict[str, dict[str, str | None]]:
    """Environment changes per setting (None = remove the variable)."""
    return {"torch default": {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": None},
            "bayling": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": None},
            "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}}


def worker(a) -> None:
    """One measurement: load, warm up, time the generation; print one JSON line."""
    import torch

    from bayling.eval.generate import HFGenerator
    from bayling.eval.translate import make_prompt
    from bayling.languages import get_language

    gen = HFGenerator(str(a.model), device="cpu")
    eng = get_language("eng")
    sents = (REPO / "eval" / "flores_sample" / "deu.devtest").read_text(encoding="utf-8").splitlines()
    prompts = [gen.render(make_prompt(sents[i % len(sents)], eng, "en")) for i in range(a.prompts)]
    gen.generate(prompts[:2], beams=1, batch_size=2, max_new_tokens=2, progress=False)
    t0 = time.perf_counter()
    gen.generate(prompts, beams=1, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)")}))


def measure(a, env_changes: dict) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for key, value in env_changes.items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    cmd = [sys.executable, __file__, "--worker", "--model", str(a.model), "--prompts", str(a.prompts),
           "--batch-size", str(a.batch_size), "--max-new-tokens", str(a.max_new_tokens)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 1, help="busy processes in the loaded condition")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "contention")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a) or 0
    from bayling.models import build_tiny_llama

    a.out.mkdir(parents=True, exist_ok=True)
    a.model = a.out / "model"
    if not (a.model / "config.json").is_file():
        build_tiny_llama(str(REPO / "data" / "tokenizers" / "llama2"), a.model)
    names = list(settings(0))
    secs: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in ("quiet", "loaded")}
    seen, loads = {}, {"quiet": [], "loaded": []}
    for r in range(a.repeats):
        order = names if r % 2 == 0 else names[::-1]
        for cond in ("quiet", "loaded"):
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(a.hogs if cond == "loaded" else 0)]
            try:
                time.sleep(2 if hogs else 0)
                for name in order:
                    m = measure(a, settings(0)[name])
                    secs[cond][name].append(m["seconds"])
                    seen[name] = {"threads": m["threads"], "wait_policy": m["wait_policy"]}
                    loads[cond].append(os.getloadavg()[0])
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
        print(f"repeat {r + 1}/{a.repeats}: " + "; ".join(
            f"{c}: " + ", ".join(f"{n} {secs[c][n][-1]:.1f} s" for n in names) for c in secs), flush=True)
    med = {c: {n: statistics.median(v) for n, v in d.items()} for c, d in secs.items()}
    result = {"prompts": a.prompts, "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens,
              "hogs": a.hogs, "cpus": os.cpu_count(), "repeats": a.repeats, "settings": seen, "seconds": secs,
              "medians": med, "slowdown_loaded_over_quiet": {n: med["loaded"][n] / med["quiet"][n] for n in names},
              "load_average_1min": loads}
    (a.out / "cpu_contention.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{a.prompts} prompts, batch {a.batch_size}, {a.max_new_tokens} new tokens; {a.hogs} hog processes "
          f"on {os.cpu_count()} CPUs in the loaded condition; load average quiet "
          f"{min(loads['quiet']):.1f}-{max(loads['quiet']):.1f}, loaded {min(loads['loaded']):.1f}-"
          f"{max(loads['loaded']):.1f}\n")
    print(f"| setting | threads, wait policy | quiet: s, median (min-max) of {a.repeats} | loaded | loaded / quiet |")
    print("|---|---|---|---|---|")
    for n in names:
        q, lo = secs["quiet"][n], secs["loaded"][n]
        print(f"| {n} | {seen[n]['threads']}, {seen[n]['wait_policy']} | {med['quiet'][n]:.1f} ({min(q):.1f}-{max(q):.1f}) "
              f"| {med['loaded'][n]:.1f} ({min(lo):.1f}-{max(lo):.1f}) | {result['slowdown_loaded_over_quiet'][n]:.2f}x |")
    print(f"\nwritten {a.out / 'cpu_contention.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
