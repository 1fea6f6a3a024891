"""Baselines come from MergeKit: equal to MergeKit's own command, and to the published formulas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bayling.merge.baselines import mergekit_config, run_baseline
from bayling.merge.checkpoint import load_state


def baseline(models, tmp_path: Path, method: str, **kw) -> dict[str, torch.Tensor]:
    dest = run_baseline(method, models["base"], [models["e1"], models["e2"]], tmp_path / method,
                        density=kw.get("density", 0.2), lam=kw.get("lam", 1.0), dtype="float32", seed=0, device=None)
    return load_state(dest)


@pytest.fixture(scope="module")
def states(merge_models):
    return {k: load_state(v) for k, v in merge_models.items()}


def test_linear_is_the_mean_of_the_experts(merge_models, states, tmp_path):
    out = baseline(merge_models, tmp_path, "linear")
    for name, t in out.items():
        assert torch.allclose(t, (states["e1"][name] + states["e2"][name]) / 2, atol=1e-6), name


def test_task_arithmetic_adds_lambda_times_the_task_vectors(merge_models, states, tmp_path):
    out = baseline(merge_models, tmp_path, "task_arithmetic", lam=0.5)
    b = states["base"]
    for name, t in out.items():
        expect = b[name] + 0.5 * ((states["e1"][name] - b[name]) + (states["e2"][name] - b[name]))
        assert torch.allclose(t, expect, atol=1e-5), name


def ties_reference(base: torch.Tensor, experts: list[torch.Tensor], density: float) -> torch.Tensor:
    """TIES (Yadav et al. 2023) written from the paper: trim, elect sign by mass, disjoint mean."""
    trimmed = []
    for e in experts:
        d = (e - base).reshape(-1)
        k = max(1, int(density * d.numel()))
        keep = torch.zeros_like(d, dtype=torch.bool)
        keep[torch.topk(d.abs(), k).indices] = True
        trimmed.append(torch.where(keep, d, torch.zeros_like(d)))
    stack = torch.stack(trimmed)
    sign = torch.sign(stack.sum(0))
    agree = (torch.sign(stack) == sign) & (stack != 0)
    merged = (stack * agree).sum(0) / agree.sum(0).clamp_min(1)
    return base + merged.reshape(base.shape)


def test_ties_follows_the_paper(merge_models, states, tmp_path):
    out = baseline(merge_models, tmp_path, "ties", density=0.3)
    b = states["base"]
    for name, t in out.items():
        expect = ties_reference(b[name], [states["e1"][name], states["e2"][name]], 0.3)
        assert torch.allclose(t, expect, atol=1e-5), name


def test_dare_is_seeded_and_keeps_about_density_of_each_delta(merge_models, states, tmp_path):
    a = baseline(merge_models, tmp_path / "a", "dare_linear", density=0.5)
    b = baseline(merge_models, tmp_path / "b", "dare_linear", density=0.5)
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(a[name], b[name])
    changed = (a[name] != states["base"][name]).float().mean().item()
    assert 0.6 < changed < 0.9  # each of two experts keeps ~50 %: 1 - 0.5 * 0.5 = 75 % of elements move


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_equal_to_mergekits_own_command(merge_models, tmp_path, method):
    """Our adapter gives exactly what `mergekit-yaml` gives for the same configuration and seed."""
    cfg = mergekit_config(method, merge_models["base"], [merge_models["e1"], merge_models["e2"]], density=0.3,
                          lam=1.0, dtype="float32")
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    cli = Path(sys.executable).parent / "mergekit-yaml"
    subprocess.run([str(cli), str(tmp_path / "cfg.yml"), str(tmp_path / "ref"), "--random-seed", "0",
                    "--no-copy-tokenizer", "--quiet"], check=True, capture_output=True, timeout=300)
    ref = load_state(tmp_path / "ref")
    ours = baseline(merge_models, tmp_path, method, density=0.3)
    assert set(ref) == set(ours)
    for name in ref:
        assert torch.equal(ref[name], ours[name]), name


def test_baseline_folder_is_a_checkpoint_bayling_eval_can_load(merge_models, tmp_path):
    baseline(merge_models, tmp_path, "linear")
    names = {p.name for p in (tmp_path / "linear").iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "generation_config.json", "bayling.json", "merge.json"} <= names
