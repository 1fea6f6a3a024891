"""The report's derived figures: per-family means, each expert's own directions, the share of its gain kept."""

from __future__ import annotations

import pytest

from bayling.merge.report import family_means, gain_kept, markdown, own_directions

X_EN, EN_X = "deu_Latn-eng_Latn", "eng_Latn-deu_Latn"


def doc() -> dict:
    test = {"base": {X_EN: 10.0, EN_X: 5.0}, "expert1": {X_EN: 20.0, EN_X: 4.0},
            "expert2": {X_EN: 9.0, EN_X: 9.0}, "pso": {X_EN: 18.0, EN_X: 8.0}, "linear": {X_EN: 12.0, EN_X: 5.0}}
    return {"settings": {"fitness_weights": [], "pso": {"iterations": 1, "inertia": 0.2, "c1": 2, "c2": 2,
                                                        "random_factors": "particle", "seed": 0},
                         "dare_density": 0.2},
            "base": "B", "experts": ["E1", "E2"], "final": "pso", "fitness_evaluations": 3,
            "starting_models": ["base", "expert1", "expert2", "dare(expert1)", "dare(expert2)"],
            "formulation": "coefficients", "dev_fitness": {k: 1.0 for k in test},
            "dev_chrf": {k: {X_EN: 1.0, EN_X: 1.0} for k in test}, "test_chrf": test,
            "pso": {"history": [{"iteration": 0, "fitness": [1.0] * 5, "gbest_fitness": 1.0, "gbest_index": 0}],
                    "gbest": [0.0, 0.5, 0.5, 0.0, 0.0], "gbest_fitness": 1.0}}


def test_family_means_come_from_language_codes():
    assert family_means({X_EN: 10.0, EN_X: 4.0, "fra_Latn-eng_Latn": 20.0}) == {"en-x": 4.0, "x-en": 15.0}


def test_each_expert_owns_the_directions_where_it_is_best_and_beats_the_base():
    assert own_directions(doc(), "test") == {"expert1": [X_EN], "expert2": [EN_X]}


def test_gain_kept_is_the_merged_gain_over_the_experts_gain():
    kept = gain_kept(doc(), "test", "pso")
    assert kept["expert1"] == pytest.approx(0.8)   # (18-10) / (20-10)
    assert kept["expert2"] == pytest.approx(0.75)  # (8-5) / (9-5)
    assert gain_kept(doc(), "test", "linear")["expert2"] == pytest.approx(0.0)


def test_markdown_has_the_method_table_and_the_kept_gain_table():
    md = markdown(doc())
    assert "| pso | 1.00 | 8.00 | 18.00 | 13.00 |" in md
    assert "| pso | 80 % | 75 % |" in md
    assert "Global best = base +0.000, expert1 +0.500" in md
