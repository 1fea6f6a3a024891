"""Memory and time of PSO-Merging's two formulations, side by side in one run, on synthetic models.

    python benchmarks/merge_formulations.py [--params 4000000] [--experts 2 4] [--iterations 3] [--repeats 3]

For each number of experts N, the same search (seed, per-particle random factors, a fitness that needs the
candidate's weights: minus the squared distance to a fixed target) runs in the ``coefficients`` formulation
(what bayling-merge runs by default) and the ``weights`` formulation (a full model copy per particle). We
report the bytes of swarm state each holds (positions, velocities, personal bests — exact, from tensor
sizes), the median wall time per iteration, and whether both found the same global best. Fitness
evaluation (generation) is not included: it costs the same in both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bayling.merge import pso  # noqa: E402
from bayling.merge.swarm import StartingModels  # noqa: E402


def synthetic(params: int, n: int) -> tuple[StartingModels, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rows = params // 1000
    base = {"w": torch.randn(rows, 1000, generator=g)}
    experts = [{"w": base["w"] + 0.1 * torch.randn(rows, 1000, generator=g)} for _ in range(n)]
    target = torch.stack([e["w"] for e in experts]).mean(0).reshape(-1)
    return StartingModels(base, experts, dare_density=0.2, seed=0), target


def search(models: StartingModels, target: torch.Tensor, formulation: str, iterations: int):
    k = models.count

    def fit(w: dict) -> float:
        return -float(((w["w"].reshape(-1) - target) ** 2).sum())

    if formulation == "coefficients":
        x0 = [torch.eye(k, dtype=torch.float64)[j] for j in range(k)]
        evaluate = lambda i, x: fit(models.materialize(x))  # noqa: E731
    else:
        x0 = [models.flat_start(j) for j in range(k)]
        evaluate = lambda i, x: fit(models.unflatten(x))  # noqa: E731
    state = pso.init_state(x0, [torch.zeros_like(x) for x in x0], evaluate)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        pso.step(state, pso.PSOSettings(iterations=iterations), evaluate)
        times.append(time.perf_counter() - t0)
    state_bytes = sum(t.numel() * t.element_size() for t in state.x + state.v + state.pbest)
    return state, state_bytes, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=4_000_000)
    ap.add_argument("--experts", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--iterations", type=int, default=3)
    a = ap.parse_args(argv)
    model_mb = a.params * 4 / 1e6
    print(f"synthetic model: {a.params:,} float32 parameters = {model_mb:.0f} MB; {a.iterations} iterations\n")
    print("| N experts | particles | formulation | swarm state | state / model | median s / iteration | same gbest |")
    print("|---:|---:|---|---:|---:|---:|---|")
    for n in a.experts:
        models, target = synthetic(a.params, n)
        sc, bc, tc = search(models, target, "coefficients", a.iterations)
        sw, bw, tw = search(models, target, "weights", a.iterations)
        same = abs(sc.gbest_fitness - sw.gbest_fitness) <= 1e-4 * abs(sw.gbest_fitness)
        for name, b, t in (("coefficients", bc, tc), ("weights", bw, tw)):
            print(f"| {n} | {models.count} | {name} | {b / 1e6:.3f} MB | {b / (a.params * 4):.2f}x | {t:.2f} | "
                  f"{'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
