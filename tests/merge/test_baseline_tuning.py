"""Dev-tuned baselines (bayling.merge.tuning): the staged grid, the choice of the best dev point, the report."""

from __future__ import annotations

import pytest
import torch

from bayling.merge.baselines import mergekit_config, run_baseline
from bayling.merge.checkpoint import MergeError, load_state
from bayling.merge.tuning import GridPoint, expert_weights, grid_markdown, select_best, tune_baselines

METHODS = ["linear", "task_arithmetic", "ties", "dare_linear"]


def fake_fitness(p: GridPoint) -> float:
    """A made-up dev fitness with one known best point per method (no model involved)."""
    if p.method == "linear":
        return 5.0 + 2 * p.weights[0]                      # best: expert1 weight 0.75
    if p.method == "task_arithmetic":
        return 7.0 - 10 * (p.lam - 0.5) ** 2               # best: lambda 0.5
    if p.method == "ties":
        return 4.0 + p.density                             # best: density 0.8
    return 6.0 - p.density                                 # dare_linear, best: density 0.2


def test_the_best_dev_point_of_each_method_is_selected_and_stage_two_uses_the_chosen_lambda():
    calls = []
    result = tune_baselines(METHODS, lambda p: calls.append(p) or fake_fitness(p), n_experts=2)
    assert result["selected"] == {"linear": "linear_w0.75-0.25", "task_arithmetic": "task_arithmetic_l0.5",
                                  "ties": "ties_d0.8_l0.5", "dare_linear": "dare_linear_d0.2_l0.5"}
    assert result["lambda_for_density"] == 0.5
    assert [p.name for p in calls] == [
        "linear_w0.25-0.75", "linear_w0.5-0.5", "linear_w0.75-0.25",
        "task_arithmetic_l0.3", "task_arithmetic_l0.5", "task_arithmetic_l0.7", "task_arithmetic_l1",
        "ties_d0.2_l0.5", "ties_d0.5_l0.5", "ties_d0.8_l0.5",
        "dare_linear_d0.2_l0.5", "dare_linear_d0.5_l0.5", "dare_linear_d0.8_l0.5"]
    for rows in result["grid"].values():
        assert sum(r["selected"] for r in rows) == 1
        assert max(rows, key=lambda r: r["dev_fitness"])["selected"]
    assert result["grid"]["ties"][2]["settings"] == {"method": "ties", "lam": 0.5, "density": 0.8, "weights": None}


def test_every_grid_point_is_in_the_report_with_its_dev_fitness():
    result = tune_baselines(METHODS, fake_fitness, n_experts=2)
    md = grid_markdown(result)
    rows = md.splitlines()[2:]
    assert len(rows) == 13
    assert "| task_arithmetic | task_arithmetic_l0.3 | 6.60 |  |" in rows
    assert "| task_arithmetic | task_arithmetic_l0.5 | 7.00 | **yes** |" in rows
    assert sum("**yes**" in r for r in rows) == 4


def test_selection_is_deterministic_and_the_earlier_point_wins_a_tie():
    flat = tune_baselines(["task_arithmetic", "ties"], lambda p: 3.0, n_experts=2)
    assert flat["selected"] == {"task_arithmetic": "task_arithmetic_l0.3", "ties": "ties_d0.2_l0.3"}
    assert tune_baselines(METHODS, fake_fitness, n_experts=2) == tune_baselines(METHODS, fake_fitness, n_experts=2)
    rows = [{"name": "a", "dev_fitness": 1.0}, {"name": "b", "dev_fitness": 2.0}, {"name": "c", "dev_fitness": 2.0}]
    assert select_best(rows)["name"] == "b"
    with pytest.raises(MergeError):
        select_best([])


def test_without_task_arithmetic_the_density_grid_runs_at_lambda_one():
    result = tune_baselines(["ties"], fake_fitness, n_experts=2)
    assert result["lambda_for_density"] == 1.0
    assert [r["name"] for r in result["grid"]["ties"]] == ["ties_d0.2_l1", "ties_d0.5_l1", "ties_d0.8_l1"]


def test_bad_methods_and_weights_are_refused(tmp_path):
    with pytest.raises(MergeError, match="not a MergeKit baseline"):
        tune_baselines(["pso"], fake_fitness, n_experts=2)
    with pytest.raises(MergeError, match="weights for"):
        mergekit_config("linear", tmp_path, [tmp_path / "a", tmp_path / "b"], density=0.2, lam=1.0, dtype="float32",
                        weights=[1.0])
    assert expert_weights(0.25, 3) == (0.25, 0.375, 0.375)
    cfg = mergekit_config("linear", tmp_path, [tmp_path / "a", tmp_path / "b"], density=0.2, lam=1.0,
                          dtype="float32", weights=[0.75, 0.25])
    assert [m["parameters"]["weight"] for m in cfg["models"]] == [0.75, 0.25]


def test_weighted_linear_merge_is_the_weighted_mean_of_the_experts(merge_models, tmp_path):
    """The per-expert weights reach MergeKit: linear with (0.75, 0.25) = 0.75 expert1 + 0.25 expert2."""
    dest = run_baseline("linear", merge_models["base"], [merge_models["e1"], merge_models["e2"]], tmp_path / "lin",
                        density=0.2, lam=1.0, dtype="float32", seed=0, device=None, weights=[0.75, 0.25])
    out, e1, e2 = load_state(dest), load_state(merge_models["e1"]), load_state(merge_models["e2"])
    differs = False
    for name, t in out.items():
        assert torch.allclose(t, 0.75 * e1[name] + 0.25 * e2[name], atol=1e-6), name
        differs |= not torch.allclose(t, (e1[name] + e2[name]) / 2, atol=1e-6)
    assert differs  # not the equal-weight mean
