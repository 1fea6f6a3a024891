"""`make demo`: the whole BayLing loop on a laptop CPU, through the three real commands.

1. hold out the first ``--eval-lines`` FLORES lines of the demo languages (the evaluation set);
2. ``bayling-build-data`` on data/recipes/demo.yaml, with ``--decontaminate`` against the held-out lines;
3. a tiny random-init Llama with a small BPE trained on the training shards = the untrained model;
4. ``bayling-train`` under DeepSpeed ZeRO-2 with 2 CPU processes for a fixed number of steps;
5. ``bayling-eval --suite flores`` on the held-out lines for the untrained and the trained model;
6. ``bayling-eval compare``: the before/after table and plot, and a verdict on the learning signal.

Every step is a subprocess running the installed console command, exactly as a user would type it; the
commands are printed before they run. Exit code 1 when validation loss does not fall or a direction does
not improve; directions gaining less than ``--min-chrf-gain`` are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLORES_DEMO = REPO / "data" / "samples" / "flores_demo"
LANGS = "deu,fra,spa,ita,por,nld,ces,pol,rus,vie"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        sys.exit(f"demo: step failed (exit {proc.returncode}): {cmd[0]}")
    print(f"    ({time.time() - t0:.0f} s)", flush=True)


def tool(name: str) -> str:
    """The console script next to this Python (the .venv one under `make demo`)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def hold_out(out: Path, n_lines: int) -> Path:
    """First ``n_lines`` of every demo FLORES file: the sentences we evaluate on and never train on."""
    heldout = out / "heldout_flores"
    heldout.mkdir(parents=True, exist_ok=True)
    for f in sorted(FLORES_DEMO.glob("*.devtest")):
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)[:n_lines]
        (heldout / f.name).write_text("".join(lines), encoding="utf-8")
    return heldout


def val_losses(metrics: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [(r["step"], r["val_loss"]) for r in rows if r.get("event") == "eval"]


def chrf_by_direction(eval_dir: Path) -> dict[str, float]:
    results = json.loads((eval_dir / "results.json").read_text())
    return {d["direction"]: d["scores"]["chrf"]["score"] for d in results["directions"]}


def build_untrained_model(data: Path, init: Path, args: argparse.Namespace) -> None:
    """The model training starts from; its tokenizer sees only training text (never the held-out lines)."""
    from bayling.models import build_tiny_llama
    from bayling.tokenizer import tokenizer_dir, train_small_tokenizer

    if args.tokenizer == "llama2":
        tok = tokenizer_dir("llama2")
    else:
        def texts():
            for shard in sorted((data / "train").glob("*.jsonl")):
                for line in shard.open(encoding="utf-8"):
                    yield from (m["content"] for m in json.loads(line)["messages"])

        tok = train_small_tokenizer(texts(), init.parent / "tokenizer", vocab_size=int(args.tokenizer))
    build_tiny_llama(str(tok), init, template=args.template, hidden_size=args.hidden, num_layers=args.layers,
                     num_heads=4, num_kv_heads=4, intermediate_size=2 * args.hidden)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="everything the demo writes goes here")
    ap.add_argument("--langs", default=LANGS, help="demo languages (each paired with English)")
    ap.add_argument("--eval-lines", type=int, default=50, help="held-out FLORES lines per language")
    ap.add_argument("--steps", type=int, default=1300, help="training budget in optimizer steps")
    ap.add_argument("--flores-rows", type=int, default=1012, help="FLORES lines read for cross-lingual data")
    ap.add_argument("--phrasings", type=int, default=1,
                    help="translation phrasings in the mix (1 = BayLing 1's prompt, the one evaluated; 0 = all 14)")
    ap.add_argument("--target-total", type=int, default=30000, help="mix size asked of the data builder")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokenizer", default="4000",
                    help="'llama2' (the real 32k Llama-2 tokenizer) or a vocabulary size for a BPE trained on the mix")
    ap.add_argument("--template", default="llama2-chat",
                    help="conversation format (bayling's 70-token system prompt would take 40%% of a demo's compute)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--max-new-tokens", type=int, default=96,
                    help="FLORES sentences are ~50-90 tokens of the demo BPE; a shorter cap truncates them")
    ap.add_argument("--repetition-penalty", type=float, default=1.0,
                    help="for both evaluations (1.0 = plain greedy; >1 also lifts the untrained baseline)")
    ap.add_argument("--min-chrf-gain", type=float, default=0.0,
                    help="chrF++ points every direction must gain, else exit code 1 (0: it must improve)")
    ap.add_argument("--clear-margin", type=float, default=2.0,
                    help="directions gaining less than this are named as not yet clearly learnt")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = (REPO / args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    t_start = time.time()

    banner(f"1/6 holding out the first {args.eval_lines} FLORES lines of each language for evaluation")
    heldout = hold_out(out, args.eval_lines)
    print(f"    {heldout}")

    banner("2/6 building the instruction mix (zh + en samples, cross-lingual from FLORES), decontaminated")
    data = out / "data"
    run([tool("bayling-build-data"), "--recipe", "data/recipes/demo.yaml", "--out", str(data),
         "--decontaminate", str(heldout), f"parallel.flores_demo.limit={args.flores_rows}", f"mix.target_total={args.target_total}",
         # a laptop budget: spend it on the directions the demo evaluates (the paper's mix: data/recipes/bayling2.yaml)
         "synth.directions=[x-en, en-x]", "synth.multiturn_fraction=0.0", f"synth.phrasings={args.phrasings}",
         "mix.proportions={zh: 0.1, en: 0.1, cross_lingual: 0.8}"], env)

    banner(f"3/6 the untrained model: a random-init Llama ({args.layers} layers, hidden {args.hidden}) with "
           + ("the real Llama-2 tokenizer" if args.tokenizer == "llama2"
              else f"a {args.tokenizer}-piece byte-level BPE trained on the training shards"))
    init = out / "model_init"
    build_untrained_model(data, init, args)
    print(f"    {init}")

    banner(f"4/6 bayling-train: DeepSpeed ZeRO-2, 2 CPU processes, {args.steps} steps")
    train = out / "train"
    run([tool("bayling-train"), "--nproc-per-node", "2", "--config", "data/recipes/train/tiny_cpu.yaml", "model.init=pretrained", f"model.path={init}",
         "model.tokenizer=null", f"data.template={args.template}",
         f"data.dir={data}", "data.max_length=256", f"out={train}", f"max_steps={args.steps}",
         "micro_batch=8", "grad_accum=1", f"optim.lr={args.lr}", f"eval_every={max(args.steps // 5, 1)}",
         f"save_every={args.steps}", "log_every=10"], env)

    common = ["--suite", "flores", "--flores-dir", str(heldout), "--langs", args.langs,
              "--directions", "x-en,en-x", "--beams", "1", "--batch-size", "32",
              "--max-new-tokens", str(args.max_new_tokens), "--repetition-penalty", str(args.repetition_penalty),
              "--no-progress"]
    banner("5/6 bayling-eval on the held-out sentences: untrained model, then trained model")
    run([tool("bayling-eval"), *common, "--model", str(init), "--out", str(out / "eval_before")], env)
    run([tool("bayling-eval"), *common, "--model", str(train / "final"), "--out", str(out / "eval_after")], env)

    banner("6/6 before / after")
    run([tool("bayling-eval"), "compare", str(out / "eval_before"), str(out / "eval_after"),
         "--out", str(out / "compare"), "--metric", "chrf"], env)
    return verdict(out, args, time.time() - t_start)


def verdict(out: Path, args: argparse.Namespace, seconds: float) -> int:
    """Print and store the learning signal: validation loss and held-out chrF++ per direction."""
    vals = val_losses(out / "train" / "metrics.jsonl")
    before, after = chrf_by_direction(out / "eval_before"), chrf_by_direction(out / "eval_after")
    lines = ["# Demo result", "", f"Total time: {seconds / 60:.1f} min. Everything is in `{out}`.", "",
             "## Validation loss (held-out valid.jsonl of the mix)", "", "| step | val_loss |", "|---|---|"]
    lines += [f"| {s} | {v:.3f} |" for s, v in vals]
    lines += ["", "## Held-out FLORES chrF++ (sentences the training data never contained)", "",
              "| direction | untrained | trained | gain |", "|---|---|---|---|"]
    gains = {}
    for d in sorted(before):
        gains[d] = after.get(d, 0.0) - before[d]
        lines.append(f"| {d} | {before[d]:.1f} | {after.get(d, 0.0):.1f} | {gains[d]:+.1f} |")
    loss_fell = len(vals) >= 2 and vals[-1][1] < vals[0][1]
    weak = [d for d, g in gains.items() if g < args.clear_margin]
    improved = bool(gains) and all(g > args.min_chrf_gain for g in gains.values())
    ok = loss_fell and improved
    mean_b = sum(before.values()) / max(len(before), 1)
    mean_a = sum(after.values()) / max(len(after), 1)
    lines += ["", f"Mean chrF++: {mean_b:.1f} -> {mean_a:.1f}.",
              f"Validation loss fell: {'yes' if loss_fell else 'NO'}; directions gaining < "
              f"{args.clear_margin} chrF++: {', '.join(weak) if weak else 'none'}.",
              "", "Plot: compare/ (per-direction before/after)."]
    text = "\n".join(lines) + "\n"
    (out / "DEMO_SUMMARY.md").write_text(text, encoding="utf-8")
    print(text)
    if not ok:
        print("demo: FAILED: validation loss did not fall or some direction did not improve (see above)")
    elif weak:
        print(f"demo: the model learned (loss fell, every direction improved), but {len(weak)} direction(s) gained "
              f"less than {args.clear_margin} chrF++: a longer --steps budget is needed for a clear margin there")
    else:
        print("demo: the model learned: loss fell and every direction gained a clear margin")
    print_chat_command(out / "train" / "final", args.repetition_penalty)
    return 0 if ok else 1


def print_chat_command(final: Path, repetition_penalty: float) -> None:
    """The last thing the demo says: how to talk to the model it trained (greedy, the evaluation's penalty)."""
    def short(path: Path) -> str:
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

    chat = shlex.join([short(Path(tool("bayling-chat"))), "--model", short(final), "--temperature", "0",
                       "--repetition-penalty", str(repetition_penalty)])
    serve = shlex.join([short(Path(tool("bayling-serve"))), "--model", short(final)])
    print(f"\nTalk to the model you just trained:\n  {chat}\n"
          f"Or serve it with OpenAI's chat-completions API at http://127.0.0.1:8000/v1:\n  {serve}")


if __name__ == "__main__":
    sys.exit(main())
