"""Batched generation: same greedy outputs as one prompt at a time, chat template, stop tokens, clean lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bayling.errors import ConfigError
from bayling.eval.generate import GenStats, HFGenerator, clean_output
from bayling.eval.translate import make_prompt
from bayling.languages import get_language

REPO = Path(__file__).resolve().parents[2]


def _prompts(gen: HFGenerator, n: int = 6) -> list[str]:
    lines = (REPO / "eval/flores_sample/deu.devtest").read_text(encoding="utf-8").splitlines()[:n]
    eng = get_language("eng")
    return [gen.render(make_prompt(s, eng, "en")) for s in lines]


@pytest.mark.parametrize("fixture", ["tiny_llama2", "tiny_llama3"])
def test_batched_greedy_equals_one_at_a_time(fixture, request):
    gen = HFGenerator(str(request.getfixturevalue(fixture)))
    prompts = _prompts(gen)
    batched = gen.generate(prompts, beams=1, batch_size=6, max_new_tokens=12, progress=False)
    single = [gen.generate([p], beams=1, batch_size=1, max_new_tokens=12, progress=False)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1  # a real model output per prompt, not one constant string


def test_repetition_penalty_changes_loops_keeps_batching_exact_and_spares_the_prompt(tiny_llama2):
    gen = HFGenerator(str(tiny_llama2))
    prompts = _prompts(gen)
    kw = {"beams": 1, "max_new_tokens": 40, "progress": False}
    plain = gen.generate(prompts, batch_size=6, **kw)  # a random model repeats some tokens within 40
    penalised = gen.generate(prompts, batch_size=6, repetition_penalty=1e4, **kw)
    single = [gen.generate([p], batch_size=1, repetition_penalty=1e4, **kw)[0] for p in prompts]
    assert penalised == single  # left padding is never penalised
    assert penalised != plain
    tok = gen.tokenizer
    # the first new token has nothing generated before it: only a penalty on the prompt could change it
    assert [tok(o, add_special_tokens=False)["input_ids"][:1] for o in penalised] == [
        tok(o, add_special_tokens=False)["input_ids"][:1] for o in plain]


def test_beam_search_batched_returns_one_line_per_prompt(tiny_llama2):
    gen = HFGenerator(str(tiny_llama2))
    prompts = _prompts(gen, 4)
    out = gen.generate(prompts, beams=3, batch_size=4, max_new_tokens=8, progress=False)
    assert len(out) == 4 and all("\n" not in o for o in out)


def test_prompt_is_one_user_turn_in_the_models_chat_template(tiny_llama3):
    gen = HFGenerator(str(tiny_llama3))
    text = gen.render(make_prompt("Hallo Welt", get_language("zh"), "zh"))
    assert "<|start_header_id|>user<|end_header_id|>\n\n提供这句话的中文翻译：Hallo Welt<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert 128009 in gen.stop_ids  # <|eot_id|>: the Llama-3 stop token the model must stop at


def test_generation_stops_at_the_models_stop_tokens(tiny_llama2):
    """Declare the token the model emits first as a stop token: generation ends there, nothing is kept."""
    gen = HFGenerator(str(tiny_llama2))
    prompts = _prompts(gen, 3)
    firsts = []
    for p in prompts:
        ids = gen.tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"]
        firsts.append(int(gen.model(ids).logits[0, -1].argmax()))
    gen.stop_ids = list(dict.fromkeys(firsts))
    stats = GenStats()
    out = gen.generate(prompts, beams=1, batch_size=3, max_new_tokens=10, progress=False, stats=stats)
    assert out == ["", "", ""]
    assert stats.new_tokens == 3  # one (stop) token each, not max_new_tokens


def test_model_without_chat_template_names_the_option(tiny_llama2, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_llama2, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match="--template bayling\\|bayling3\\|llama2-chat"):
        HFGenerator(str(bare))
    gen = HFGenerator(str(bare), template="llama2-chat")
    assert gen.render("hi").endswith("[INST] hi [/INST]")


def test_clean_output_makes_one_line():
    assert clean_output(" a\nb\r\nc \n") == "a b  c"


def test_template_comes_from_bayling_json_when_present(tiny_llama2, tmp_path):
    """contracts item 2: the trainer's final/bayling.json names the template; it wins over the tokenizer's own."""
    import json

    model = tmp_path / "final"
    shutil.copytree(tiny_llama2, model)
    assert "[INST]" not in HFGenerator(str(model)).render("Hallo")  # the fixture's own template: bayling
    (model / "bayling.json").write_text(json.dumps({"format": 1, "template": "llama2-chat", "max_length": 64}),
                                        encoding="utf-8")
    assert HFGenerator(str(model)).render("Hallo").endswith("[INST] Hallo [/INST]")
    assert "[INST]" not in HFGenerator(str(model), template="bayling").render("Hallo")  # --template still wins
