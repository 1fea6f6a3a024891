"""Dev-tuned MergeKit baselines: a small grid per method, each point scored by PSO's own dev fitness.

Why: PSO-Merging searches on the dev split; baselines run at fixed defaults (lambda 1, density 0.2, equal
weights) get no such help, so "PSO beats the baselines" could just be "searching on dev beats not
searching". Here every baseline gets the same dev data and the same fitness (mean dev chrF++, cached by the
candidate's digest), and the point with the best dev fitness is the baseline's tuned configuration; only
that one is evaluated on the test split.

The grid is staged, so it stays small (each point costs one fitness evaluation):

1. ``linear``: expert1's weight w in ``weights`` (the other experts share 1 - w); ``task_arithmetic``:
   lambda in ``lambdas``;
2. ``ties`` / ``dare_linear`` / ``dare_ties``: density in ``densities`` at the lambda task arithmetic chose
   (1 when task arithmetic is not tuned).

Selection is deterministic: the highest dev fitness, the earlier grid point on a tie.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bayling.atomic import atomic_write_text
from bayling.merge.baselines import MERGEKIT_METHODS, run_baseline, weights_dtype
from bayling.merge.checkpoint import MergeError, inputs_fingerprint, load_state
from bayling.merge.fitness import Fitness, GenSettings, Scorer, parse_weights

LAMBDAS = (0.3, 0.5, 0.7, 1.0)
EXPERT1_WEIGHTS = (0.25, 0.5, 0.75)
DENSITIES = (0.2, 0.5, 0.8)


@dataclass(frozen=True)
class GridPoint:
    method: str
    lam: float = 1.0
    density: float = 0.2
    weights: tuple[float, ...] | None = None  # per expert; None = 1 each (MergeKit's default use)

    @property
    def name(self) -> str:
        """Row and folder name: the method and the settings that vary for it."""
        _, uses_base, uses_density = MERGEKIT_METHODS[self.method]
        parts = [self.method]
        if self.weights is not None:
            parts.append("w" + "-".join(f"{w:g}" for w in self.weights))
        if uses_density:
            parts.append(f"d{self.density:g}")
        if uses_base:
            parts.append(f"l{self.lam:g}")
        return "_".join(parts)


def expert_weights(w1: float, n_experts: int) -> tuple[float, ...]:
    """Expert1 gets ``w1``, the others share ``1 - w1`` equally."""
    if n_experts < 2:
        return (1.0,)
    rest = (1.0 - w1) / (n_experts - 1)
    return (w1, *([rest] * (n_experts - 1)))


def first_stage(methods: list[str], n_experts: int, lambdas=LAMBDAS, weights=EXPERT1_WEIGHTS) -> list[GridPoint]:
    points = []
    if "linear" in methods:
        points += [GridPoint("linear", weights=expert_weights(w, n_experts)) for w in weights]
    if "task_arithmetic" in methods:
        points += [GridPoint("task_arithmetic", lam=lam) for lam in lambdas]
    return points


def second_stage(methods: list[str], lam: float, densities=DENSITIES) -> list[GridPoint]:
    return [GridPoint(m, lam=lam, density=d) for m in methods if m in MERGEKIT_METHODS
            and MERGEKIT_METHODS[m][2] for d in densities]


def select_best(rows: list[dict]) -> dict:
    """The row with the highest ``dev_fitness``; the first one on a tie (``max`` keeps the first)."""
    if not rows:
        raise MergeError("no grid point to choose from")
    return max(rows, key=lambda r: r["dev_fitness"])


def tune_baselines(methods: list[str], evaluate: Callable[[GridPoint], float], n_experts: int,
                   lambdas=LAMBDAS, weights=EXPERT1_WEIGHTS, densities=DENSITIES) -> dict:
    """Score the staged grid with ``evaluate`` (a point's dev fitness) and pick each method's best point.

    Returns ``grid``: method -> rows (name, settings, dev fitness, selected) in grid order; ``selected``:
    method -> the chosen row's name; ``lambda_for_density``: the lambda stage 2 used.
    """
    unknown = [m for m in methods if m not in MERGEKIT_METHODS]
    if unknown:
        raise MergeError(f"not a MergeKit baseline: {unknown[0]!r}; known: {', '.join(MERGEKIT_METHODS)}")
    grid: dict[str, list[dict]] = {}

    def score(points: list[GridPoint]) -> None:
        for p in points:
            grid.setdefault(p.method, []).append({"name": p.name, "settings": asdict(p),
                                                  "dev_fitness": float(evaluate(p))})

    score(first_stage(methods, n_experts, lambdas, weights))
    lam = 1.0
    if "task_arithmetic" in grid:
        lam = select_best(grid["task_arithmetic"])["settings"]["lam"]
    score(second_stage(methods, lam, densities))
    selected = {}
    for method, rows in grid.items():
        best = select_best(rows)
        selected[method] = best["name"]
        for r in rows:
            r["selected"] = r is best
    return {"grid": grid, "selected": selected, "lambda_for_density": lam}


def grid_markdown(result: dict) -> str:
    """The grid as a table: every point's dev fitness, the selected one per method marked."""
    lines = ["| method | grid point | dev fitness | selected |", "|---|---|---:|---|"]
    for method, rows in result["grid"].items():
        for r in rows:
            lines.append(f"| {method} | {r['name']} | {r['dev_fitness']:.2f} | {'**yes**' if r['selected'] else ''} |")
    return "\n".join(lines) + "\n"


def run_tuned_baselines(base_dir: Path, expert_dirs: list[Path], out: Path, dev_tasks: list, test_tasks: list,
                        gen: GenSettings, seed: int, methods: list[str], progress: bool = False) -> dict:
    """Merge and score the grid with MergeKit and bayling-merge's fitness, evaluate the selected points on
    the test split (``out/evals/test/<method>``), write ``out/tuning.json``. Resumable: merges and fitness
    values are cached; bayling-eval skips finished test directions."""
    from bayling.eval.generate import load_generator
    from bayling.hashing import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    inputs = inputs_fingerprint([base_dir, *expert_dirs])
    dtype = weights_dtype(load_state(base_dir))
    scorer = Scorer(lambda: load_generator(str(base_dir)), gen, out / "evals", progress)
    identity = {"inputs": inputs, "dev": [[t.name, t.files] for t in dev_tasks], "gen": asdict(gen), "seed": seed,
                "dev_lines": [len(t.sources) for t in dev_tasks]}
    fitness = Fitness(scorer, dev_tasks, parse_weights([], dev_tasks), out / "fitness_cache.json",
                      json.loads(json.dumps(identity)))
    made: dict[str, tuple[str, Path]] = {}

    def evaluate(p: GridPoint) -> float:
        dest = run_baseline(p.method, base_dir, expert_dirs, out / "grid" / p.name, density=p.density, lam=p.lam,
                            dtype=dtype, seed=seed, device=None, inputs=inputs,
                            weights=list(p.weights) if p.weights is not None else None)
        key = f"{p.name}-" + sha256_file(dest / "merge.json")[:20]
        made[p.name] = (key, dest)
        value = fitness(key, lambda: load_state(dest))
        print(f"tuned baselines: {p.name} dev fitness {value:.2f}", flush=True)
        return value

    result = tune_baselines(methods, evaluate, len(expert_dirs))
    result["dev_chrf"] = {name: fitness.scores(key) for name, (key, _) in made.items()}
    result["test_chrf"] = {}
    for method, name in result["selected"].items():
        key, dest = made[name]
        result["test_chrf"][method] = scorer.score(key, lambda dest=dest: load_state(dest), test_tasks,
                                                   out / "evals" / "test" / method)
    result["test_mean"] = {m: sum(sc.values()) / len(sc) for m, sc in result["test_chrf"].items() if sc}
    atomic_write_text(out / "tuning.json", json.dumps(result, indent=1) + "\n")
    return result


def pso_vs_tuned(folders: dict[int, Path], tuned_dir: Path, result: dict, samples: int) -> tuple[str, dict]:
    """Per PSO seed: paired bootstrap of its test mean against the best tuned baseline (by test mean: the
    strongest opponent, chosen with hindsight in its favour)."""
    from bayling.merge.significance import load_eval_dir, paired_bootstrap, verdict

    best = max(result["test_mean"], key=result["test_mean"].get)
    opponent = load_eval_dir(tuned_dir / "evals" / "test" / best)
    rows, per_seed = [], {}
    for seed, folder in folders.items():
        boot = paired_bootstrap(load_eval_dir(folder / "evals" / "test" / "pso"), opponent, n_samples=samples)
        per_seed[seed] = {"bootstrap": boot, "verdict": verdict(boot)}
        rows.append(f"| {seed} | {boot['mean_a']:.2f} | {boot['diff']:+.2f} | {boot['ci95'][0]:+.2f} .. "
                    f"{boot['ci95'][1]:+.2f} | {boot['p_value']:.3f} |")
    name = result["selected"][best]
    lines = ["Dev-tuned baselines (each method's grid point with the best dev fitness; test mean): "
             + ", ".join(f"{m} = {result['selected'][m]} {v:.2f}" for m, v in result["test_mean"].items()), "",
             f"PSO seeds vs the best tuned baseline ({name}, test mean {result['test_mean'][best]:.2f}), paired "
             f"bootstrap, {samples} resamples:", "",
             f"| PSO seed | test mean | diff vs {name} | 95 % CI | p |", "|---:|---:|---:|---:|---:|", *rows]
    goals = {"pso_beats_best_tuned_baseline_every_seed": all(r["bootstrap"]["diff"] > 0 for r in per_seed.values()),
             "pso_beats_best_tuned_baseline_beyond_noise_every_seed": all(
                 r["bootstrap"]["p_value"] < 0.05 and r["bootstrap"]["ci95"][0] > 0 for r in per_seed.values())}
    return "\n".join(lines) + "\n", {"best_tuned": best, "best_tuned_point": name, "per_seed": per_seed,
                                     "goals": goals}
