"""Memory estimator: parameter counts of the real configs, model states equal DeepSpeed's own estimator."""

from __future__ import annotations

import json

import pytest

from bayling.errors import ConfigError
from bayling.train.memory import LLAMA_CONFIGS, count_params, estimate_memory, format_estimate

# Parameter counts Hugging Face reports for the released checkpoints.
PUBLISHED = {"llama2-7b": 6_738_415_616, "llama2-13b": 13_015_864_320, "llama3-8b": 8_030_261_248}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_param_counts_match_released_models(name):
    assert count_params(LLAMA_CONFIGS[name])[0] == PUBLISHED[name]


def test_param_count_of_a_real_model_dir(tiny_llama2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama2)
    est = estimate_memory(str(tiny_llama2), zero_stage=2, gpus_per_node=2)
    assert est.total_params == model.num_parameters()


@pytest.mark.parametrize("name", list(PUBLISHED))
@pytest.mark.parametrize("gpus,nodes", [(1, 1), (8, 1), (8, 4)])
def test_model_states_equal_deepspeed_estimator(name, gpus, nodes):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    for off in (False, True):
        est = estimate_memory(name, 2, gpus, nodes, offload_optimizer=off)
        _, ds_gpu = estimate_zero2_model_states_mem_needs(est.total_params, gpus, nodes, cpu_offload=off)
        assert est.model_states == ds_gpu
    for off_opt, off_par in ((False, False), (True, False), (True, True)):
        est = estimate_memory(name, 3, gpus, nodes, offload_optimizer=off_opt, offload_params=off_par)
        _, ds_gpu, _ = estimate_zero3_model_states_mem_needs(
            est.total_params, est.largest_layer_params, gpus, nodes, cpu_offload=off_opt, cpu_offload_params=off_par
        )
        assert est.model_states == ds_gpu


# Per-GPU model-state bytes on one node of 8 GPUs (bf16 + AdamW), DeepSpeed 0.19's estimators: golden values,
# so a change in either our parameter counts or in how the estimate is assembled shows up as a number.
GOLDEN_8_GPUS = {  # (ZeRO stage, offload optimizer+params) -> bytes, per model
    "llama2-7b": {(2, False): 28_638_266_368, (3, False): 15_685_723_136, (3, True): 524_288_000},
    "llama3-8b": {(2, False): 34_128_610_304, (3, False): 20_169_434_112, (3, True): 2_101_346_304},
    "llama2-13b": {(2, False): 55_317_423_360, (3, False): 29_941_054_720, (3, True): 655_360_000},
}


@pytest.mark.parametrize("name", list(GOLDEN_8_GPUS))
def test_model_states_golden_values_and_rows(name):
    P = PUBLISHED[name]
    for (stage, off), expected in GOLDEN_8_GPUS[name].items():
        est = estimate_memory(name, stage, 8, offload_optimizer=off, offload_params=off)
        assert est.model_states == expected, (stage, off)
        if not off:  # the rows split DeepSpeed's total as the docstring's table says
            assert est.optimizer == 12 * P // 8
            assert est.grads == (int(6 * P / 8) if stage == 2 else int(4 * P / 8))
    assert estimate_memory(name, 3, 8, offload_optimizer=True, offload_params=True).cpu_per_node == int(P * 18 * 1.5)


def test_deepspeed_all_cold_printout_agrees(capsys):
    """The functions the issue names print the same GPU figure (GB, 2 decimals) for a 13B model on 8 GPUs."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_cold

    est = estimate_memory("llama2-13b", 3, 8)
    estimate_zero3_model_states_mem_needs_all_cold(est.total_params, est.largest_layer_params, 8, 1)
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if "offload_param=none, offload_optimizer=none, zero_init=1" in ln][0]
    assert f"{est.model_states / 2**30:.2f}GB" in line


def test_activations_and_table():
    base = estimate_memory("llama3-8b", 3, 8, seq_len=4096, grad_checkpointing=False)
    ckpt = estimate_memory("llama3-8b", 3, 8, seq_len=4096, grad_checkpointing=True)
    assert ckpt.activations < base.activations / 3  # fp32 logits (128k vocab) stay either way
    assert estimate_memory("llama3-8b", 3, 8, seq_len=8192).activations > 1.9 * ckpt.activations
    table = format_estimate(ckpt)
    assert "ZeRO-3" in table and "TOTAL per GPU" in table and "llama3-8b" in table
    # 13B on 8 x 80 GB under ZeRO-3: the states fit comfortably; ZeRO-0 does not fit at all
    assert estimate_memory("llama2-13b", 3, 8).total < 40 * 2**30
    assert estimate_memory("llama2-13b", 0, 8).model_states > 80 * 2**30


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown model"):
        estimate_memory("llama9-70b")
    with pytest.raises(ConfigError, match="ZeRO-3"):
        estimate_memory("llama2-7b", 2, offload_params=True)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ConfigError, match="not a Llama-style config"):
        estimate_memory(str(tmp_path))


@pytest.mark.parametrize("recipe,expect", [("llama2_7b", "llama2-7b (6.74B params), ZeRO-2"),
                                           ("llama2_13b", "llama2-13b (13.02B params), ZeRO-3"),
                                           ("llama3_8b", "micro-batch 2 x 4096 tokens")])
def test_estimate_memory_reads_the_config(recipe, expect):
    """`--estimate-memory --config` takes model, ZeRO stage, micro batch and length from the run's config."""
    from hostile import run_cli

    from bayling.paths import REPO_ROOT

    proc = run_cli("bayling-train", ["--estimate-memory", "--config",
                                     str(REPO_ROOT / "data/recipes/train" / f"{recipe}.yaml")], cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout.splitlines()[0]
