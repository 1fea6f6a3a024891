"""Batched generation vs one prompt at a time (tiny random-init Llama, CPU, the same FLORES prompts).

Both modes run in one process, interleaved per repeat, so machine load hits them alike; the figures are
medians over the repeats, and the greedy outputs of the two modes must be identical (exit code 1 if not).

    python benchmarks/generation_speed.py [--prompts 64] [--batch-size 32] [--max-new-tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bayling.eval.generate import GenStats, HFGenerator  # noqa: E402
from bayling.eval.translate import make_prompt  # noqa: E402
from bayling.languages import get_language  # noqa: E402
from bayling.models import build_tiny_llama  # noqa: E402

SRC_LANGS = ("deu", "fra", "spa", "rus", "zho_simpl", "hin", "ara", "vie")


def flores_prompts(gen: HFGenerator, n: int) -> list[str]:
    """X->en FLORES sample sentences, cycling over languages, in BayLing 1's prompt and the chat template."""
    eng = get_language("eng")
    per_lang = [(REPO / "eval/flores_sample" / f"{lg}.devtest").read_text(encoding="utf-8").splitlines()
                for lg in SRC_LANGS]
    sents = [per_lang[i % len(per_lang)][i // len(per_lang)] for i in range(n)]
    return [gen.render(make_prompt(s, eng, "en")) for s in sents]


def timed(fn) -> tuple[list[str], GenStats, float, float]:
    """Output, stats, wall seconds and CPU seconds of this process (less sensitive to other load)."""
    stats = GenStats()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(stats)
    return out, stats, time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core machine more threads spin and add noise)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_llama(str(REPO / "data/tokenizers/llama2"), Path(tmp) / "tiny")
        gen = HFGenerator(str(model_dir), device="cpu")
        prompts = flores_prompts(gen, args.prompts)
        gen.generate(prompts[:4], beams=1, batch_size=4, max_new_tokens=4, progress=False)  # warm-up
        batched_sps, single_sps, batched_cpu, single_cpu, identical = [], [], [], [], True
        tokens = 0
        for r in range(args.repeats):
            b_out, b_stats, b_sec, b_cpu = timed(lambda s: gen.generate(
                prompts, beams=1, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                stats=s, progress=False))
            s_out, s_stats, s_sec, s_cpu = timed(lambda s: [gen.generate(
                [p], beams=1, batch_size=1, max_new_tokens=args.max_new_tokens, stats=s, progress=False)[0]
                for p in prompts])
            identical &= b_out == s_out
            tokens = b_stats.new_tokens
            batched_sps.append(len(prompts) / b_sec)
            single_sps.append(len(prompts) / s_sec)
            batched_cpu.append(len(prompts) / b_cpu)
            single_cpu.append(len(prompts) / s_cpu)
            print(f"repeat {r + 1}: batched {batched_sps[-1]:.1f} sent/s, one-at-a-time {single_sps[-1]:.1f} sent/s, "
                  f"identical={b_out == s_out}", file=sys.stderr)
    res = {
        "prompts": len(prompts), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats, "new_tokens_per_pass": tokens, "torch_threads": torch.get_num_threads(),
        "batched_sent_per_s_median": round(statistics.median(batched_sps), 2),
        "single_sent_per_s_median": round(statistics.median(single_sps), 2),
        "ratio": round(statistics.median(batched_sps) / statistics.median(single_sps), 2),
        "batched_sent_per_cpu_s_median": round(statistics.median(batched_cpu), 2),
        "single_sent_per_cpu_s_median": round(statistics.median(single_cpu), 2),
        "ratio_cpu_time": round(statistics.median(batched_cpu) / statistics.median(single_cpu), 2),
        "greedy_outputs_identical": identical,
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
