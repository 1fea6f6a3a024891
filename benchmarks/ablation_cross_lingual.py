"""The paper's central ablation at laptop scale: the demo with and without the cross-lingual arm, same steps.

    nice -n 10 .venv/bin/python benchmarks/ablation_cross_lingual.py            # demo defaults (1,300 steps)
    nice -n 10 .venv/bin/python benchmarks/ablation_cross_lingual.py --steps 500 --langs deu,fra,rus,vie
                                            # what BENCHMARKS.md reports (a shared 2-core machine)

Any option of scripts/demo.py applies (same defaults). The run is resumable: finished builds, models and
evaluations in OUT are kept, so a rerun continues where it stopped.

What is compared. BayLing 2's claim is that cross-lingual instructions (X->en, en->X translation tasks) carry
the capability transfer; the ablation trains on the same mix without that arm (recipe ``cross_lingual: false``:
the arm is dropped, the other arms are NOT inflated, as in the paper) for the SAME number of optimizer steps.
Both arms train at the same time (a shared machine's load falls on both alike) and start from one untrained
model (the demo's tiny Llama and BPE, built once from the full mix's training shards), so the only difference
is the training data. FLORES chrF++ on the held-out lines (never in
either mix: ``--decontaminate``) is measured for the untrained model and for both trained models.

Every setting is the demo's (scripts/demo.py ``parse_args`` defaults, passed through unchanged: the same
held-out lines, build overrides, model size, lr, steps); this script reuses the demo's own helpers, so the
"with" arm IS the demo at that budget. Writes OUT/ABLATION.md (table) and OUT/ablation.json; figures go to BENCHMARKS.md
("Ablation") by hand, with the command and the machine load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARMS = {"with": [], "without": ["cross_lingual=false"]}
FAMILY_LABELS = {"x-en": "X→en", "en-x": "en→X"}


def load_demo():
    """scripts/demo.py as a module: its defaults and helpers are the definition of "the demo budget"."""
    spec = importlib.util.spec_from_file_location("bayling_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_overrides(args: argparse.Namespace) -> list[str]:
    """The demo's build overrides (scripts/demo.py main(), step 2), unchanged."""
    return [f"parallel.flores_demo.limit={args.flores_rows}", f"mix.target_total={args.target_total}",
            "synth.directions=[x-en, en-x]", "synth.multiturn_fraction=0.0", f"synth.phrasings={args.phrasings}",
            "mix.proportions={zh: 0.1, en: 0.1, cross_lingual: 0.8}"]


def train_overrides(args: argparse.Namespace, init: Path, data: Path, out: Path) -> list[str]:
    """The demo's training overrides (scripts/demo.py main(), step 4), unchanged."""
    return ["model.init=pretrained", f"model.path={init}", "model.tokenizer=null", f"data.template={args.template}",
            f"data.dir={data}", "data.max_length=256", f"out={out}", f"max_steps={args.steps}", "micro_batch=8",
            "grad_accum=1", f"optim.lr={args.lr}", f"eval_every={max(args.steps // 5, 1)}",
            f"save_every={args.steps}", "log_every=10"]


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    own.add_argument("--out", default="runs/ablation", help="everything this writes goes here (resumable)")
    mine, rest = own.parse_known_args(argv)
    demo = load_demo()
    args = demo.parse_args(rest)  # every other option is the demo's, with the demo's defaults
    out = (REPO / mine.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    timing: dict[str, float] = {}
    t0 = time.time()
    load = os.getloadavg()
    heldout = demo.hold_out(out, args.eval_lines)
    data = {}
    for arm, extra in ARMS.items():
        data[arm] = out / f"data_{arm}"
        if not (data[arm] / "manifest.json").is_file():
            demo.run([demo.tool("bayling-build-data"), "--recipe", "data/recipes/demo.yaml", "--out", str(data[arm]),
                      "--decontaminate", str(heldout), *build_overrides(args), *extra], env)
    init = out / "model_init"
    if not (init / "config.json").is_file():
        demo.build_untrained_model(data["with"], init, args)
    # Both arms train at the same time (same steps, same settings): on a shared machine this keeps the load
    # they see alike; the wall time of each is recorded.
    procs = {}
    for arm in ARMS:
        run_dir = out / f"train_{arm}"
        if not (run_dir / "final" / "config.json").is_file():
            cmd = [demo.tool("bayling-train"), "--nproc-per-node", "2", "--config", "data/recipes/train/tiny_cpu.yaml",
                   *train_overrides(args, init, data[arm], run_dir)]
            print("$ " + shlex.join(cmd) + f"  > {out / f'train_{arm}.log'}", flush=True)
            procs[arm] = (subprocess.Popen(cmd, cwd=REPO, env=env, stdout=(out / f"train_{arm}.log").open("w"),
                                           stderr=subprocess.STDOUT), time.time())
    for arm, (proc, started) in procs.items():
        if proc.wait() != 0:
            sys.exit(f"ablation: training the '{arm}' arm failed (exit {proc.returncode}); see {out / f'train_{arm}.log'}")
        timing[f"train_{arm}_s"] = time.time() - started
    common = ["--suite", "flores", "--flores-dir", str(heldout), "--langs", args.langs, "--directions", "x-en,en-x",
              "--beams", "1", "--batch-size", "32", "--max-new-tokens", str(args.max_new_tokens),
              "--repetition-penalty", str(args.repetition_penalty), "--no-progress"]
    evals = {}  # the three evaluations run at the same time too
    for name, model in (("untrained", init), *((arm, out / f"train_{arm}" / "final") for arm in ARMS)):
        if not (out / f"eval_{name}" / "results.json").is_file():
            cmd = [demo.tool("bayling-eval"), *common, "--model", str(model), "--out", str(out / f"eval_{name}")]
            print("$ " + shlex.join(cmd), flush=True)
            evals[name] = (subprocess.Popen(cmd, cwd=REPO, env=env), time.time())
    for name, (proc, started) in evals.items():
        if proc.wait() != 0:
            sys.exit(f"ablation: evaluating '{name}' failed (exit {proc.returncode})")
        timing[f"eval_{name}_s"] = time.time() - started
    timing["total_s"] = time.time() - t0
    return report(demo, out, args, data, timing, load)


def direction_families(eval_dir: Path) -> dict[str, list[str]]:
    """Family (results.json's own "families": x-en, en-x) -> its directions; names are never parsed."""
    fams: dict[str, list[str]] = {}
    for d in json.loads((eval_dir / "results.json").read_text())["directions"]:
        for fam in d["families"]:
            fams.setdefault(FAMILY_LABELS.get(fam, fam), []).append(d["direction"])
    return fams


def report(demo, out: Path, args: argparse.Namespace, data: dict[str, Path], timing: dict[str, float],
           load_at_start: tuple[float, float, float]) -> int:
    """ABLATION.md + ablation.json: per direction and per family, untrained / with / without the arm."""
    chrf = {name: demo.chrf_by_direction(out / f"eval_{name}") for name in ("untrained", "with", "without")}
    records = {arm: json.loads((data[arm] / "manifest.json").read_text())["mix"]["reached_total"] for arm in ARMS}
    vals = {arm: demo.val_losses(out / f"train_{arm}" / "metrics.jsonl") for arm in ARMS}
    families = direction_families(out / "eval_untrained")
    lines = ["# Cross-lingual ablation (demo scale)", "",
             f"{args.steps} optimizer steps per arm, same untrained model, held-out FLORES chrF++ "
             f"({args.eval_lines} lines per language). Load average at start {load_at_start[0]:.1f} on "
             f"{os.cpu_count()} CPUs; total {timing['total_s'] / 60:.1f} min.", "",
             "| arm | records | final val loss | X→en chrF++ | en→X chrF++ |", "|---|---:|---:|---:|---:|"]
    mean = {name: {fam: sum(chrf[name][d] for d in ds) / max(len(ds), 1) for fam, ds in families.items()}
            for name in chrf}
    lines.append(f"| untrained | - | - | {mean['untrained']['X→en']:.1f} | {mean['untrained']['en→X']:.1f} |")
    for arm in ARMS:
        val = f"{vals[arm][-1][1]:.2f}" if vals[arm] else "-"
        lines.append(f"| {arm} cross-lingual | {records[arm]:,} | {val} | {mean[arm]['X→en']:.1f} | "
                     f"{mean[arm]['en→X']:.1f} |")
    lines += ["", "| direction | untrained | with | without |", "|---|---:|---:|---:|"]
    lines += [f"| {d} | {chrf['untrained'][d]:.1f} | {chrf['with'].get(d, 0):.1f} | {chrf['without'].get(d, 0):.1f} |"
              for d in sorted(chrf["untrained"])]
    lines += ["", "Validation losses are on each arm's own valid split (not comparable across arms)."]
    (out / "ABLATION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "ablation.json").write_text(json.dumps({"steps": args.steps, "chrf": chrf, "mean": mean, "records": records,
                                                   "val_losses": vals, "timing": timing,
                                                   "load_at_start": load_at_start}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
