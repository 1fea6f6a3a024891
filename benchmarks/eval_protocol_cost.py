"""Cost of the paper's FLORES protocol: measured generation throughput -> hours for the full run.

The full protocol is FLORES-101 devtest over every language with both pivots (X->en, en->X, X->zh, zh->X),
beam 5, up to 1024 new tokens. This script counts its directions and sentences exactly (the suite's own
planner), measures the HF backend's throughput for the tiny random-init Llama on this machine under the
protocol's decoding (beam 5) and greedy, and prints the extrapolated wall time. A random model rarely emits
its stop token, so every sentence runs to --max-new-tokens: the figure is per generated token, and the hours
for a real model follow from its own tokens/s and mean output length (printed formula).

    python benchmarks/eval_protocol_cost.py [--prompts 32] [--max-new-tokens 48] [--batch-size 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bayling.eval.config import FAMILIES  # noqa: E402
from bayling.eval.flores import plan_directions  # noqa: E402
from bayling.eval.generate import GenStats, HFGenerator  # noqa: E402
from bayling.eval.translate import make_prompt  # noqa: E402
from bayling.languages import flores101_languages, get_language  # noqa: E402
from bayling.models import build_tiny_llama  # noqa: E402

FLORES_DEVTEST_LINES = 1012


def protocol_size() -> tuple[int, int]:
    """(directions, sentences) of FLORES-101 with both pivots, as the suite plans them."""
    langs = flores101_languages()
    plan = plan_directions(langs, list(FAMILIES))
    return len(plan), len(plan) * FLORES_DEVTEST_LINES


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    directions, sentences = protocol_size()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(str(REPO / "data/tokenizers/llama2"), Path(tmp) / "tiny")
        gen = HFGenerator(str(model), device="cpu")
        lines = (REPO / "eval/flores_sample/deu.devtest").read_text(encoding="utf-8").splitlines()
        prompts = [gen.render(make_prompt(lines[i % len(lines)], get_language("eng"), "en"))
                   for i in range(args.prompts)]
        rows = {}
        for beams in (5, 1):
            stats = GenStats()
            start, cpu = time.perf_counter(), time.process_time()
            gen.generate(prompts, beams=beams, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         stats=stats, progress=False)
            wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
            per_sent = wall / len(prompts)
            rows[f"beam{beams}"] = {
                "sentences_per_s": round(len(prompts) / wall, 2),
                "new_tokens_per_s": round(stats.new_tokens / wall, 1),
                "cpu_s_per_sentence": round(cpu_s / len(prompts), 4),
                "full_protocol_hours": round(sentences * per_sent / 3600, 1),
            }
    print(json.dumps({"directions": directions, "sentences": sentences, "max_new_tokens": args.max_new_tokens,
                      "batch_size": args.batch_size, "threads": args.threads, "prompts": args.prompts,
                      "hf_cpu_tiny": rows}, indent=1))
    print(f"\nfull protocol: {directions} directions x {FLORES_DEVTEST_LINES} sentences = {sentences:,}; "
          "hours = sentences x mean output tokens / (tokens per second of the backend on your model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
