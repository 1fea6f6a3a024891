"""OUT/final is a usable HF model: loads with from_pretrained and in lm-eval, holds the TRAINED weights
(also under ZeRO-3, where each rank holds only a shard), and carries template and stop tokens."""

from __future__ import annotations

import json
import math

import pytest
import torch
import train_harness as th

pytestmark = pytest.mark.slow  # DeepSpeed/torchrun launches


@pytest.fixture(scope="module", params=["zero2", "zero3"])
def run(request, tmp_path_factory, tiny_llama2):
    base = tmp_path_factory.getbasetemp()
    return th.zero2_reference(base, tiny_llama2) if request.param == "zero2" else th.zero3_run(base, tiny_llama2)


def _trained_fp32(run) -> dict:
    """Consolidate the last DeepSpeed checkpoint with DeepSpeed's own zero_to_fp32 (independent path)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    root = run / "checkpoints"
    return get_fp32_state_dict_from_zero_checkpoint(str(root), tag=(root / "latest").read_text().strip())


def test_export_loads_and_equals_trained_weights(run, tiny_llama2):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "final")
    exported = model.state_dict()
    trained = _trained_fp32(run)
    initial = load_file(str(tiny_llama2 / "model.safetensors"))
    assert set(trained) <= set(exported)
    for name, w in trained.items():
        assert exported[name].shape == initial[name].shape, name  # not empty / not a shard
        assert exported[name].dtype == torch.bfloat16
        torch.testing.assert_close(exported[name], w.to(torch.bfloat16), rtol=0, atol=0, msg=name)
    assert not torch.equal(exported["lm_head.weight"], initial["lm_head.weight"].to(torch.bfloat16))


def test_tokenizer_template_and_stop_tokens(run):
    from transformers import AutoTokenizer

    from bayling.templates import get_template, stop_token_ids

    tok = AutoTokenizer.from_pretrained(run / "final")
    tpl = get_template("bayling")
    msgs = [{"role": "user", "content": "Translate to German: good morning"}, {"role": "assistant", "content": "Guten Morgen"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == tpl.render(msgs, bos_token=tok.bos_token or "", eos_token=tok.eos_token or "").text
    gen = json.loads((run / "final" / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert eos == stop_token_ids(tok, tpl)
    assert gen["pad_token_id"] == tok.pad_token_id and tok.pad_token_id not in eos


def test_loads_in_lm_eval_harness(run):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(run / "final"), device="cpu", batch_size=1)
    req = Instance(request_type="loglikelihood", doc={}, arguments=("The capital of France is", " Paris"), idx=0)
    (logprob, _greedy), = lm.loglikelihood([req])
    assert math.isfinite(logprob) and logprob < 0


def test_final_carries_what_defines_it(run):
    """final/bayling.json (contract 2): template, max length, base model, hashes; the tokenizer's
    model_max_length is the training max length."""
    import hashlib

    from transformers import AutoTokenizer

    meta = json.loads((run / "final" / "bayling.json").read_text())
    assert set(meta) == {"format", "template", "max_length", "base_model", "data_manifest_sha256", "cache_key",
                         "config_sha256", "bayling_version"}
    assert meta["format"] == 1 and meta["template"] == "bayling" and meta["max_length"] == 128
    assert meta["data_manifest_sha256"] is None  # the fixture data folder has no manifest.json
    assert len(meta["cache_key"]) == 64
    assert meta["config_sha256"] == hashlib.sha256((run / "train_config.yaml").read_bytes()).hexdigest()
    assert AutoTokenizer.from_pretrained(run / "final").model_max_length == 128
