"""``bayling-merge``: merge experts fine-tuned from one base into one model (PSO-Merging + MergeKit baselines).

    bayling-merge --base DIR --experts DIR [DIR ...] --fitness flores:DEV_DIR [--fitness lm-eval:TASK] --out DIR \\
        [--methods pso,linear,task_arithmetic,ties,dare_linear,dare_ties | all] \\
        [--langs deu,fra --directions x-en,en-x] [--test-flores-dir DEVTEST_DIR] [--iterations 5] [--seed 0]

Bad input is one line on stderr and exit code 2 (see bayling.cli.run_cli). docs/merge.md explains every option.
"""

from __future__ import annotations

import argparse
import sys

from bayling.cli import run_cli
from bayling.errors import ConfigError

PROG = "bayling-merge"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parser() -> argparse.ArgumentParser:
    from bayling.merge.pso import RANDOM_FACTORS
    from bayling.merge.runner import METHODS
    from bayling.merge.swarm import FORMULATIONS

    methods = "\n".join(f"  {k}: {v}" for k, v in METHODS.items())
    p = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Merge expert models fine-tuned from one base (PSO-Merging, arXiv 2508.19839).",
                epilog=f"methods:\n{methods}")
    p.add_argument("--base", required=True, help="the model every expert was fine-tuned from (local folder)")
    p.add_argument("--experts", required=True, nargs="+", help="expert checkpoint folders")
    p.add_argument("--fitness", required=True, action="append",
                   help="flores:DIR -- a FLORES dev folder (*.dev files); lm-eval:TASK[,TASK...] -- lm-eval "
                        "tasks scored on their validation split; repeat to add more (FLORES and lm-eval are "
                        "two components of the fitness)")
    p.add_argument("--fitness-weight", dest="fitness_weights", action="append", default=[], metavar="NAME=W",
                   help="weight of a direction (deu_Latn-eng_Latn), family (x-en), lm-eval task, or component "
                        "(flores, lm-eval); default: unweighted means")
    p.add_argument("--lm-eval-task-dir", dest="lm_eval_task_dir",
                   help="a folder of lm-eval YAML tasks for --fitness lm-eval: (as bayling-eval --task-dir)")
    p.add_argument("--num-fewshot", dest="num_fewshot", type=int,
                   help="lm-eval few-shot count (default: bayling-eval's per task)")
    p.add_argument("--out", required=True, help="output folder: the merged checkpoint, report, swarm state")
    p.add_argument("--methods", type=_csv, default=["pso"], help="comma list of methods or 'all' (default pso)")
    p.add_argument("--final", help="which method's model goes to --out (default: pso, else the best on dev)")
    p.add_argument("--langs", default="all", help="FLORES languages (as bayling-eval --langs)")
    p.add_argument("--directions", type=_csv, default=["en-x", "x-en", "zh-x", "x-zh"],
                   help="direction families (default: all four)")
    p.add_argument("--flores", type=int, choices=[101, 200], default=101)
    p.add_argument("--dev-limit", dest="dev_limit", type=int,
                   help="first N dev sentences per direction / validation examples per lm-eval task")
    p.add_argument("--test-flores-dir", dest="test_flores_dir",
                   help="FLORES devtest folder: score every method on it for the report (never the fitness)")
    g = p.add_argument_group("PSO (defaults: the paper's values per its public reviews)")
    g.add_argument("--iterations", type=int, default=5)
    g.add_argument("--inertia", type=float, default=0.2)
    g.add_argument("--c1", type=float, default=2.0)
    g.add_argument("--c2", type=float, default=2.0)
    g.add_argument("--random-factors", dest="random_factors", choices=RANDOM_FACTORS, default="particle",
                   help="r1, r2 per particle (default; exact low-memory search) or per weight element")
    g.add_argument("--formulation", choices=FORMULATIONS, default="auto",
                   help="auto: coefficients when random factors are per particle, else weights")
    g.add_argument("--velocity-clamp", dest="velocity_clamp", type=float, help="|v| bound per component")
    g.add_argument("--init-velocity", dest="init_velocity", type=float, default=0.0,
                   help="initial velocity: uniform(-a, a) coefficients, zero-sum (default 0: at rest)")
    g.add_argument("--dare-density", dest="dare_density", type=float, default=0.2,
                   help="kept fraction of the DARE copies in the swarm (paper: drop rate 0.8)")
    g.add_argument("--seed", type=int, default=0)
    b = p.add_argument_group("baselines (MergeKit)")
    b.add_argument("--density", type=float, default=0.2, help="TIES / DARE kept fraction")
    b.add_argument("--lambda", dest="lam", type=float, default=1.0, help="task-vector scale")
    e = p.add_argument_group("generation (bayling-eval's)")
    e.add_argument("--beams", type=int, default=1, help="default 1: greedy keeps fitness calls cheap")
    e.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=256)
    e.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    e.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=1.0)
    e.add_argument("--template", help="chat template when the base has none: bayling | bayling3 | llama2-chat")
    e.add_argument("--device")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    e.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _main(argv: list[str] | None) -> int:
    from bayling.merge.fitness import GenSettings
    from bayling.merge.pso import PSOSettings
    from bayling.merge.runner import METHODS, MergeSettings, run_merge

    a = parser().parse_args(argv)
    for name in ("iterations", "beams", "max_new_tokens", "batch_size"):
        if getattr(a, name) < (0 if name == "iterations" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {0 if name == 'iterations' else 1}",
                              field=name)
    if a.dev_limit is not None and a.dev_limit < 1:
        raise ConfigError("--dev-limit must be >= 1", field="dev_limit")
    if a.num_fewshot is not None and a.num_fewshot < 0:
        raise ConfigError("--num-fewshot must be >= 0", field="num_fewshot")
    methods = list(METHODS) if a.methods == ["all"] else a.methods
    settings = MergeSettings(
        base=a.base, experts=a.experts, fitness=a.fitness, out=a.out, methods=methods, langs=a.langs,
        directions=a.directions, flores=a.flores, dev_limit=a.dev_limit, test_flores_dir=a.test_flores_dir,
        fitness_weights=a.fitness_weights, lm_eval_task_dir=a.lm_eval_task_dir, num_fewshot=a.num_fewshot,
        pso=PSOSettings(iterations=a.iterations, inertia=a.inertia, c1=a.c1, c2=a.c2,
                        random_factors=a.random_factors, velocity_clamp=a.velocity_clamp, seed=a.seed),
        formulation=a.formulation, init_velocity=a.init_velocity, dare_density=a.dare_density,
        density=a.density, lam=a.lam,
        gen=GenSettings(beams=a.beams, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size,
                        repetition_penalty=a.repetition_penalty),
        template=a.template, device=a.device, dtype=a.dtype, progress=a.progress, final=a.final)
    doc = run_merge(settings)
    print(f"{PROG}: merged model ({doc['final']}, dev fitness {doc['dev_fitness'][doc['final']]:.2f}) -> {a.out}")
    print(f"{PROG}: report: {a.out}/report.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
