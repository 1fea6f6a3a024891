"""``zero: 0`` (deepspeed_configs/zero0.json): DeepSpeed's plain data parallelism, the fastest stage on CPU
(BENCHMARKS.md, Trainer (b)). It must train exactly like ZeRO-2 (same losses and gradient norms on the same
plan), log a gradient norm although its engine keeps none, and resume exactly (fp32, CPU, 2 processes)."""

from __future__ import annotations

import json

import pytest
import train_harness as th

from bayling.paths import REPO_ROOT
from bayling.train.config import TrainConfig
from bayling.train.engine import auto_values, fill_auto

ZERO0_EXTRA = [*th.ZERO2_EXTRA, "zero=0", "keep_last=3"]


def test_zero0_config_is_plain_data_parallel_with_every_auto_filled():
    from bayling.config import load_config

    cfg = load_config(TrainConfig, None, ["zero=0", "micro_batch=2", "grad_accum=4", "dtype=fp32"])
    template = json.loads((REPO_ROOT / "deepspeed_configs" / "zero0.json").read_text())
    ds = fill_auto(template, auto_values(cfg, world_size=2, hidden_size=64))
    assert ds["zero_optimization"] == {"stage": 0} and "auto" not in json.dumps(ds)
    assert ds["train_batch_size"] == 2 * 4 * 2 and ds["gradient_clipping"] == cfg.optim.grad_clip


@pytest.fixture(scope="module")
def zero0(tmp_path_factory, tiny_llama2):
    base = tmp_path_factory.getbasetemp()
    ref = th.zero2_reference(base, tiny_llama2)  # also builds the shared token cache
    return ref, th.cached_run(base, "zero0", 2, tiny_llama2, ZERO0_EXTRA)


@pytest.mark.slow
def test_zero0_trains_like_zero2_and_logs_the_gradient_norm(zero0):
    ref, run = zero0
    ds = json.loads((run / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 0
    want = {r["step"]: r for r in th.metrics(ref) if "loss" in r}
    got = {r["step"]: r for r in th.metrics(run) if "loss" in r}
    assert sorted(got) == sorted(want) == list(range(1, th.REFERENCE_STEPS + 1))
    for step, r in want.items():  # same plan, same update; only the reduction order differs (fp32)
        assert got[step]["loss"] == pytest.approx(r["loss"], rel=1e-5), step
        assert got[step]["grad_norm"] == pytest.approx(r["grad_norm"], rel=1e-4), step


@pytest.mark.slow
def test_zero0_resumes_exactly(zero0, tmp_path, tiny_llama2, tmp_path_factory):
    _, run = zero0
    start = run / "checkpoints" / "step-000003"
    out = tmp_path / "resumed"
    cache = tmp_path_factory.getbasetemp() / "train_runs" / "token_cache"
    proc = th.run(2, [*th.train_args(out, tiny_llama2, cache, ZERO0_EXTRA), "--resume", str(start)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, got = th.step_losses(run), th.step_losses(out)
    assert sorted(got) == list(range(4, th.REFERENCE_STEPS + 1))
    for step in got:
        assert got[step] == pytest.approx(want[step], abs=1e-6), step
