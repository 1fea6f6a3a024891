"""The vLLM backend's argument mapping, stop tokens and decoding, checked without a GPU.

vLLM itself needs a GPU; what this project adds around it is testable on CPU: which arguments reach
``vllm.LLM``/``SamplingParams``/``BeamSearchParams``, which ids stop generation, and how returned token ids
become one line of text. A stand-in ``vllm`` module (an engine that runs the same tiny HF model greedily, per
prompt) receives the calls; the vLLM backend must then give exactly the HF backend's outputs.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from bayling.errors import ConfigError
from bayling.eval.generate import HFGenerator, VLLMGenerator, check_vllm, vllm_engine_args
from bayling.eval.translate import make_prompt
from bayling.languages import get_language

REPO = Path(__file__).resolve().parents[2]
CALLS: dict[str, list] = {}


class _SamplingParams:
    def __init__(self, **kw):
        CALLS.setdefault("sampling", []).append(kw)
        self.kw = kw


class _BeamSearchParams:
    def __init__(self, **kw):
        CALLS.setdefault("beam", []).append(kw)
        self.kw = kw


class _LLM:
    """Greedy generation of the same checkpoint through transformers, one prompt at a time."""

    def __init__(self, **kw):
        from transformers import AutoModelForCausalLM

        CALLS.setdefault("llm", []).append(kw)
        self.model = AutoModelForCausalLM.from_pretrained(kw["model"]).eval()

    def _greedy(self, ids, max_tokens, stops):
        import torch

        with torch.inference_mode():
            out = self.model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False,
                                      eos_token_id=stops or None, pad_token_id=stops[0] if stops else 0)
        return out[0, len(ids):].tolist()

    def generate(self, prompts, sp, use_tqdm=True):
        outs = []
        for p in prompts:
            row = self._greedy(p["prompt_token_ids"], sp.kw["max_tokens"], sp.kw["stop_token_ids"])
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=row, text="ignored")]))
        return outs

    def beam_search(self, prompts, params):
        outs = []
        for p in prompts:  # vLLM returns prompt + continuation; stop handling is ours
            row = self._greedy(p["prompt_token_ids"], params.kw["max_tokens"], [])
            outs.append(types.SimpleNamespace(sequences=[types.SimpleNamespace(tokens=p["prompt_token_ids"] + row)]))
        return outs


@pytest.fixture()
def fake_vllm(monkeypatch):
    CALLS.clear()
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = _LLM, _SamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.BeamSearchParams = _BeamSearchParams
    mod.inputs, mod.sampling_params = inputs, sampling
    for name, m in (("vllm", mod), ("vllm.inputs", inputs), ("vllm.sampling_params", sampling)):
        monkeypatch.setitem(sys.modules, name, m)
    return CALLS


def _prompts(gen, n=4):
    lines = (REPO / "eval/flores_sample/deu.devtest").read_text(encoding="utf-8").splitlines()[:n]
    return [gen.render(make_prompt(s, get_language("eng"), "en")) for s in lines]


def test_engine_arguments_and_stop_ids_match_the_hf_backend(fake_vllm, tiny_llama2):
    vgen = VLLMGenerator(str(tiny_llama2), dtype="float32")
    hgen = HFGenerator(str(tiny_llama2))
    assert fake_vllm["llm"] == [vllm_engine_args(str(tiny_llama2), "float32")]
    assert fake_vllm["llm"][0]["model"] == fake_vllm["llm"][0]["tokenizer"] == str(tiny_llama2)
    assert sorted(vgen.stop_ids) == sorted(hgen.stop_ids)  # generation_config eos + the template's end of turn
    assert vgen.tokenizer.eos_token_id in vgen.stop_ids


@pytest.mark.slow  # ~20 s: two CPU generations of the tiny model
def test_greedy_outputs_equal_the_hf_backend_and_sampling_params_are_mapped(fake_vllm, tiny_llama2):
    vgen = VLLMGenerator(str(tiny_llama2), dtype="float32")
    hgen = HFGenerator(str(tiny_llama2))
    prompts = _prompts(hgen)
    assert vgen.render("x") == hgen.render("x")
    got = vgen.generate(prompts, beams=1, max_new_tokens=12, progress=False)
    want = hgen.generate(prompts, beams=1, batch_size=4, max_new_tokens=12, progress=False)
    assert got == want and len(set(got)) > 1
    sp = fake_vllm["sampling"][-1]
    assert sp == {"temperature": 0.0, "max_tokens": 12, "stop_token_ids": vgen.stop_ids}


def test_beam_search_maps_width_and_budget_and_cuts_at_the_first_stop_id(fake_vllm, tiny_llama2):
    vgen = VLLMGenerator(str(tiny_llama2), dtype="float32")
    prompts = _prompts(vgen, 2)
    vgen.generate(prompts, beams=5, max_new_tokens=7, progress=False)
    assert fake_vllm["beam"][-1] == {"beam_width": 5, "max_tokens": 7}
    # a continuation that runs past an end-of-turn id is cut there, as the HF backend does
    stop = vgen.stop_ids[0]
    words = vgen.tokenizer("Hallo Welt", add_special_tokens=False)["input_ids"]
    vgen.llm.beam_search = lambda toks, params: [types.SimpleNamespace(
        sequences=[types.SimpleNamespace(tokens=t["prompt_token_ids"] + words + [stop] + words)]) for t in toks]
    assert vgen.generate(prompts[:1], beams=5, max_new_tokens=7, progress=False) == ["Hallo Welt"]


def test_repetition_penalty_and_missing_vllm_are_one_line_errors(fake_vllm, tiny_llama2, monkeypatch):
    vgen = VLLMGenerator(str(tiny_llama2), dtype="float32")
    with pytest.raises(ConfigError, match="needs the hf backend"):
        vgen.generate(["x"], beams=1, repetition_penalty=1.2, progress=False)
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    with pytest.raises(ConfigError, match="needs vLLM installed"):
        check_vllm()
