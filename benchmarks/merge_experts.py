"""The laptop merging experiment: one tiny base, two direction experts, every merge method, held-out FLORES.

    python benchmarks/merge_experts.py                    # everything, into runs/merge_experts
    python benchmarks/merge_experts.py --skip-training    # reuse base/experts already trained there

1. split the demo FLORES lines: the first ``--test-lines`` of each language are the held-out **test** set
   (reported, never searched on), the next ``--dev-lines`` the **dev** set PSO's fitness reads (named
   ``*.dev`` like FLORES' own dev split); both are decontaminated out of every training mix;
2. ``bayling-build-data`` three times on data/recipes/demo.yaml: the base mix (X->en and en->X) and one mix
   per expert (X->en only, en->X only);
3. a random-init tiny Llama with a BPE trained on the base mix (as ``make demo``), ``bayling-train`` for
   ``--base-steps`` on the base mix = the **base**; from it, ``--expert-steps`` on each expert mix = the
   **experts** (same tokenizer, same architecture: a merge needs one base);
4. ``bayling-merge`` with ``--methods all``: the baselines and PSO-Merging, fitness = mean dev chrF++ of the
   20 directions, report with dev and test tables.

Every step is the installed console command run as a subprocess, printed before it runs. Steps whose output
is already complete are skipped, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLORES_DEMO = REPO / "data" / "samples" / "flores_demo"
LANGS = "deu,fra,spa,por,rus"  # 5 of the demo's 10: the laptop budget (10 directions)
EXPERTS = {"xen": "x-en", "enx": "en-x"}


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        sys.exit(f"merge_experts: step failed (exit {proc.returncode}): {' '.join(cmd[:2])}")
    print(f"    ({time.time() - t0:.0f} s)", flush=True)


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def split_flores(out: Path, test_lines: int, dev_lines: int) -> tuple[Path, Path]:
    """Test = first lines (``*.devtest``, what bayling-eval reads); dev = the next ones (``*.dev``)."""
    test, dev = out / "flores_test", out / "flores_dev"
    test.mkdir(parents=True, exist_ok=True)
    dev.mkdir(parents=True, exist_ok=True)
    for f in sorted(FLORES_DEMO.glob("*.devtest")):
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
        (test / f.name).write_text("".join(lines[:test_lines]), encoding="utf-8")
        (dev / f"{f.stem}.dev").write_text("".join(lines[test_lines:test_lines + dev_lines]), encoding="utf-8")
    return test, dev


def build_data(out: Path, directions: str, total: int, test: Path, dev: Path, env: dict[str, str]) -> None:
    if (out / "manifest.json").is_file():
        return
    run([tool("bayling-build-data"), "--recipe", "data/recipes/demo.yaml", "--out", str(out),
         "--decontaminate", str(test), str(dev), "parallel.flores_demo.limit=1012", f"mix.target_total={total}",
         f"synth.directions=[{directions}]", "synth.multiturn_fraction=0.0", "synth.phrasings=1",
         "mix.proportions={zh: 0.1, en: 0.1, cross_lingual: 0.8}"], env)


def train(init: Path, data: Path, out: Path, steps: int, lr: float, env: dict[str, str]) -> None:
    if (out / "final" / "config.json").is_file():
        return
    run([tool("bayling-train"), "--nproc-per-node", "2", "--config", "data/recipes/train/tiny_cpu.yaml",
         "model.init=pretrained", f"model.path={init}", "model.tokenizer=null", "data.template=llama2-chat",
         f"data.dir={data}", "data.max_length=256", f"out={out}", f"max_steps={steps}", "micro_batch=8",
         "grad_accum=1", f"optim.lr={lr}", f"eval_every={max(steps // 2, 1)}", f"save_every={steps}",
         "log_every=10", "--resume", "auto"], env)


def build_untrained(data: Path, init: Path, args: argparse.Namespace) -> None:
    if (init / "config.json").is_file():
        return
    from bayling.models import build_tiny_llama
    from bayling.tokenizer import train_small_tokenizer

    def texts():
        for shard in sorted((data / "train").glob("*.jsonl")):
            for line in shard.open(encoding="utf-8"):
                yield from (m["content"] for m in json.loads(line)["messages"])

    tok = train_small_tokenizer(texts(), init.parent / "tokenizer", vocab_size=4000)
    build_tiny_llama(str(tok), init, template="llama2-chat", hidden_size=args.hidden, num_layers=args.layers,
                     num_heads=4, num_kv_heads=4, intermediate_size=2 * args.hidden)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/merge_experts")
    ap.add_argument("--test-lines", type=int, default=50)
    ap.add_argument("--dev-lines", type=int, default=20, help="dev lines held out of training")
    ap.add_argument("--dev-limit", type=int, default=8, help="dev lines per direction the fitness reads")
    ap.add_argument("--base-steps", type=int, default=400)
    ap.add_argument("--expert-steps", type=int, default=150)
    ap.add_argument("--base-lr", type=float, default=3e-3)
    ap.add_argument("--expert-lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=5, help="PSO iterations")
    ap.add_argument("--methods", default="pso,linear,task_arithmetic,ties,dare_linear")
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--skip-training", action="store_true", help="stop with an error if a model is missing")
    ap.add_argument("--train-only", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    test, dev = split_flores(out, args.test_lines, args.dev_lines)
    t0 = time.time()
    if not args.skip_training:
        build_data(out / "data_base", "x-en, en-x", 30000, test, dev, env)
        for name, direction in EXPERTS.items():
            build_data(out / f"data_{name}", direction, 15000, test, dev, env)
        build_untrained(out / "data_base", out / "model_init", args)
        train(out / "model_init", out / "data_base", out / "base", args.base_steps, args.base_lr, env)
        for name in EXPERTS:
            train(out / "base" / "final", out / f"data_{name}", out / f"expert_{name}", args.expert_steps,
                  args.expert_lr, env)
        print(f"training done in {(time.time() - t0) / 60:.1f} min", flush=True)
    if args.train_only:
        return 0
    run([tool("bayling-merge"), "--base", str(out / "base" / "final"),
         "--experts", *(str(out / f"expert_{n}" / "final") for n in EXPERTS),
         "--fitness", f"flores:{dev}", "--langs", LANGS, "--directions", "x-en,en-x",
         "--dev-limit", str(args.dev_limit), "--test-flores-dir", str(test),
         "--methods", args.methods, "--iterations", str(args.iterations),
         "--max-new-tokens", str(args.max_new_tokens), "--batch-size", "32", "--seed", "0", "--out", str(out / "merge")], env)
    print((out / "merge" / "report.md").read_text(encoding="utf-8"))
    print(f"total {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
