"""Real 2-process DeepSpeed runs on CPU (gloo): ZeRO-2 fp32 and ZeRO-3 bf16 both train, log and checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import train_harness as th

pytestmark = pytest.mark.slow  # DeepSpeed/torchrun launches

FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "packing_efficiency", "mfu", "peak_memory_gb")


@pytest.fixture(scope="module")
def zero2(tmp_path_factory, tiny_llama2):
    return th.zero2_reference(tmp_path_factory.getbasetemp(), tiny_llama2)


@pytest.fixture(scope="module")
def zero3(tmp_path_factory, tiny_llama2):
    return th.zero3_run(tmp_path_factory.getbasetemp(), tiny_llama2)


def test_zero2_logs_every_step_with_all_metrics(zero2):
    steps = [r for r in th.metrics(zero2) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, th.REFERENCE_STEPS + 1))
    for r in steps:
        assert all(k in r for k in FIELDS), r
        assert math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 and r["grad_norm"] > 0
        assert 0.5 < r["packing_efficiency"] <= 1.0
        assert r["real_tokens"] >= r["target_tokens"] > 0
    lrs = [r["lr"] for r in steps]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs), "warm-up then cosine decay"
    assert steps[-1]["loss"] < steps[0]["loss"], "the model learns"


def test_zero2_validation_loss_is_logged(zero2):
    evals = [r for r in th.metrics(zero2) if r.get("event") == "eval"]
    assert [e["step"] for e in evals] == [0, 4, 8], "a baseline before training, then every eval_every"
    assert all(math.isfinite(e["val_loss"]) for e in evals)
    assert evals[-1]["val_loss"] < evals[0]["val_loss"], "validation loss falls"


def test_human_and_tensorboard_outputs(zero2):
    summary = (zero2 / "train_summary.md").read_text()
    assert "status: done" in summary and "val_loss" in summary
    assert list((zero2 / "tb").glob("events.out.tfevents.*"))
    ds = json.loads((zero2 / "ds_config.json").read_text())
    assert "auto" not in json.dumps(ds)
    assert ds["train_batch_size"] == 1 * 2 * 2 and ds["zero_optimization"]["stage"] == 2


def test_keep_last_complete_checkpoints(zero2):
    """save_every=3 over 8 steps saves 3, 6, 8; keep_last=2 keeps 6 and 8; latest names 8."""
    root = zero2 / "checkpoints"
    tags = sorted(d.name for d in root.iterdir() if d.name.startswith("step-"))
    assert tags == ["step-000006", "step-000008"]
    assert (root / "latest").read_text().strip() == "step-000008"
    for tag in tags:
        d = root / tag
        assert (d / "COMPLETED").is_file() and (d / "rng_rank0.pt").is_file() and (d / "rng_rank1.pt").is_file()
        state = json.loads((d / "train_state.json").read_text())
        assert state["step"] == int(tag.split("-")[1]) and state["world_size"] == 2


def test_zero3_trains_with_partitioned_weights(zero3):
    steps = [r for r in th.metrics(zero3) if "loss" in r]
    assert len(steps) == 3 and all(math.isfinite(r["loss"]) for r in steps)
    ckpt = zero3 / "checkpoints" / "step-000003"
    assert (ckpt / "zero_pp_rank_0_mp_rank_00_model_states.pt").is_file()
    assert (ckpt / "zero_pp_rank_1_mp_rank_00_model_states.pt").is_file()
    ds = json.loads((zero3 / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] is True


# The ZeRO-2 fp32 2-process reference run (train_harness: tiny_cpu.yaml + BASE_OVERRIDES + ZERO2_EXTRA), pinned:
# a change that shifts every batch the same way (packing, plan, template, schedule, loss) moves these while the
# invariance tests (resume == uninterrupted, layouts agree) still pass. Update deliberately, saying why.
GOLDEN_LOSSES = [10.373254425671636, 10.43016900407507, 10.363393942515055, 10.320269546067784,
                 10.283468732646867, 10.27095619837443, 10.23834923335484, 10.261696204710542]
GOLDEN_TARGET_TOKENS = [98, 94, 192, 173, 102, 96, 112, 178]
GOLDEN_LR = [0.0, 0.001, 0.0009504844339512095, 0.0008117449009293668, 0.0006112604669781572,
             0.00038873953302184284, 0.00018825509907063325, 4.9515566048790485e-05]


def test_first_losses_of_the_reference_run_are_pinned(zero2):
    steps = [r for r in th.metrics(zero2) if "loss" in r]
    assert [r["target_tokens"] for r in steps] == GOLDEN_TARGET_TOKENS
    assert [r["lr"] for r in steps] == pytest.approx(GOLDEN_LR, rel=1e-9)
    assert [r["loss"] for r in steps] == pytest.approx(GOLDEN_LOSSES, abs=2e-5)
