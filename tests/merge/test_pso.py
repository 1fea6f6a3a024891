"""The PSO algorithm on toy tensors: known optimum, determinism, and the two formulations agreeing."""

from __future__ import annotations

import pytest
import torch

from bayling.merge import pso
from bayling.merge.swarm import StartingModels


def toy_models(seed: int = 0) -> StartingModels:
    """A 'base' and two 'experts' of two small tensors each (plus an integer buffer left alone)."""
    g = torch.Generator().manual_seed(seed)
    base = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(5, generator=g), "ids": torch.arange(3)}
    experts = [{"w": base["w"] + torch.randn(4, 3, generator=g), "b": base["b"] + torch.randn(5, generator=g),
                "ids": torch.arange(3)} for _ in range(2)]
    return StartingModels(base, experts, dare_density=0.5, seed=seed)


def flat(state: dict) -> torch.Tensor:
    return torch.cat([state["w"].reshape(-1), state["b"].reshape(-1)]).double()


def run(settings: pso.PSOSettings, formulation: str, models: StartingModels, target: torch.Tensor):
    """Maximise -||model - target||^2 with either formulation; returns (state, evaluated models)."""
    k = models.count
    seen = []

    def fit(weights: dict) -> float:
        seen.append(weights)
        return -float(((flat(weights) - target) ** 2).sum())

    if formulation == "coefficients":
        x0 = [torch.eye(k, dtype=torch.float64)[j] for j in range(k)]
        evaluate = lambda i, x: fit(models.materialize(x))  # noqa: E731
    else:
        x0 = [models.flat_start(j) for j in range(k)]
        evaluate = lambda i, x: fit(models.unflatten(x))  # noqa: E731
    state = pso.init_state(x0, [torch.zeros_like(x) for x in x0], evaluate)
    for _ in range(settings.iterations):
        pso.step(state, settings, evaluate)
    return state, seen


def target_in_span(models: StartingModels, coefs: list[float]) -> torch.Tensor:
    return flat(models.materialize(torch.tensor(coefs, dtype=torch.float64)))


def test_swarm_converges_to_a_known_optimum_inside_the_span():
    models = toy_models()
    optimum = [0.2, 0.5, 0.4, -0.3, 0.2]  # sums to 1: an affine combination, as every particle is
    target = target_in_span(models, optimum)
    state, _ = run(pso.PSOSettings(iterations=60, inertia=0.7, c1=1.5, c2=1.5, seed=0), "coefficients",
                   models, target)
    assert max(state.history[0]["fitness"]) < -3.9  # no starting model is close
    assert state.gbest_fitness > -0.02, state.gbest_fitness
    assert torch.allclose(state.gbest, torch.tensor(optimum, dtype=torch.float64), atol=0.06)


def test_paper_settings_improve_on_every_starting_model_and_never_lose_the_best():
    models = toy_models()
    target = target_in_span(models, [0.0, 0.5, 0.5, 0.0, 0.0])  # the midpoint of the experts
    state, _ = run(pso.PSOSettings(iterations=5), "coefficients", models, target)
    start_best = max(state.history[0]["fitness"])
    gbests = [h["gbest_fitness"] for h in state.history]
    assert gbests == sorted(gbests)  # the global best never gets worse
    assert state.gbest_fitness > start_best
    # golden value: the paper's constants, seed 0, this toy problem (pins the update rule and its randomness)
    assert state.gbest_fitness == pytest.approx(-3.2830975, abs=1e-6)


def test_same_seed_same_search_other_seed_other_search():
    models = toy_models()
    target = target_in_span(models, [0.1, 0.3, 0.3, 0.2, 0.1])
    a, _ = run(pso.PSOSettings(iterations=4, seed=7), "coefficients", models, target)
    b, _ = run(pso.PSOSettings(iterations=4, seed=7), "coefficients", models, target)
    c, _ = run(pso.PSOSettings(iterations=4, seed=8), "coefficients", models, target)
    assert [torch.equal(x, y) for x, y in zip(a.x, b.x)] == [True] * len(a.x)
    assert a.history == b.history
    assert not all(torch.equal(x, y) for x, y in zip(a.x, c.x))


def test_coefficient_formulation_is_exactly_the_weight_space_search():
    """Per-particle random factors: the cheap search visits the same models as the full one."""
    models = toy_models()
    target = target_in_span(models, [0.0, 0.6, 0.6, -0.1, -0.1])
    settings = pso.PSOSettings(iterations=4, seed=1)
    sc, seen_c = run(settings, "coefficients", models, target)
    sw, seen_w = run(settings, "weights", models, target)
    assert len(seen_c) == len(seen_w)
    for a, b in zip(seen_c, seen_w):
        assert torch.allclose(flat(a), flat(b), atol=1e-4)
    assert sc.gbest_fitness == pytest.approx(sw.gbest_fitness, rel=1e-4)
    assert torch.allclose(flat(models.materialize(sc.gbest)), sw.gbest.double(), atol=1e-4)


def test_per_element_random_factors_leave_the_span_and_search_differently():
    models = toy_models()
    target = target_in_span(models, [0.0, 0.5, 0.5, 0.0, 0.0]) + 0.3  # outside the span
    part, _ = run(pso.PSOSettings(iterations=3, seed=2), "weights", models, target)
    elem, _ = run(pso.PSOSettings(iterations=3, seed=2, random_factors="element"), "weights", models, target)
    assert not torch.allclose(part.x[0], elem.x[0])


def test_velocity_clamp_bounds_every_component():
    models = toy_models()
    target = target_in_span(models, [3.0, -1.0, -1.0, 0.0, 0.0])
    state, _ = run(pso.PSOSettings(iterations=3, velocity_clamp=0.05, c1=4, c2=4), "coefficients", models, target)
    for v in state.v:
        assert float(v.abs().max()) <= 0.05 + 1e-12


def test_particles_stay_affine_combinations():
    """Coefficients keep summing to 1 (zero initial velocity), so no particle rescales the whole model."""
    models = toy_models()
    state, _ = run(pso.PSOSettings(iterations=5, seed=4), "coefficients", models,
                   target_in_span(models, [0.1, 0.8, 0.4, -0.2, -0.1]))
    for x in state.x + state.pbest:
        assert float(x.sum()) == pytest.approx(1.0, abs=1e-12)


def test_ties_go_to_the_earlier_particle():
    assert pso.best_index([1.0, 3.0, 3.0]) == 1
