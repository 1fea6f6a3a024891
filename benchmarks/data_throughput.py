"""Data builder throughput and memory: records/s and peak RSS for growing inputs, in one run.

    python benchmarks/data_throughput.py                     # 100k and 1M input records
    python benchmarks/data_throughput.py --sizes 100000 300000

Inputs are generated from the instruction samples shipped in data/samples/instruct/: record i joins the
instruction of one sample record with a fragment of another's and a record number, and takes a third
record's response, so the records are varied (not all duplicates) but realistic in length and language
(half English, half Chinese). Each size is a fresh `bayling-build-data` subprocess under /usr/bin/time
(peak RSS = its maximum resident set size, CPU time = user + sys); the mix target equals the input size so
every stage works on everything. Checks: CPU time(1M) <= 11 x CPU time(100k) (linear; wall time is reported
as well but depends on the load of this shared machine), peak RSS(1M) <= 1.5 x peak RSS(100k) and < 2 GB
(bounded). Prints a markdown table and the projected time for 3.2M records; `--write` appends nothing, it
only prints, so the figures are copied into BENCHMARKS.md by hand with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples" / "instruct"


def load_samples() -> dict[str, list[dict[str, str]]]:
    """Alpaca-style (instruction, input, output) triples per language from the shipped samples."""
    from bayling.data.readers import read_instructions

    out: dict[str, list[dict[str, str]]] = {"en": [], "zh": []}
    for path in sorted(SAMPLES.iterdir()):
        if not path.name.endswith((".json", ".jsonl")) or "sharegpt" in path.name:
            continue
        cat = "zh" if ("zh" in path.name or "belle" in path.name) else "en"
        for rec in read_instructions(path, "auto", source="s", category=cat, on_bad=lambda bad: None):
            msgs = rec["messages"]
            if len(msgs) >= 2 and msgs[0]["role"] == "user":
                out[cat].append({"q": msgs[0]["content"], "a": msgs[1]["content"]})
    return out


def generate(samples: list[dict[str, str]], n: int, path: Path, lang: str) -> None:
    """``n`` Alpaca JSONL records, each a different combination of three sample records.

    Record i takes the instruction of sample a, the instruction of sample b as context and the first 200
    characters of sample c's answer as an example, with (a, b) unique for i < k^2 and c shifting with the
    block, and a fourth sample's instruction shifting too, so prompts overlap like real data does without
    most of them being near duplicates of each other.
    """
    k = len(samples)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            a, b = i % k, (i // k) % k
            block = i // (k * k)
            c = (a + 7 * b + 31 * block + 1) % k
            d = (3 * a + b + 101 * block + 2) % k
            ctx = "Context" if lang == "en" else "背景"
            example = "Example" if lang == "en" else "示例"
            tag = f"(request {i})" if lang == "en" else f"（第{i}号请求）"
            prompt = (f"{samples[a]['q']}\n\n{ctx}: {samples[b]['q']}\n{example}: {samples[c]['a'][:200]}\n"
                      f"{samples[d]['q']} {tag}")
            rec = {"instruction": prompt, "input": "", "output": samples[(a + b + c) % k]["a"]}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def recipe_for(folder: Path, n: int) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(
        f"""name: benchmark-{n}
instructions:
  bench_en: {{path: {folder / 'en.jsonl'}, category: en, format: alpaca}}
  bench_zh: {{path: {folder / 'zh.jsonl'}, category: zh, format: alpaca}}
mix:
  proportions: {{zh: 0.5, en: 0.5, cross_lingual: 0.0}}
  target_total: {n}
  upsample_cap: 1.0
output: {{shard_size: 100000, plot: true}}
""",
        encoding="utf-8",
    )
    return path


def run_one(n: int, samples: dict[str, list[dict[str, str]]], work: Path) -> dict[str, float]:
    folder = work / f"n{n}"
    folder.mkdir()
    generate(samples["en"], n // 2, folder / "en.jsonl", "en")
    generate(samples["zh"], n - n // 2, folder / "zh.jsonl", "zh")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "bayling.cli.build_data", "--no-progress",
           "--recipe", str(recipe_for(folder, n)), "--out", str(folder / "out")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "MPLBACKEND": "Agg"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build of {n} records failed:\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr).group(1))
              for kind in ("User", "System"))
    manifest = json.loads((folder / "out" / "manifest.json").read_text(encoding="utf-8"))
    return {"n": n, "seconds": wall, "cpu_seconds": cpu, "records_per_s": n / wall,
            "records_per_cpu_s": n / cpu, "peak_rss_mb": rss_kb / 1024,
            "unique_kept": manifest["pipeline"]["unique_kept"], "train": manifest["train"]["records"],
            "dedup": manifest["pipeline"]["dedup"], "filtered": sum(manifest["pipeline"]["filtered"].values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--work", type=Path, help="keep generated inputs and outputs here (default: temp dir)")
    args = ap.parse_args()
    samples = load_samples()
    print(f"samples: {len(samples['en'])} en, {len(samples['zh'])} zh; cpus: {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        rows = []
        for n in args.sizes:
            r = run_one(n, samples, Path(tmp))
            print(json.dumps(r), flush=True)
            rows.append(r)
    base, big = rows[0], rows[-1]
    scale = big["n"] / base["n"]
    # The machine is shared: wall time depends on what else runs, CPU time (user+sys) of the build does not
    # (it is a single-threaded process), so linearity is judged on CPU time and wall time is reported too.
    t_ratio, m_ratio = big["cpu_seconds"] / base["cpu_seconds"], big["peak_rss_mb"] / base["peak_rss_mb"]
    w_ratio = big["seconds"] / base["seconds"]
    print("\n| input records | wall time (s) | CPU time (s) | records/s (wall) | records/CPU-s | peak RSS (MB) "
          "| unique kept | train records |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['records_per_s']:,.0f} | "
              f"{r['records_per_cpu_s']:,.0f} | {r['peak_rss_mb']:.0f} | {r['unique_kept']:,} | {r['train']:,} |")
    projected = big["cpu_seconds"] * 3_200_000 / big["n"]
    linear_ok = t_ratio <= 1.1 * scale
    mem_ok = m_ratio <= 1.5 and big["peak_rss_mb"] < 2048
    print(f"\nCPU-time ratio {big['n']:,}/{base['n']:,}: {t_ratio:.2f} (limit {1.1 * scale:.1f}) -> "
          f"{'OK' if linear_ok else 'FAIL'}; wall-time ratio {w_ratio:.2f} (load-dependent)")
    print(f"peak RSS ratio: {m_ratio:.2f} (limit 1.5), {big['peak_rss_mb']:.0f} MB (limit 2048) -> "
          f"{'OK' if mem_ok else 'FAIL'}")
    print(f"projected time for 3.2M records: {projected / 60:.0f} min ({projected / 3600:.1f} h) of one core "
          f"(one process on an idle core); a --shard I/N array divides phase 1 by N")
    return 0 if linear_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
