"""Paper scale: a 3.2M-record mix of the paper recipe's shape, built offline from snapshot folders, timed.

    python benchmarks/data_scale.py                          # 3.2M records, --workers 2 and 1, outputs compared
    python benchmarks/data_scale.py --scale 0.05 --workers 2 1

Sources are fixture-scale samples upsampled to volume and written in the real snapshot layouts
(tests/data/snapshot_fixtures.py): zh/en instruction records ask a shipped BELLE/Alpaca instruction about two
FLORES sentences (i, i+s) of their language, so no two share more than one sentence (distinct, not near duplicates); bitext for the 10 non-pivot FLORES demo
languages (data/samples/flores_demo: deu fra spa ita por nld ces pol rus vie) and en-zh joins two FLORES lines into
one sentence pair (i, j), so every language has enough distinct rows. The recipe is data/recipes/bayling2.yaml itself
(--snapshots ROOT), with its groups narrowed to those 10 languages and NLLB switched off. Each run is a fresh
``bayling-build-data`` under /usr/bin/time (CPU time = user + sys of the build and its workers; GNU time's
peak RSS is that of the largest single process), while a sampler adds up the resident memory of the whole
process tree (parent + forked workers) twice a second: that sum is the figure held to the 2 GB goal. Output identity: the sha256 of every file of
the two data directories (manifest included) must be equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "data"))
LANGS = {"deu": "deu_Latn", "fra": "fra_Latn", "spa": "spa_Latn", "ita": "ita_Latn", "por": "por_Latn",
         "nld": "nld_Latn", "ces": "ces_Latn", "pol": "pol_Latn", "rus": "rus_Cyrl", "vie": "vie_Latn"}
ISO1 = {"deu": "de", "fra": "fr", "spa": "es", "ita": "it", "por": "pt", "nld": "nl", "ces": "cs", "pol": "pl",
        "rus": "ru", "vie": "vi"}


def combos(n: int, size: int) -> list[tuple[int, int]]:
    """``n`` distinct index pairs (i, j), i != j, spread over ``size`` items (deterministic)."""
    out, step = [], 1
    while len(out) < n:
        if step > size // 2:
            raise ValueError(f"{n} distinct pairs need more than {size} items")
        for i in range(size):
            j = (i + step) % size
            out.append((i, j))
            if len(out) == n:
                break
        step += 1
    return out


def write_sources(root: Path, scale: float) -> None:
    import snapshot_fixtures as fx

    # instructions: zh needs >= quota/cap unique records; n_zh below leaves room for filters and dedup
    belle = [json.loads(x) for x in (fx.SAMPLES / "instruct" / "belle_zh_300.jsonl").read_text("utf-8").splitlines()]
    alpaca = json.loads((fx.SAMPLES / "instruct" / "alpaca_en_300.json").read_text("utf-8"))

    def mixed(recs: list[dict], lines: list[str], n: int) -> list[dict]:
        """Record k: two samples' instructions (one of len(recs)**2 combinations) about two FLORES sentences
        (i, i+s). Two records share at most one sentence, and records that share a sentence almost never share
        the instruction pair, so they are distinct, not near duplicates (prompt-side 5-gram Jaccard well below
        0.8). With ONE instruction per record, each sentence recurs with the same instruction about
        2n / (1012 x 300) times, and such pairs are near duplicates when the instruction is long: dedup drops
        grow quadratically with n (measured: 2.996M instead of 3.2M training records at scale 1)."""
        out, m = [], len(recs)
        for k, (i, j) in enumerate(combos(n, len(lines))):
            rec, other = recs[k % m], recs[(k // m + k) % m]
            out.append({"instruction": f"{rec['instruction']}\n{other['instruction']}",
                        "input": f"{lines[i]} {lines[j]}", "output": rec["output"]})
        return out

    n_zh, n_en = int(500_000 * scale), int(330_000 * scale)  # >= 1.07x quota / cap (3): room for drops
    half = n_zh // 2
    base = root / "BelleGroup" / "train_0.5M_CN"
    base.mkdir(parents=True)
    zh = mixed(belle, fx.flores("zho_simpl", 1012), n_zh)
    (base / "Belle_open_source_0.5M.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                              for r in zh[:half]), "utf-8")
    base = root / "shibing624" / "alpaca-zh"
    base.mkdir(parents=True)
    (base / "alpaca_gpt4_data_zh.json").write_text(json.dumps(zh[half:], ensure_ascii=False), "utf-8")
    en = mixed(alpaca, fx.flores("eng", 1012), n_en)
    fx.write_parquet(root / "vicgalle" / "alpaca-gpt4" / "data" / "train-00000-of-00001-6ef3991c06080e14.parquet", en)
    chats = json.loads((fx.SAMPLES / "instruct" / "fastchat_dummy_conversation.sharegpt.json").read_text("utf-8"))
    base = root / "anon8231489123" / "ShareGPT_Vicuna_unfiltered"
    base.mkdir(parents=True)
    (base / "ShareGPT_V3_unfiltered_cleaned_split.json").write_text(json.dumps(chats), "utf-8")
    # bitext: joined FLORES lines; X-en rows and en-zh rows share their English (the pivot join works)
    n_rows = int(12_000 * scale)
    eng = fx.flores("eng", 1012)
    pairs = combos(n_rows, 1012)
    opus = root / "Helsinki-NLP" / "opus-100"
    for code, iso in (*ISO1.items(), ("zho_simpl", "zh")):
        x = fx.flores(code, 1012)
        cfg = "-".join(sorted(("en", iso)))
        rows = [{"translation": {"en": f"{eng[i]} {eng[j]}", iso: f"{x[i]} {x[j]}"}} for i, j in pairs]
        fx.write_parquet(opus / cfg / "train-00000-of-00001.parquet", rows)


def run(root: Path, out: Path, workers: int, scale: float) -> dict:
    langs = ",".join(LANGS.values())
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "bayling.cli.build_data", "--no-progress",
           "--recipe", str(REPO / "data" / "recipes" / "bayling2.yaml"), "--out", str(out),
           "--snapshots", str(root), "--workers", str(workers),
           f"parallel_groups.opus100.langs=[{langs}]", "parallel_groups.opus100.limit=0",
           "parallel_groups.nllb.enabled=false", "parallel.opus100_enzh.limit=0",
           f"mix.target_total={int(3_200_000 * scale)}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    tree_peak = 0
    while proc.poll() is None:  # the whole process tree (parent + forked workers), sampled twice a second
        tree_peak = max(tree_peak, tree_rss_kb(proc.pid))
        time.sleep(0.5)
    _, err = proc.communicate()
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}):\n{err[-3000:]}")

    def field(name: str) -> float:
        return float(re.search(rf"{re.escape(name)}: ([\d.]+)", err).group(1))

    m = json.loads((out / "manifest.json").read_text())
    return {"workers": workers, "wall_s": round(wall, 1),
            "cpu_s": round(field("User time (seconds)") + field("System time (seconds)"), 1),
            "peak_rss_mb": round(field("Maximum resident set size (kbytes)") / 1024),
            "peak_tree_rss_mb": round(tree_peak / 1024),
            "train": m["train"]["records"], "valid": m["valid"]["records"],
            "mix_reached": m["mix"]["reached_total"], "shortfalls": m["mix"]["shortfalls"],
            "unique": m["pipeline"]["unique_kept"], "languages": len(m["languages"]),
            "load_after": os.getloadavg()}


def tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc), in kB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(d.name))
            rss[int(d.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 3.2M training records")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp) / "snapshots"
        t0 = time.time()
        write_sources(root, args.scale)
        print(f"sources written in {time.time() - t0:.0f} s", flush=True)
        results, digests = [], []
        for w in args.workers:
            out = Path(tmp) / f"out-w{w}"
            res = run(root, out, w, args.scale)
            res["sha256"] = digest(out)[:16]
            print(json.dumps(res), flush=True)
            results.append(res)
            digests.append(res["sha256"])
        print("| workers | wall (s) | CPU (s) | peak RSS, largest process (MB) | peak RSS, all processes (MB) | "
              "train records | unique | languages | load avg (1/5/15 min) after |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in results:
            print(f"| {r['workers']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['peak_tree_rss_mb']} | "
                  f"{r['train']:,} | "
                  f"{r['unique']:,} | {r['languages']} | {' '.join(f'{x:.1f}' for x in r['load_after'])} |")
        print("identical outputs:", len(set(digests)) == 1, digests)


if __name__ == "__main__":
    main()
