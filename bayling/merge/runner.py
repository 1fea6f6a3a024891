"""One ``bayling-merge`` run: check inputs, evaluate the references and baselines, run PSO, report, write.

Order matters for the user: every input is checked (folders, checkpoints, dev and test files, the output
folder) before a model is loaded or a file written; the swarm is saved after every iteration; the merged
checkpoint is written last, so a folder with ``merge.json`` holds a finished merge.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from bayling.eval.translate import data_fingerprint
from bayling.hashing import sha256_file
from bayling.merge import pso
from bayling.merge.baselines import MERGEKIT_METHODS, run_baseline, weights_dtype
from bayling.merge.checkpoint import (
    MARKER,
    MergeError,
    check_compatible,
    check_out_dir,
    inputs_fingerprint,
    load_state,
    model_dir,
    save_checkpoint,
)
from bayling.merge.fitness import (
    Fitness,
    GenSettings,
    Scorer,
    build_dev_tasks,
    check_disjoint,
    parse_fitness_spec,
    parse_weights,
    state_digest,
)
from bayling.merge.report import write_report
from bayling.merge.state import load_state as load_swarm
from bayling.merge.state import save_state as save_swarm
from bayling.merge.swarm import FORMULATIONS, StartingModels, choose_formulation

# The one registry of merge methods: CLI choices, help and docs derive from it.
METHODS = {
    "pso": "PSO-Merging: particle swarm over the base, the experts and their DARE copies, dev-set fitness",
    **{name: spec[0] for name, spec in MERGEKIT_METHODS.items()},
}


@dataclass
class MergeSettings:
    base: str
    experts: list[str]
    fitness: list[str]
    out: str
    methods: list[str] = field(default_factory=lambda: ["pso"])
    langs: str = "all"
    directions: list[str] = field(default_factory=lambda: ["en-x", "x-en", "zh-x", "x-zh"])
    flores: int = 101
    dev_limit: int | None = None
    test_flores_dir: str | None = None
    fitness_weights: list[str] = field(default_factory=list)
    pso: pso.PSOSettings = field(default_factory=pso.PSOSettings)
    formulation: str = "auto"
    init_velocity: float = 0.0      # assumed: 0 = particles start at rest
    dare_density: float = 0.2       # paper (reviews): drop rate 0.8
    density: float = 0.2            # baselines TIES/DARE: the same 20 %
    lam: float = 1.0                # baselines: task-vector scale
    gen: GenSettings = field(default_factory=GenSettings)
    template: str | None = None
    device: str | None = None
    dtype: str | None = None
    progress: bool = True
    final: str | None = None        # which method's model goes to --out (default: pso, else best on dev)


def check_settings(s: MergeSettings) -> None:
    if not s.experts:
        raise MergeError("give at least one --experts folder", field="experts")
    unknown = [m for m in s.methods if m not in METHODS]
    if unknown:
        raise MergeError(f"unknown method {unknown[0]!r}; known: all, {', '.join(METHODS)}", field="methods")
    if s.final is not None and s.final not in s.methods:
        raise MergeError(f"--final {s.final} is not among --methods", field="final")
    for name, value in (("dare_density", s.dare_density), ("density", s.density)):
        if not 0 < value <= 1:
            raise MergeError(f"must be in (0, 1], got {value}", field=name)
    if s.formulation not in FORMULATIONS:
        raise MergeError(f"must be one of {', '.join(FORMULATIONS)}", field="formulation")
    if s.formulation == "coefficients" and s.pso.random_factors == "element":
        raise MergeError("per-element random factors leave the span of the starting models: use "
                         "--formulation weights (or auto)", field="formulation")
    if s.pso.iterations < 0 or s.pso.inertia < 0 or s.pso.c1 < 0 or s.pso.c2 < 0:
        raise MergeError("iterations, inertia, c1 and c2 must be >= 0", field="pso")
    if s.pso.velocity_clamp is not None and s.pso.velocity_clamp <= 0:
        raise MergeError("must be > 0", field="velocity_clamp")


def test_tasks(s: MergeSettings) -> list:
    if not s.test_flores_dir:
        return []
    from bayling.eval.config import EvalConfig
    from bayling.eval.flores import build_tasks

    return build_tasks(EvalConfig(flores_dir=s.test_flores_dir, langs=s.langs, directions=s.directions,
                                  flores=s.flores))


def run_merge(s: MergeSettings) -> dict:
    check_settings(s)
    out = Path(s.out)
    check_out_dir(out)
    base_dir = model_dir(s.base, "base")
    expert_dirs = [model_dir(e, f"expert {i + 1}") for i, e in enumerate(s.experts)]
    if len({d.resolve() for d in [base_dir, *expert_dirs]}) != 1 + len(expert_dirs):
        raise MergeError("the base and the experts must be distinct folders", field="experts")
    dev_dirs = [parse_fitness_spec(f) for f in s.fitness]
    if not dev_dirs:
        raise MergeError("give --fitness flores:DIR (a FLORES dev folder)", field="fitness")
    dev = [t for d in dev_dirs for t in build_dev_tasks(d, s.langs, s.directions, s.flores, s.dev_limit)]
    test = test_tasks(s)
    check_disjoint(dev, test)
    weights = parse_weights(s.fitness_weights, dev)

    formulation = choose_formulation(s.formulation, s.pso.random_factors)
    inputs = inputs_fingerprint([base_dir, *expert_dirs])
    if "pso" in s.methods:  # a saved swarm of another search: refuse before any work
        load_swarm(out / "swarm", swarm_identity(s, formulation, weights, inputs))
    from bayling.eval.generate import load_generator

    scorer = Scorer(lambda: load_generator(str(base_dir), template=s.template, device=s.device, dtype=s.dtype),
                    s.gen, out / "evals", s.progress, template=s.template)
    identity = {"inputs": inputs, "dev": [[t.name, data_fingerprint(t), weights[t.name]] for t in dev],
                "gen": asdict(s.gen), "template": s.template, "dare_density": s.dare_density, "seed": s.pso.seed}
    fitness = Fitness(scorer, dev, weights, out / "fitness_cache.json", json.loads(json.dumps(identity)))
    base = load_state(base_dir)
    experts = []
    for d in expert_dirs:
        experts.append(load_state(d))
        check_compatible(base_dir, base, d, experts[-1])
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("bayling-merge output folder (safe for bayling-merge to update)\n", encoding="utf-8")

    starting = StartingModels(base, experts, dare_density=s.dare_density, seed=s.pso.seed)
    entries: dict[str, tuple[str, object]] = {}  # name -> (cache key, state factory)
    k = starting.count
    onehot = [torch.eye(k, dtype=torch.float64)[j] for j in range(k)]
    for j, label in enumerate(starting.labels()[: 1 + len(experts)]):
        entries[label] = ("c-" + state_digest(onehot[j]), (lambda c=onehot[j]: starting.materialize(c)))
    for m in tqdm([m for m in s.methods if m != "pso"], desc="MergeKit baselines", disable=not s.progress):
        dest = run_baseline(m, base_dir, expert_dirs, out / "baselines" / m, density=s.density, lam=s.lam,
                            dtype=weights_dtype(base), seed=s.pso.seed, device=s.device, inputs=inputs)
        entries[m] = (f"{m}-" + file_digest(dest / "merge.json"), (lambda dest=dest: load_state(dest)))
    dev_fit = {name: fitness(key, make)
               for name, (key, make) in tqdm(entries.items(), desc="dev fitness", disable=not s.progress)}

    swarm = None
    if "pso" in s.methods:
        swarm, key, make = run_pso(s, starting, formulation, fitness, onehot, out, inputs)
        entries["pso"] = (key, make)
        dev_fit["pso"] = fitness(key, make)

    test_scores = {}
    for name, (key, make) in tqdm(entries.items(), desc="test split", disable=not (s.progress and test)):
        test_scores[name] = scorer.score(key, make, test, out / "evals" / "test" / name) if test else {}
    final = s.final or ("pso" if "pso" in s.methods else max((m for m in s.methods), key=lambda m: dev_fit[m]))
    doc = {"settings": settings_doc(s, formulation), "formulation": formulation,
           "starting_models": starting.labels(), "final": final, "dev_fitness": dev_fit,
           "dev_chrf": {n: fitness.scores(key) for n, (key, _) in entries.items()},
           "test_chrf": test_scores, "fitness_evaluations": fitness.evaluations,
           "experts": [str(d) for d in expert_dirs], "base": str(base_dir)}
    if swarm is not None:
        doc["pso"] = {"history": swarm.history, "gbest_fitness": swarm.gbest_fitness,
                      "gbest": swarm.gbest.tolist() if formulation == "coefficients" else None}
    write_report(out, doc)
    save_checkpoint(entries[final][1](), base_dir, out, {"tool": "bayling-merge", "method": final,
                                                         "base": str(base_dir), "experts": doc["experts"],
                                                         "dev_fitness": dev_fit[final]})
    return doc


def file_digest(path: Path) -> str:
    return sha256_file(path)[:20]


def settings_doc(s: MergeSettings, formulation: str) -> dict:
    d = asdict(s)
    d["resolved_formulation"] = formulation
    return json.loads(json.dumps(d))


def swarm_identity(s: MergeSettings, formulation: str, weights: dict[str, float], inputs: list) -> dict:
    """What a saved swarm must match to be continued: the search, its starting models and its fitness."""
    search = {k: v for k, v in asdict(s.pso).items() if k != "iterations"}  # more iterations = continue
    ident = {"pso": search, "formulation": formulation, "dare_density": s.dare_density,
             "init_velocity": s.init_velocity, "inputs": inputs, "fitness_tasks": sorted(weights.items()),
             "dev_limit": s.dev_limit, "gen": asdict(s.gen)}
    return json.loads(json.dumps(ident))


def run_pso(s: MergeSettings, starting: StartingModels, formulation: str, fitness: Fitness,
            onehot: list[torch.Tensor], out: Path, inputs: list):
    """Initialise or resume the swarm, iterate, save after every iteration; returns (state, key, factory)."""
    k = starting.count
    coef = formulation == "coefficients"
    ident = swarm_identity(s, formulation, fitness.weights, inputs)

    def key_of(x: torch.Tensor) -> str:
        return ("c-" if coef else "w-") + state_digest(x)

    def make_of(x: torch.Tensor):
        return (lambda: starting.materialize(x)) if coef else (lambda: starting.unflatten(x))

    def evaluate_initial(i: int, x: torch.Tensor) -> float:
        """Starting model i: the same cache entry as its row in the table (no second evaluation)."""
        ref = "c-" + state_digest(onehot[i])
        f = fitness(ref, make_of(x) if coef else (lambda: starting.materialize(onehot[i])))
        fitness.alias(key_of(x), ref)
        return f

    def evaluate(i: int, x: torch.Tensor) -> float:
        return fitness(key_of(x), make_of(x))

    folder = out / "swarm"
    state = load_swarm(folder, ident)
    if state is None:
        gen = pso.iteration_generator(s.pso.seed, 0)
        u = (torch.rand((k, k), generator=gen, dtype=torch.float64) * 2 - 1) * s.init_velocity
        u = u - u.mean(dim=1, keepdim=True)  # zero-sum: velocities keep particles affine combinations
        if coef:
            x0, v0 = list(onehot), [u[j] for j in range(k)]
        else:
            x0 = [starting.flat_start(j) for j in range(k)]
            v0 = [starting.flat_combination(u[j]) for j in range(k)]
        state = pso.init_state(x0, v0, evaluate_initial)
        save_swarm(folder, state, ident)
    bar = tqdm(total=s.pso.iterations, initial=min(state.iteration, s.pso.iterations), desc="PSO",
               unit="iter", disable=not s.progress)
    while state.iteration < s.pso.iterations:
        pso.step(state, s.pso, evaluate)
        save_swarm(folder, state, ident)
        bar.update(1)
        bar.set_postfix(gbest=f"{state.gbest_fitness:.2f}")
    bar.close()
    gbest = state.gbest.clone()
    return state, key_of(gbest), make_of(gbest)
