"""The laptop merging experiment: one tiny base, two direction experts, every merge method, held-out FLORES.

    python benchmarks/merge_experts.py                    # everything, into runs/merge_experts
    python benchmarks/merge_experts.py --skip-training    # reuse base/experts already trained there
    python benchmarks/merge_experts.py --train-only       # train, then print the experts' dev gains

1. split the demo FLORES lines: the first ``--test-lines`` (200) of each language are the held-out **test**
   set (reported, never searched on), the next ``--dev-lines`` the **dev** set PSO's fitness reads (named
   ``*.dev`` like FLORES' own dev split); both are decontaminated out of every training mix, and
   ``check_held_out`` verifies it on the built mixes (no FLORES row below test + dev lines, no held-out
   sentence in any message) before any model is used;
2. ``bayling-build-data`` three times on data/recipes/demo.yaml: the base mix (X->en and en->X) and one mix
   per expert (X->en only, en->X only);
3. a random-init tiny Llama with a BPE trained on the base mix (as ``make demo``), ``bayling-train`` for
   ``--base-steps`` on the base mix = the **base**; from it, ``--expert-steps`` on each expert mix = the
   **experts** (same tokenizer, same architecture: a merge needs one base);
4. each expert's gain over the base on its own family, on the dev lines (bayling-eval); no merge (unless
   ``--force``) when an expert did not gain: the "keeps 80 % of each expert's gain" goal needs a gain;
5. ``bayling-merge``: the baselines and PSO-Merging with the first of ``--seeds``, fitness = mean dev chrF++
   of the 10 directions, report with dev and test tables; then PSO alone with each other seed (folders
   ``..._seedN``; the base and expert evaluations are reused, they are the same models);
6. ``goals.md``/``goals.json`` in the first merge folder: each expert's test gain on its own family and the
   share of it each method keeps; per PSO seed a paired bootstrap (bayling.merge.significance) of its test
   mean against the best baseline and against the best merged model, and 95 % intervals of the kept shares;
   the mean and spread over seeds; whether the issue's two goals are met (and beyond noise) for every seed;
7. the baselines tuned on the same dev fitness (bayling.merge.tuning: a small grid per method, the best dev
   point tested; folder ``<merge>_tuned``, unless ``--no-tuning``) and each PSO seed bootstrapped against
   the best of them, into the same goals.md/goals.json (key ``tuned``).

Every step is the installed console command run as a subprocess, printed before it runs. Steps whose output
is already complete are skipped, so a killed run resumes where it stopped; the experts (and the merge) live
in folders named by ``--expert-lr`` and ``--expert-steps``, so other settings reuse the base, never them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from bayling.merge.report import family_means

REPO = Path(__file__).resolve().parent.parent
LANGS = "deu,fra,spa,por,rus"  # 5 of the demo's 10: the laptop budget (10 directions)
EXPERTS = {"xen": "x-en", "enx": "en-x"}


def load_demo():
    """scripts/demo.py as a module: its held-out split, model builder and step runner are reused as they are."""
    spec = importlib.util.spec_from_file_location("bayling_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_demo()
run, tool = demo.run, demo.tool


def split_flores(out: Path, test_lines: int, dev_lines: int) -> tuple[Path, Path]:
    """Test = the demo's held-out lines (``*.devtest``, what bayling-eval reads); dev = the next ones (``*.dev``)."""
    test = demo.hold_out(out, test_lines)
    dev = out / "flores_dev"
    dev.mkdir(parents=True, exist_ok=True)
    for f in sorted(demo.FLORES_DEMO.glob("*.devtest")):
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
        (dev / f"{f.stem}.dev").write_text("".join(lines[test_lines:test_lines + dev_lines]), encoding="utf-8")
    return test, dev


def check_split(out: Path, test_lines: int, dev_lines: int) -> None:
    """The data, base and experts in ``out`` were built with one held-out split: refuse another one there."""
    path, split = out / "split.json", {"test_lines": test_lines, "dev_lines": dev_lines}
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")) != split:
        sys.exit(f"merge_experts: {out} was built with {path.read_text(encoding='utf-8').strip()}; its mixes and "
                 f"models have seen other lines than --test-lines {test_lines} --dev-lines {dev_lines} hold out. "
                 "Use another --out")
    path.write_text(json.dumps(split) + "\n", encoding="utf-8")


def check_held_out(data: Path, held_out: list[Path], first_free_row: int) -> str:
    """Verify, not assume, that no test or dev sentence is in a mix (train or valid): every FLORES record
    comes from row >= ``first_free_row``, and no held-out sentence (case and spaces folded) occurs in any
    message. Exits on a hit; returns a one-line summary."""
    fold = lambda text: " ".join(text.casefold().split())  # noqa: E731
    sentences = [fold(s) for d in held_out for f in sorted(d.iterdir()) for s in f.read_text(encoding="utf-8").splitlines()]
    texts, rows = [], []
    for f in [*sorted((data / "train").glob("*.jsonl")), data / "valid.jsonl"]:
        for line in f.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            texts += [fold(m["content"]) for m in rec["messages"]]
            parts = rec["id"].split(":")
            if parts[0] == "flores_demo" and parts[-2].isdigit():
                rows.append(int(parts[-2]))
    corpus = "\n".join(texts)
    hits = [s for s in sentences if s in corpus]
    if hits or (rows and min(rows) < first_free_row):
        sys.exit(f"merge_experts: {data} holds held-out data: {len(hits)} held-out sentences, lowest FLORES row "
                 f"{min(rows, default=None)} (< {first_free_row} is held out)")
    return (f"{data.name}: {len(texts)} messages, {len(rows)} FLORES records (rows >= {min(rows, default=0)}), "
            f"0 of {len(sentences)} held-out sentences")


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
    """The demo's untrained model (a 4k BPE trained on the base mix, llama2-chat template)."""
    if not (init / "config.json").is_file():
        demo.build_untrained_model(data, init, argparse.Namespace(tokenizer="4000", template="llama2-chat",
                                                                  hidden=args.hidden, layers=args.layers))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/merge_experts")
    ap.add_argument("--test-lines", type=int, default=200, help="held-out test lines per language (of 1012)")
    ap.add_argument("--dev-lines", type=int, default=20, help="dev lines held out of training")
    ap.add_argument("--dev-limit", type=int, default=8, help="dev lines per direction the fitness reads")
    ap.add_argument("--base-steps", type=int, default=400)
    ap.add_argument("--expert-steps", type=int, default=200)
    ap.add_argument("--base-lr", type=float, default=3e-3)
    ap.add_argument("--expert-lr", default="xen=3e-4,enx=1e-3",
                    help="one lr for both experts, or per expert: xen=3e-4,enx=1e-3")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=5, help="PSO iterations")
    ap.add_argument("--methods", default="pso,linear,task_arithmetic,ties,dare_linear")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="PSO seeds, e.g. 0,1,2: the first runs every method, the "
                                                 "others PSO only (reusing the base/expert evaluations)")
    ap.add_argument("--bootstrap-samples", type=int, default=1000,
                    help="paired bootstrap resamples, PSO vs the best baseline on the test mean")
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--batch-size", default="32", help="generation batch (50 = one batch per test direction)")
    ap.add_argument("--eval-threads", default="1",
                    help="OMP_NUM_THREADS of the generation steps (bayling-eval, bayling-merge). Default 1: on "
                         "a shared 2-core machine 2 threads were ~10x slower per step (spinning OpenMP threads)")
    ap.add_argument("--skip-training", action="store_true", help="stop with an error if a model is missing")
    ap.add_argument("--train-only", action="store_true", help="train and check the experts' dev gains, no merge")
    ap.add_argument("--force", action="store_true", help="merge even when an expert did not gain over the base")
    ap.add_argument("--reuse-merges", action="store_true", help="take a merge folder that has report.json as it is "
                    "(no bayling-merge run: e.g. folders copied from another checkout, whose caches name its paths)")
    ap.add_argument("--no-tuning", action="store_true", help="skip the dev-tuned baselines (bayling.merge.tuning)")
    return ap.parse_args(argv)


def check_gains(out: Path, dev: Path, experts: dict[str, Path], args: argparse.Namespace,
                env: dict[str, str]) -> dict[str, float]:
    """Each expert's mean dev chrF++ gain over the base on its own family (bayling-eval on all dev lines).

    WHY before the merge: "keeps 80 % of each expert's gain" means nothing for an expert that did not gain.
    bayling-eval reads ``*.devtest`` names, so the dev lines are copied under that name (still the dev lines).
    """
    folder = out / "gain_check"
    flores = folder / "flores_dev_lines"
    flores.mkdir(parents=True, exist_ok=True)
    for f in sorted(dev.glob("*.dev")):
        (flores / f"{f.stem}.devtest").write_bytes(f.read_bytes())
    common = ["--suite", "flores", "--flores-dir", str(flores), "--langs", LANGS, "--directions", "x-en,en-x",
              "--beams", "1", "--batch-size", "32", "--max-new-tokens", str(args.max_new_tokens), "--no-progress"]
    fams = {}
    for name, model in {"base": out / "base" / "final", **experts}.items():
        dest = folder / model.parent.name
        if not (dest / "results.json").is_file():
            run([tool("bayling-eval"), *common, "--model", str(model), "--out", str(dest)], env)
        fams[name] = family_means(demo.chrf_by_direction(dest))
    gains = {n: fams[n][EXPERTS[n]] - fams["base"][EXPERTS[n]] for n in experts}
    print("dev chrF++ (all dev lines) by family: " + "; ".join(
        f"{n} " + ", ".join(f"{f} {v:.2f}" for f, v in fm.items()) for n, fm in fams.items()))
    print("expert gain over the base on its own family (dev): "
          + ", ".join(f"{n} ({EXPERTS[n]}) {g:+.2f}" for n, g in gains.items()), flush=True)
    return gains


def summarize(report: dict) -> tuple[str, dict]:
    """Per expert: its test gain over the base on its own family; per method: the share of it kept."""
    fams = {name: family_means(sc) for name, sc in report["test_chrf"].items()}
    experts = {f"expert{i + 1}": EXPERTS[n] for i, n in enumerate(EXPERTS)}
    gain = {e: fams[e][f] - fams["base"][f] for e, f in experts.items()}
    methods = [m for m in report["test_chrf"] if m != "base" and not m.startswith("expert")]
    kept = {m: {e: (fams[m][f] - fams["base"][f]) / gain[e] if gain[e] > 0 else None for e, f in experts.items()}
            for m in methods}
    mean_test = {m: sum(sc.values()) / len(sc) for m, sc in report["test_chrf"].items()}
    best_baseline = max((m for m in methods if m != "pso"), key=mean_test.get, default=None)
    lines = ["| model | " + " | ".join(f"test {f} (own family of {e})" for e, f in experts.items())
             + " | test mean | " + " | ".join(f"kept of {e}'s gain" for e in experts) + " |",
             "|---|" + "---:|" * (2 * len(experts) + 1)]
    for m in report["test_chrf"]:
        cells = [f"{fams[m][f]:.2f}" + (f" ({gain[m]:+.2f})" if m == e else "") for e, f in experts.items()]
        ks = ["" if m in ("base", *experts) or kept[m][e] is None else f"{100 * kept[m][e]:.0f} %" for e in experts]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean_test[m]:.2f} | " + " | ".join(ks) + " |")
    goals = {"pso_beats_best_baseline": best_baseline is not None and mean_test["pso"] > mean_test[best_baseline],
             "best_baseline": best_baseline,
             "experts_gain": all(g > 0 for g in gain.values()),
             "pso_keeps_80pct_each": "pso" in kept and all(k is not None and k >= 0.8 for k in kept["pso"].values())}
    return "\n".join(lines) + "\n", {"gain": gain, "kept": kept, "test_mean": mean_test, "goals": goals}


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        sys.exit(f"merge_experts: --seeds takes integers like 0,1,2, got {text!r}")
    if len(set(seeds)) != len(seeds):
        sys.exit(f"merge_experts: --seeds repeats a seed: {text!r}")
    return seeds


def reuse_reference_evals(first: Path, folder: Path, n_references: int) -> None:
    """Copy the first seed's evaluations of the base and the experts into another seed's merge folder.

    WHY it is sound: their cache key is the digest of a one-hot coefficient vector (``c-...``), the same
    model whatever the seed (the seed draws PSO's random factors and the DARE masks, i.e. the DARE copies,
    which are not copied); bayling-eval's loop skips a direction whose record has the same model key, data
    hash and settings. Saves 3 test evaluations per extra seed. The folder is marked as bayling-merge's.
    """
    import shutil

    import torch

    from bayling.merge.checkpoint import MARKER
    from bayling.merge.fitness import state_digest

    k = 2 * (n_references - 1) + 1  # base, experts, one DARE copy per expert
    keys = ["c-" + state_digest(torch.eye(k, dtype=torch.float64)[j]) for j in range(n_references)]
    names = ["base"] + [f"expert{i + 1}" for i in range(n_references - 1)]  # bayling-merge's row labels
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        # never mark a folder this script did not create as bayling-merge's (bayling-merge would then update it)
        raise SystemExit(f"merge_experts: {folder} exists and is not a bayling-merge output folder; "
                         "choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("bayling-merge output folder (safe for bayling-merge to update)\n", encoding="utf-8")
    for sub in [Path("test") / n for n in names] + [Path("dev") / key for key in keys]:
        if (first / "evals" / sub).is_dir() and not (folder / "evals" / sub).exists():
            shutil.copytree(first / "evals" / sub, folder / "evals" / sub)


def summarize_seeds(folders: dict[int, Path], summary: dict, samples: int) -> tuple[str, dict]:
    """Per PSO seed: test mean, paired bootstrap against the best baseline (of the first seed's run) and
    against the best of the models merged (base or an expert: is the search more than picking one?), shares
    of the experts' gains kept; then the mean and spread over seeds and the two goals judged on all seeds."""
    from statistics import mean, stdev

    from bayling.merge.significance import kept_share, load_eval_dir, paired_bootstrap, verdict

    first = next(iter(folders.values()))
    best = summary["goals"]["best_baseline"]
    best_input = max(["base", *summary["gain"]], key=summary["test_mean"].get)
    baseline = load_eval_dir(first / "evals" / "test" / best)
    best_input_texts = load_eval_dir(first / "evals" / "test" / best_input)
    inputs = {name: load_eval_dir(first / "evals" / "test" / name) for name in ["base", *summary["gain"]]}
    experts = {f"expert{i + 1}": EXPERTS[n] for i, n in enumerate(EXPERTS)}
    own = {e: [d for d in inputs["base"] if (d.endswith("-eng_Latn") if fam == "x-en" else d.startswith("eng_Latn-"))]
           for e, fam in experts.items()}
    rows, per_seed = [], {}
    for seed, folder in folders.items():
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        _, s = summarize(report)
        boot = paired_bootstrap(load_eval_dir(folder / "evals" / "test" / "pso"), baseline, n_samples=samples)
        pso_texts = load_eval_dir(folder / "evals" / "test" / "pso")
        vs_input = paired_bootstrap(pso_texts, best_input_texts, n_samples=samples)
        kept = s["kept"]["pso"]
        kept_ci = {e: kept_share(inputs["base"], inputs[e], pso_texts, own[e], n_samples=samples) for e in experts}
        per_seed[seed] = {"dev_fitness": report["dev_fitness"]["pso"], "test_mean": s["test_mean"]["pso"],
                          "bootstrap_vs_best_baseline": boot, "kept": kept, "verdict": verdict(boot),
                          "bootstrap_vs_best_input": vs_input, "verdict_vs_best_input": verdict(vs_input),
                          "kept_bootstrap": kept_ci}
        rows.append(f"| {seed} | {report['dev_fitness']['pso']:.2f} | {s['test_mean']['pso']:.2f} | "
                    f"{boot['diff']:+.2f} | {boot['ci95'][0]:+.2f} .. {boot['ci95'][1]:+.2f} | {boot['p_value']:.3f} | "
                    f"{vs_input['diff']:+.2f} (p {vs_input['p_value']:.3f}) | "
                    + " | ".join("n/a" if v is None else f"{100 * v:.0f} % ({100 * kept_ci[e]['ci95'][0]:.0f} .. "
                                 f"{100 * kept_ci[e]['ci95'][1]:.0f} %)" for e, v in kept.items()) + " |")
    means = [r["test_mean"] for r in per_seed.values()]
    spread = {"mean": mean(means), "sd": stdev(means) if len(means) > 1 else 0.0, "min": min(means), "max": max(means)}
    lines = [f"PSO seeds vs the best baseline ({best}, test mean {summary['test_mean'][best]:.2f}) and the best "
             f"merged model ({best_input}, {summary['test_mean'][best_input]:.2f}); paired bootstrap of the test "
             f"mean chrF++, {samples} resamples (bayling.merge.significance):", "",
             f"| PSO seed | dev fitness | test mean | diff vs {best} | 95 % CI | p | diff vs {best_input} | " + " | ".join(
                 f"kept of {e}'s gain (95 % CI)" for e in summary["gain"]) + " |",
             "|---:|" + "---:|" * (6 + len(summary["gain"])), *rows, "",
             f"PSO test mean over {len(means)} seeds: {spread['mean']:.2f} (sd {spread['sd']:.2f}, "
             f"{spread['min']:.2f} .. {spread['max']:.2f}) vs {best} {summary['test_mean'][best]:.2f}"]
    goals = {"pso_beats_best_baseline_every_seed": all(r["test_mean"] > summary["test_mean"][best]
                                                         for r in per_seed.values()),
             "pso_beats_best_baseline_beyond_noise_every_seed": all(
                 r["bootstrap_vs_best_baseline"]["p_value"] < 0.05 and r["bootstrap_vs_best_baseline"]["ci95"][0] > 0
                 for r in per_seed.values()),
             "pso_keeps_80pct_each_every_seed": all(v is not None and v >= 0.8
                                                    for r in per_seed.values() for v in r["kept"].values()),
             "pso_keeps_80pct_each_beyond_noise_every_seed": all(
                 k["ci95"][0] >= 0.8 for r in per_seed.values() for k in r["kept_bootstrap"].values())}
    return "\n".join(lines) + "\n", {"per_seed": per_seed, "test_mean": spread, "best_input": best_input,
                                     "goals": goals}


def tune_baselines(out: Path, merge: Path, split: tuple[Path, Path], experts: dict[str, Path], methods: list[str],
                   folders: dict[int, Path], args: argparse.Namespace) -> tuple[str, dict]:
    """The baselines tuned on the dev fitness PSO uses (bayling.merge.tuning: a small grid per method, the
    best dev point tested), in ``<merge>_tuned``; then PSO's seeds against the best of them (paired bootstrap)."""
    import torch

    from bayling.eval.config import EvalConfig
    from bayling.eval.flores import build_tasks
    from bayling.merge.fitness import GenSettings, build_dev_tasks
    from bayling.merge.tuning import grid_markdown, pso_vs_tuned, run_tuned_baselines

    torch.set_num_threads(int(args.eval_threads))  # as the generation subprocesses (OMP_NUM_THREADS)
    dirs = ["x-en", "en-x"]
    dev_tasks = build_dev_tasks(split[0], LANGS, dirs, 101, args.dev_limit)
    test_tasks = build_tasks(EvalConfig(flores_dir=str(split[1]), langs=LANGS, directions=dirs, flores=101))
    gen = GenSettings(max_new_tokens=args.max_new_tokens, batch_size=int(args.batch_size))
    tuned_dir = merge.with_name(merge.name + "_tuned")
    result = run_tuned_baselines(out / "base" / "final", list(experts.values()), tuned_dir, dev_tasks, test_tasks,
                                 gen, parse_seeds(args.seeds)[0], methods)
    md, versus = pso_vs_tuned(folders, tuned_dir, result, args.bootstrap_samples)
    return "Dev grid of the tuned baselines:\n\n" + grid_markdown(result) + "\n" + md, result | versus


def expert_lrs(text: str) -> dict[str, float]:
    """``3e-4`` (both experts) or ``xen=3e-4,enx=1e-3``."""
    if "=" not in text:
        return {n: float(text) for n in EXPERTS}
    given = {k.strip(): float(v) for k, v in (item.split("=", 1) for item in text.split(","))}
    if set(given) != set(EXPERTS):
        sys.exit(f"merge_experts: --expert-lr needs a value for each of {', '.join(EXPERTS)}")
    return given


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    check_split(out, args.test_lines, args.dev_lines)
    test, dev = split_flores(out, args.test_lines, args.dev_lines)
    lrs = expert_lrs(args.expert_lr)
    tags = {n: f"lr{lrs[n]:g}_{args.expert_steps}steps" for n in EXPERTS}  # other settings never reuse them
    experts = {n: out / f"expert_{n}_{tags[n]}" / "final" for n in EXPERTS}
    t0 = time.time()
    if not args.skip_training:
        build_data(out / "data_base", "x-en, en-x", 30000, test, dev, env)
        for name, direction in EXPERTS.items():
            build_data(out / f"data_{name}", direction, 15000, test, dev, env)
        build_untrained(out / "data_base", out / "model_init", args)
        train(out / "model_init", out / "data_base", out / "base", args.base_steps, args.base_lr, env)
        for name in EXPERTS:
            train(out / "base" / "final", out / f"data_{name}", experts[name].parent, args.expert_steps,
                  lrs[name], env)
        print(f"training done in {(time.time() - t0) / 60:.1f} min", flush=True)
    for name in ("base", *EXPERTS):  # also under --skip-training: the mixes the models were trained on
        print("held out of training: " + check_held_out(out / f"data_{name}", [test, dev],
                                                         args.test_lines + args.dev_lines), flush=True)
    env = dict(env, OMP_NUM_THREADS=args.eval_threads)  # generation only: torchrun sets its own for training
    gains = check_gains(out, dev, experts, args, env)
    if args.train_only:
        return 0
    if min(gains.values()) <= 0 and not args.force:
        sys.exit("merge_experts: an expert is not better than the base on its own directions (dev); the 80 % "
                 "criterion would be undefined. Change --expert-lr/--expert-steps, or pass --force")
    merge = out / ("merge_" + "_".join(f"{n}-{t}" for n, t in tags.items()))
    seeds = parse_seeds(args.seeds) if "pso" in args.methods.split(",") else [parse_seeds(args.seeds)[0]]
    folders = {seed: merge if i == 0 else merge.with_name(f"{merge.name}_seed{seed}") for i, seed in enumerate(seeds)}
    for i, (seed, folder) in enumerate(folders.items()):
        if args.reuse_merges and (folder / "report.json").is_file():
            print(f"reusing {folder.name}/report.json (--reuse-merges)", flush=True)
            continue
        if i:  # PSO only; the base and experts are the same models: their evaluations are reused
            reuse_reference_evals(merge, folder, 1 + len(EXPERTS))
        run([tool("bayling-merge"), "--base", str(out / "base" / "final"), "--experts", *map(str, experts.values()),
             "--fitness", f"flores:{dev}", "--langs", LANGS, "--directions", "x-en,en-x",
             "--dev-limit", str(args.dev_limit), "--test-flores-dir", str(test),
             "--methods", "pso" if i else args.methods, "--iterations", str(args.iterations),
             "--max-new-tokens", str(args.max_new_tokens), "--batch-size", args.batch_size, "--seed", str(seed),
             "--out", str(folder)], env)
    report = json.loads((merge / "report.json").read_text(encoding="utf-8"))
    table, summary = summarize(report)
    if summary["goals"]["best_baseline"] is not None and "pso" in report["test_chrf"]:
        seeds_md, summary["seeds"] = summarize_seeds(folders, summary, args.bootstrap_samples)
        summary["goals"] |= summary["seeds"]["goals"]
    else:
        seeds_md = "No PSO seed table: it needs pso and at least one baseline in --methods.\n"
    tuned = [m for m in args.methods.split(",") if m != "pso"]
    if not args.no_tuning and tuned and "pso" in report["test_chrf"]:
        tuned_md, summary["tuned"] = tune_baselines(out, merge, (dev, test), experts, tuned, folders, args)
        seeds_md += "\n" + tuned_md
        summary["goals"] |= summary["tuned"]["goals"]
    (merge / "goals.md").write_text(table + "\n" + seeds_md + f"\nGoals: {json.dumps(summary['goals'])}\n",
                                    encoding="utf-8")
    (merge / "goals.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print((merge / "report.md").read_text(encoding="utf-8"))
    print(table + "\n" + seeds_md)
    print(f"goals: {summary['goals']}")
    print(f"total {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
