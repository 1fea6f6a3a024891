"""``bayling-reproduce``: the whole BayLing 2 reproduction as one chain of Slurm jobs, restartable.

    bayling-reproduce --out runs/reproduce                                  # 7B, 8B, 13B; all suites
    bayling-reproduce --out runs/reproduce --models 13b --ablation no-cross-lingual
    bayling-reproduce --out runs/reproduce --dry-run                        # the plan, nothing submitted

Stages (each a Slurm job, each waiting for its inputs with ``--dependency=afterok``):

    data/ARM        slurm/build_data.sh: an array of ``--shard I/N`` builds, then a merge   -> OUT/data/ARM/
    train/M[-ARM]   slurm/train_M.sh on OUT/data/ARM (requeues itself on SIGUSR1)            -> OUT/train/.../final/
    eval/S/LABEL    slurm/eval.sh --suite S for the base model, ours, and each ablation       -> OUT/eval/S/LABEL/
    report          ``python -m bayling.reproduce report OUT``                                -> OUT/REPORT.md

Why a chain that re-plans instead of a script that submits once. A reproduction runs for days; jobs fail,
get cancelled or hit limits. Run the same command again and every stage whose COMPLETED output exists is
skipped (the train marker is ``final/bayling.json``, written last at export; eval's is ``results.json``;
data's is ``manifest.json``), every job still queued or running from the last invocation (OUT/chain.json)
is reused, and the rest is resubmitted; each job itself resumes (training from its latest checkpoint,
evaluation per direction). A stage is redone when anything upstream was redone, so the report is never
older than its inputs.

The ablation arm (``--ablation no-cross-lingual``: the recipe's ``cross_lingual=false``, the arm dropped and
the others not inflated) trains for exactly the steps the full arm ran (read from its metrics.jsonl), so it
runs after the full arm. On a CPU-only cluster (a test cluster) ``--cpu N`` adds ``--gpus-per-node=0
--cpus-per-task=N`` to every job and runs N training processes per node. Partition/account: set
SBATCH_PARTITION / SBATCH_ACCOUNT in the environment; every sbatch call (build_data.sh's included) reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bayling.atomic import atomic_write_text
from bayling.errors import ConfigError
from bayling.paths import REPO_ROOT

PROG = "bayling-reproduce"
# model name -> (batch script, its default training config = the script's CONFIG default; a test checks they
# agree); the registry the --models choices come from
MODELS = {"7b": ("slurm/train_7b.sh", "data/recipes/train/llama2_7b.yaml"),
          "8b": ("slurm/train_8b.sh", "data/recipes/train/llama3_8b.yaml"),
          "13b": ("slurm/train_13b.sh", "data/recipes/train/llama2_13b.yaml")}
# ablation name -> recipe overrides of its data arm
ABLATIONS = {"no-cross-lingual": ["cross_lingual=false"]}
SUITES = ("flores", "wmt22", "knowledge", "english")
TRANSLATION_SUITES = ("flores", "wmt22")
ALIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD")


@dataclass
class Stage:
    """One job of the chain: what marks it done, how to submit it, which stages it waits for."""

    name: str
    done: Path
    after: list[str] = field(default_factory=list)
    sbatch: list[str] = field(default_factory=list)  # sbatch options + script + its arguments
    env: dict[str, str] = field(default_factory=dict)
    build_data: list[str] | None = None  # data stages run slurm/build_data.sh instead of one sbatch


def _arms(args: argparse.Namespace) -> dict[str, list[str]]:
    return {"full": [], **{name: ABLATIONS[name] for name in args.ablation}}


def _cpu_opts(args: argparse.Namespace, cpus: int | None = None) -> list[str]:
    return ["--gpus-per-node=0", f"--cpus-per-task={cpus or args.cpu}"] if args.cpu else []


def _log(out: Path, name: str) -> str:
    return f"--output={out / 'logs' / name.replace('/', '-')}-%j.out"


def base_model(args: argparse.Namespace, model: str) -> tuple[str, bool]:
    """The model training starts from (config + overrides), and whether the train job creates it (tiny init)."""
    from bayling.config import load_config
    from bayling.train.config import TrainConfig

    config = args.train_config or REPO_ROOT / MODELS[model][1]
    cfg = load_config(TrainConfig, config, list(args.train_override))
    return str(cfg.model.path), cfg.model.init == "tiny"


def plan(args: argparse.Namespace) -> list[Stage]:
    """Every stage of the chain, upstream first."""
    out = args.out
    stages: list[Stage] = []
    arms = _arms(args)
    for arm, overrides in arms.items():
        data = out / "data" / arm
        stages.append(Stage(f"data/{arm}", data / "manifest.json", build_data=[
            "--recipe", str(args.recipe), "--out", str(data), "--shards", str(args.shards),
            "--work", str(out / "data" / f"{arm}.shards"), "--cpus", str(args.build_cpus), "--mem", args.build_mem,
            "--time", args.build_time, *args.build_override, *overrides]))
    train_env = {k: v for k, v in (("CONFIG", args.train_config and str(args.train_config)),
                                   ("NPROC", args.cpu and str(args.cpu))) if v}
    for model in args.models:
        script = str(REPO_ROOT / MODELS[model][0])
        labels: dict[str, tuple[str, list[str]]] = {}  # eval label -> (model dir, stages it waits for)
        for arm in arms:
            label = model if arm == "full" else f"{model}-{arm}"
            run = out / "train" / label
            common = [f"--job-name=bayling-train-{label}", _log(out, f"train/{label}"), *_cpu_opts(args)]
            overrides = [f"out={run}", f"data.dir={out / 'data' / arm}", *args.train_override]
            if arm == "full":
                stages.append(Stage(f"train/{label}", run / "final" / "bayling.json", [f"data/{arm}"],
                                    [*common, script, *overrides], train_env))
            else:  # same budget: the steps the full arm ran, read when this job starts
                wrapper = ["bash", "-c", f'exec bash "$0" "$@" max_steps="$({shlex.quote(sys.executable)} -m '
                           f'bayling.reproduce steps {shlex.quote(str(out / "train" / model))})"', script]
                stages.append(Stage(f"train/{label}", run / "final" / "bayling.json", [f"data/{arm}", f"train/{model}"],
                                    [*_header(script), *common, "--wrap", shlex.join([*wrapper, *overrides])],
                                    train_env))
            labels[label] = (str(run / "final"), [f"train/{label}"])
        path, built_by_training = base_model(args, model)
        labels[f"{model}-base"] = (path, [f"train/{model}"] if built_by_training else [])
        for label, (model_dir, after) in labels.items():
            for suite in args.suites:
                name = f"eval/{suite}/{label}"
                res = out / "eval" / suite / label
                stages.append(Stage(name, res / "results.json", after, [
                    f"--job-name=bayling-eval-{label}-{suite}", _log(out, name), *_cpu_opts(args, args.eval_cpus),
                    str(REPO_ROOT / "slurm" / "eval.sh"), "--suite", suite, "--model", model_dir, "--out", str(res),
                    *shlex.split(getattr(args, f"{suite}_args") or "")]))
    evals = [s.name for s in stages if s.name.startswith("eval/")]
    stages.append(Stage("report", out / "REPORT.md", evals, [
        "--job-name=bayling-report", _log(out, "report"), "--ntasks=1", "--cpus-per-task=1",
        *(["--gpus-per-node=0"] if args.cpu else []),
        "--wrap", shlex.join([sys.executable, "-m", "bayling.reproduce", "report", str(out)])]))
    return stages


def _header(script: str) -> list[str]:
    """The #SBATCH options of a batch script, as sbatch options: a --wrap job gets the same resources."""
    opts = []
    for line in Path(script).read_text(encoding="utf-8").splitlines():
        if line.startswith("#SBATCH ") and not line.split()[1].startswith(("--job-name", "--output")):
            opts.append(line.split(None, 1)[1].strip())
    return opts


def job_state(job_id: str) -> str | None:
    """JobState from ``scontrol show job`` (works without accounting); None once Slurm forgot the job."""
    res = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    for token in res.stdout.split():
        key, _, value = token.partition("=")
        if key == "JobState":
            return value
    return None


def _sbatch(argv: list[str], env: dict[str, str]) -> str:
    res = subprocess.run(["sbatch", "--parsable", *argv], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={**os.environ, **env}, timeout=60)
    if res.returncode != 0:
        raise ConfigError(f"sbatch refused the job: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else '?'}"
                          f" (sbatch {shlex.join(argv[:6])} ...)", field="sbatch")
    return res.stdout.strip().split(";")[0]


def _build_data(argv: list[str]) -> tuple[str, str]:
    res = subprocess.run(["bash", str(REPO_ROOT / "slurm" / "build_data.sh"), *argv], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=120)
    if res.returncode != 0:
        raise ConfigError(f"slurm/build_data.sh failed: {(res.stderr.strip() or res.stdout.strip())[-300:]}",
                          field="data")
    ids = dict(line.split("=", 1) for line in res.stdout.splitlines() if line.startswith(("ARRAY_", "MERGE_")))
    return ids["ARRAY_JOB_ID"], ids["MERGE_JOB_ID"]


def run_chain(args: argparse.Namespace) -> int:
    out: Path = args.out
    stages = plan(args)
    state_file = out / "chain.json"
    old = json.loads(state_file.read_text()) if state_file.is_file() else {}
    jobs: dict[str, dict[str, str]] = {}  # stage -> {"job": id, "status": ...}
    if not args.dry_run:
        (out / "logs").mkdir(parents=True, exist_ok=True)  # Slurm does not create the folder of --output
    redone: set[str] = set()
    lines = []
    for st in stages:
        waits = [jobs[a]["job"] or f"<{a}>" for a in st.after if a in jobs and jobs[a]["status"] != "done"]
        upstream_redone = any(a in redone for a in st.after)
        prev = old.get(st.name, {}).get("job")
        if st.done.exists() and not upstream_redone:
            jobs[st.name] = {"job": prev or "", "status": "done"}
        elif prev and not args.dry_run and not upstream_redone and job_state(prev) in ALIVE:
            jobs[st.name] = {"job": prev, "status": "queued"}
            redone.add(st.name)
        else:
            dep = ["--kill-on-invalid-dep=yes", f"--dependency=afterok:{':'.join(waits)}"] if waits else []
            if args.dry_run:
                cmd = (["bash", "slurm/build_data.sh", *st.build_data] if st.build_data is not None
                       else ["sbatch", *dep, *st.sbatch])
                jobs[st.name] = {"job": "", "status": "would submit: " + shlex.join(cmd)}
            elif st.build_data is not None:
                array_id, merge_id = _build_data(st.build_data)
                jobs[st.name] = {"job": merge_id, "array": array_id, "status": "submitted"}
            else:
                jobs[st.name] = {"job": _sbatch([*dep, *st.sbatch], st.env), "status": "submitted"}
            redone.add(st.name)
        lines.append(f"{st.name:<40} {jobs[st.name]['status']:<10} {jobs[st.name]['job']}"
                     + (f" (after {','.join(waits)})" if waits and jobs[st.name]["status"] != "done" else ""))
    print("\n".join(lines))
    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({**old, **{k: v for k, v in jobs.items() if v["job"]}}, indent=1) + "\n")
        print(f"{PROG}: {len(redone)} job(s) queued, {len(stages) - len(redone)} stage(s) already done; "
              f"job ids in {state_file}; rerun this command to continue after a failure or cancellation")
    return 0


def steps_of(run: Path) -> int:
    """Optimizer steps a finished training run took (its metrics.jsonl): the ablation's budget."""
    metrics = run / "metrics.jsonl"
    if not (run / "final").is_dir() or not metrics.is_file():
        raise ConfigError("the full arm has not finished (no final/ or metrics.jsonl)", path=run)
    steps = [json.loads(line).get("step", 0) for line in metrics.read_text(encoding="utf-8").splitlines() if line]
    return max(steps)


def _score(results: Path) -> tuple[float | None, int]:
    """Headline of one eval run: mean chrF++ over directions (translation) or mean accuracy over tasks."""
    if not results.is_file():
        return None, 0
    doc = json.loads(results.read_text(encoding="utf-8"))
    if "directions" in doc:
        vals = [d["scores"]["chrf"]["score"] for d in doc["directions"] if d["scores"].get("chrf")]
    else:
        vals = [100 * t["metrics"]["acc"] for t in doc.get("tasks", {}).values() if "acc" in t["metrics"]]
    return (sum(vals) / len(vals) if vals else None), len(vals)


def write_report(out: Path) -> Path:
    """OUT/REPORT.md (+ report.json): base vs ours vs ablations per model and suite, and compare tables."""
    rows, doc = [], {}
    for suite_dir in sorted(p for p in (out / "eval").iterdir() if p.is_dir()):
        suite, labels = suite_dir.name, sorted(p.name for p in suite_dir.iterdir() if p.is_dir())
        for model in sorted({lb.split("-")[0] for lb in labels}):
            cols = [f"{model}-base", model, *[f"{model}-{a}" for a in ABLATIONS]]
            scores = {lb: _score(suite_dir / lb / "results.json") for lb in cols}
            doc[f"{model}/{suite}"] = {lb: s for lb, (s, _) in scores.items()}
            cells = [f"{s:.2f} ({n})" if s is not None else "-" for s, n in scores.values()]
            rows.append(f"| {model} | {suite} | " + " | ".join(cells) + " |")
            runs = [str(suite_dir / lb) for lb in cols if (suite_dir / lb / "results.json").is_file()]
            if suite in TRANSLATION_SUITES and len(runs) > 1:
                res = subprocess.run([sys.executable, "-m", "bayling.cli.evaluate", "compare", *runs, "--metric",
                                      "chrf", "--out", str(out / "compare" / f"{suite}-{model}")],
                                     capture_output=True, text=True)
                if res.returncode != 0:
                    raise ConfigError(f"bayling-eval compare failed: {res.stderr.strip()[-300:]}", path=suite_dir)
    head = " | ".join(["base", "ours", *[f"ablation: {a}" for a in ABLATIONS]])
    text = "\n".join([
        "# BayLing 2 reproduction report", "",
        "Headline per suite: mean chrF++ over directions (flores, wmt22) or mean accuracy x 100 over tasks "
        "(knowledge, english); in brackets the number of directions/tasks; `-`: not run. Per-direction deltas "
        "against the base model: compare/SUITE-MODEL/. An ablation trains for the same number of steps as ours.", "",
        f"| model | suite | {head} |", "|---|---|" + "---:|" * (2 + len(ABLATIONS)), *rows, ""])
    (out / "report.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    print(text)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="everything the chain writes (data, train, eval, report)")
    p.add_argument("--models", default="7b,8b,13b", help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--ablation", action="append", default=[], choices=sorted(ABLATIONS),
                   help="add an ablation arm at the same training budget (its own data build, train, eval)")
    p.add_argument("--suites", default=",".join(SUITES), help=f"comma list of {', '.join(SUITES)}")
    p.add_argument("--recipe", type=Path, default=REPO_ROOT / "data" / "recipes" / "bayling2.yaml")
    p.add_argument("--shards", type=int, default=8, help="array tasks of each data build")
    p.add_argument("--build-override", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--build-cpus", type=int, default=2)
    p.add_argument("--build-mem", default="8G")
    p.add_argument("--build-time", default="04:00:00")
    p.add_argument("--train-config", type=Path, default=None, help="instead of each model script's own config")
    p.add_argument("--train-override", action="append", default=[], metavar="KEY=VALUE",
                   help="bayling-train override for every training job (e.g. max_steps=100)")
    for suite in SUITES:
        p.add_argument(f"--{suite}-args", default=None, help=f"extra bayling-eval options for --suite {suite}")
    p.add_argument("--cpu", type=int, default=0, metavar="N",
                   help="CPU-only cluster: every job asks --gpus-per-node=0 --cpus-per-task=N; training runs N "
                        "processes per node")
    p.add_argument("--eval-cpus", type=int, default=None, metavar="N", help="with --cpu: CPUs per eval job "
                   "(default: the --cpu value)")
    p.add_argument("--dry-run", action="store_true", help="print what would be skipped, reused and submitted")
    return p


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    args.models = [m for m in args.models.split(",") if m]
    args.suites = [s for s in args.suites.split(",") if s]
    for name, values, known in (("--models", args.models, MODELS), ("--suites", args.suites, SUITES)):
        bad = [v for v in values if v not in known]
        if bad or not values:
            raise ConfigError(f"unknown {bad or 'empty list'}; choose from {', '.join(known)}", field=name)
    if not args.recipe.is_file():
        raise ConfigError("recipe not found", path=args.recipe)
    if args.train_config and not args.train_config.is_file():
        raise ConfigError("training config not found", path=args.train_config)
    if not args.dry_run and shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found: run this on a Slurm login node (or pass --dry-run)", field="sbatch")
    args.out = args.out.resolve()
    args.recipe, args.train_config = args.recipe.resolve(), args.train_config and args.train_config.resolve()
    return args


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["steps"] and len(argv) == 2:  # used by the ablation's training job
        print(steps_of(Path(argv[1])))
        return 0
    if argv[:1] == ["report"] and len(argv) == 2:  # the report job
        write_report(Path(argv[1]))
        return 0
    return run_chain(_checked(build_parser().parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    from bayling.cli import run_cli

    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
