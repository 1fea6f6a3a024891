"""Inertia-weight particle swarm optimisation, maximising a fitness, with state saved every iteration.

PSO-Merging (Zhang, Zhang, Feng, arXiv 2508.19839) searches the weights of the merged model with the
standard update ``v <- w*v + c1*r1*(pbest - x) + c2*r2*(gbest - x); x <- x + v``. This module is the update
alone, on flat float64 vectors, so one implementation serves both formulations (see bayling.merge.swarm):

* ``coefficients``: a particle is the vector of coefficients of the 2N+1 starting models. With r1, r2 drawn
  once per particle and step, every particle stays an affine combination of the starting models, so this is
  *exactly* the weight-space search at the memory cost of the starting models plus one materialised model;
* ``weights``: a particle is the flattened model. Needed when r1, r2 are drawn per weight element; memory is
  3 x particles x model (position, velocity, personal best).

Choices the paper does not state are fields of :class:`PSOSettings` (documented in docs/merge.md): r1/r2
per particle (default) or per element; velocity starting at zero (default) or random; optional velocity
clamping. Randomness is drawn from a generator seeded by (seed, iteration), so a resumed run draws exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

RANDOM_FACTORS = ("particle", "element")


@dataclass
class PSOSettings:
    """The update's constants (paper values as defaults, per the public reviews) and the unstated choices."""

    iterations: int = 5            # paper (reviews): ~5 for 7B-13B models
    inertia: float = 0.2           # paper (reviews): w
    c1: float = 2.0                # paper (reviews): cognitive acceleration
    c2: float = 2.0                # paper (reviews): social acceleration
    random_factors: str = "particle"  # assumed: one r1, r2 per particle and step (exact low-memory search)
    velocity_clamp: float | None = None  # assumed: no clamping; else |v| <= clamp per component
    seed: int = 0

    def check(self) -> None:
        if self.random_factors not in RANDOM_FACTORS:
            raise ValueError(f"random_factors must be one of {RANDOM_FACTORS}")
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")


@dataclass
class SwarmState:
    """Everything needed to continue: positions, velocities, personal/global bests and the fitness history."""

    iteration: int                       # updates done so far (0 = only the initial swarm evaluated)
    x: list[torch.Tensor]
    v: list[torch.Tensor]
    fitness: list[float]                 # current fitness of each particle
    pbest: list[torch.Tensor]
    pbest_fitness: list[float]
    gbest_index: int = 0                 # which personal best is the global best
    history: list[dict] = field(default_factory=list)  # per iteration: fitness of each particle, gbest

    @property
    def gbest(self) -> torch.Tensor:
        return self.pbest[self.gbest_index]

    @property
    def gbest_fitness(self) -> float:
        return self.pbest_fitness[self.gbest_index]


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """Per-iteration randomness, independent of how many iterations ran in this process."""
    return torch.Generator().manual_seed(seed * 1_000_003 + iteration)


def best_index(values: list[float]) -> int:
    """First index of the maximum: ties go to the earlier particle (the base comes first), deterministic."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def init_state(x0: list[torch.Tensor], v0: list[torch.Tensor], evaluate: Callable[[int, torch.Tensor], float]
               ) -> SwarmState:
    fit = [float(evaluate(i, x)) for i, x in enumerate(x0)]
    state = SwarmState(0, [x.clone() for x in x0], [v.clone() for v in v0], fit, [x.clone() for x in x0],
                       list(fit))
    state.gbest_index = best_index(fit)
    state.history.append(_snapshot(state))
    return state


def _snapshot(state: SwarmState) -> dict:
    return {"iteration": state.iteration, "fitness": list(state.fitness), "gbest_fitness": state.gbest_fitness,
            "gbest_index": state.gbest_index}


def step(state: SwarmState, settings: PSOSettings, evaluate: Callable[[int, torch.Tensor], float]) -> SwarmState:
    """One synchronous PSO iteration: every particle moves with the bests of the previous iteration."""
    gen = iteration_generator(settings.seed, state.iteration + 1)
    gbest = state.gbest.clone()
    for i in range(len(state.x)):
        x, v = state.x[i], state.v[i]
        if settings.random_factors == "particle":
            r1, r2 = torch.rand(2, generator=gen, dtype=torch.float64)
        else:
            r1 = torch.rand(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)
            r2 = torch.rand(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)
        v = settings.inertia * v + settings.c1 * r1 * (state.pbest[i] - x) + settings.c2 * r2 * (gbest - x)
        if settings.velocity_clamp is not None:
            v = v.clamp(-settings.velocity_clamp, settings.velocity_clamp)
        state.v[i] = v
        state.x[i] = x + v
    state.iteration += 1
    for i, x in enumerate(state.x):
        f = float(evaluate(i, x))
        state.fitness[i] = f
        if f > state.pbest_fitness[i]:
            state.pbest[i] = x.clone()
            state.pbest_fitness[i] = f
    state.gbest_index = best_index(state.pbest_fitness)
    state.history.append(_snapshot(state))
    return state
