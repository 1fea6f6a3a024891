"""The starting models of PSO-Merging: base, experts, DARE copies (the paper's drop-and-rescale)."""

from __future__ import annotations

import pytest
import torch

from bayling.merge.swarm import StartingModels, choose_formulation, dare, tensor_generator


def models(density: float = 0.2) -> StartingModels:
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(200, 50, generator=g), "steps": torch.tensor([7])}
    experts = [{"w": base["w"] + torch.randn(200, 50, generator=g), "steps": torch.tensor([9])} for _ in range(2)]
    return StartingModels(base, experts, dare_density=density, seed=5)


def test_swarm_is_base_experts_and_dare_copies_2n_plus_1():
    m = models()
    assert m.count == 5
    assert m.labels() == ["base", "expert1", "expert2", "dare(expert1)", "dare(expert2)"]
    assert torch.equal(m.component(0, "w"), m.base["w"])
    assert torch.equal(m.component(2, "w"), m.experts[1]["w"])


def test_dare_copy_keeps_density_of_the_delta_rescaled_by_1_over_1_minus_p():
    m = models(density=0.2)
    delta = m.experts[0]["w"] - m.base["w"]
    copy_delta = m.component(3, "w") - m.base["w"]
    kept = copy_delta != 0
    assert 0.17 < kept.float().mean().item() < 0.23  # drop rate 0.8
    assert torch.allclose(copy_delta[kept], delta[kept] / 0.2, atol=1e-5)  # the paper's 1/(1-p) rescale
    # unbiased: the mean of the DARE delta is close to the mean of the delta
    assert abs(copy_delta.mean().item() - delta.mean().item()) < 0.06


def test_dare_copy_is_redrawn_identically_and_depends_on_seed_expert_and_tensor():
    m = models()
    assert torch.equal(m.component(3, "w"), m.component(3, "w"))
    assert not torch.equal(m.component(3, "w") - m.base["w"] != 0, m.component(4, "w") - m.base["w"] != 0)
    d = torch.ones(1000)
    a = dare(d, 0.5, tensor_generator(1, 1, "x"))
    assert torch.equal(a, dare(d, 0.5, tensor_generator(1, 1, "x")))
    assert not torch.equal(a, dare(d, 0.5, tensor_generator(2, 1, "x")))
    assert not torch.equal(a, dare(d, 0.5, tensor_generator(1, 1, "y")))
    assert torch.equal(dare(d, 1.0, tensor_generator(1, 1, "x")), d)


def test_materialize_is_the_linear_combination_and_leaves_integer_buffers_alone():
    m = models()
    c = torch.tensor([0.5, 0.25, 0.25, 0.0, 0.0], dtype=torch.float64)
    out = m.materialize(c)
    expect = 0.5 * m.base["w"] + 0.25 * m.experts[0]["w"] + 0.25 * m.experts[1]["w"]
    assert torch.allclose(out["w"], expect, atol=1e-6)
    assert torch.equal(out["steps"], m.base["steps"])
    assert torch.allclose(m.unflatten(m.flat_combination(c))["w"], expect, atol=1e-6)


def test_formulation_auto_is_coefficients_only_when_exact():
    assert choose_formulation("auto", "particle") == "coefficients"
    assert choose_formulation("auto", "element") == "weights"
    assert choose_formulation("weights", "particle") == "weights"


@pytest.mark.parametrize("density", [0.1, 0.5])
def test_dare_density_is_a_setting(density):
    kept = (models(density).component(3, "w") - models(density).base["w"] != 0).float().mean().item()
    assert abs(kept - density) < 0.03
