"""Which AdamW a run gets, per device (issue 14.7): nothing may need a compiler on a GPU node by default.

The choice is made in the DeepSpeed config (``optimizer.params``); these tests feed that config to
DeepSpeed's own ``get_optimizer_configuration`` (the code ``deepspeed.initialize`` runs) and build the
optimizer it returns, so they check what DeepSpeed will instantiate, without a GPU.
"""

from __future__ import annotations

import json

import pytest
import torch
from deepspeed.runtime.engine import DeepSpeedEngine

from bayling.config import load_config
from bayling.errors import ConfigError
from bayling.train.config import TrainConfig
from bayling.train.engine import REPO_ROOT, build_ds_config, optimizer_class_name


def ds_builds(ds: dict) -> torch.optim.Optimizer:
    """The optimizer DeepSpeed's engine constructs from ``ds`` (torch_adam path; one CPU parameter)."""
    params = dict(ds["optimizer"]["params"])
    cls, extra = DeepSpeedEngine.get_optimizer_configuration(object(), params, True)
    weight = torch.nn.Parameter(torch.ones(4))
    weight.grad = torch.full((4,), 0.5)
    opt = cls([weight], **params, **extra)
    opt.step()  # the fused kernel exists for CPU tensors too, so this runs here
    return opt


@pytest.mark.parametrize("zero", ["0", "2", "3", "3-offload"])
def test_default_is_torch_fused_adamw_on_gpu_and_cpu(zero):
    cfg = load_config(TrainConfig, None, [f"zero={zero}", "dtype=bf16"])
    gpu = build_ds_config(cfg, world_size=8, hidden_size=4096, grad_accum=1, cpu=False)
    assert gpu["optimizer"]["params"]["torch_adam"] is True and gpu["optimizer"]["params"]["fused"] is True
    assert optimizer_class_name(gpu, cpu=False) == "torch.optim.AdamW(fused=True)"
    opt = ds_builds(gpu)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is True

    cpu = build_ds_config(cfg, world_size=2, hidden_size=64, grad_accum=1, cpu=True)
    assert cpu["optimizer"]["params"]["fused"] is True  # torch's vectorised CPU kernel: 4.6x the foreach one
    assert "offload_optimizer" not in cpu["zero_optimization"]
    assert optimizer_class_name(cpu, cpu=True) == "torch.optim.AdamW(fused=True)"
    opt = ds_builds(cpu)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"] is True


def test_the_fused_update_equals_the_reference_adamw():
    """Same numbers as the unfused AdamW (so switching implementation does not change training)."""
    torch.manual_seed(0)
    init, grads = torch.randn(64), [torch.randn(64) for _ in range(3)]
    out = []
    for fused in (False, True):
        w = torch.nn.Parameter(init.clone())
        opt = torch.optim.AdamW([w], lr=1e-2, weight_decay=0.1, fused=fused)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        out.append(w.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-6, atol=1e-7)


def _user_json(tmp_path, **params) -> str:
    base = json.loads((REPO_ROOT / "deepspeed_configs" / "zero2.json").read_text())
    base["optimizer"]["params"].update(params)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(base))
    return str(path)


def test_deepspeed_fused_adam_without_nvcc_fails_before_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no_cuda"))
    cfg = load_config(TrainConfig, None, [f"deepspeed_config={_user_json(tmp_path, torch_adam=False)}"])
    with pytest.raises(ConfigError) as err:
        build_ds_config(cfg, world_size=8, hidden_size=4096, grad_accum=1, cpu=False)
    assert err.value.field == "optimizer.params.torch_adam" and "nvcc" in str(err.value)

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "nvcc").chmod(0o755)
    ds = build_ds_config(cfg, world_size=8, hidden_size=4096, grad_accum=1, cpu=False)
    assert optimizer_class_name(ds, cpu=False) == "deepspeed.ops.adam.FusedAdam"


def test_a_choice_written_in_the_json_is_kept(tmp_path):
    cfg = load_config(TrainConfig, None, [f"deepspeed_config={_user_json(tmp_path, fused=False)}"])
    ds = build_ds_config(cfg, world_size=8, hidden_size=4096, grad_accum=1, cpu=False)
    assert ds["optimizer"]["params"]["fused"] is False
    assert optimizer_class_name(ds, cpu=False) == "torch.optim.AdamW"
