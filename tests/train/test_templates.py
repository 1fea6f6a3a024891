"""The exported tokenizer renders and tokenises exactly what training saw (real Llama-2 / Llama-3 tokenizers).

For every template and conversation: the tokenizer saved with ``install_template`` + ``save_pretrained``
and reloaded gives, through ``apply_chat_template``, the same text and the same ids as training; the
labels are exactly the assistant turns plus their closing stop token; and each generation prompt ends
exactly where a labelled answer starts, so inference continues where training taught the model to.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayling.templates import get_template, install_template, stop_token_ids
from bayling.tokenizer import load_tokenizer
from bayling.train.tokenize import tokenize_conversation

SYSTEM_ZH = "你是一个乐于助人的翻译助手。"
CONVERSATIONS = {
    "single_en": [
        {"role": "user", "content": "Give three tips for staying healthy."},
        {"role": "assistant", "content": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."},
    ],
    "multi_zh_system": [
        {"role": "system", "content": SYSTEM_ZH},
        {"role": "user", "content": "Provide the Chinese translation for this sentence: The cat sat on the mat."},
        {"role": "assistant", "content": "猫坐在垫子上。"},
        {"role": "user", "content": "再翻译成德语。"},
        {"role": "assistant", "content": "Die Katze saß auf der Matte."},
        {"role": "user", "content": "Thanks! 谢谢"},
        {"role": "assistant", "content": "不客气。You're welcome."},
    ],
}
CASES = [("llama2", "bayling"), ("llama2", "llama2-chat"), ("llama3", "bayling3")]
CLOSING = {"bayling": "</s>", "llama2-chat": "</s>", "bayling3": "<|eot_id|>"}


@pytest.fixture(scope="module")
def base_tokenizers(llama2_tokenizer_dir, llama3_tokenizer_dir):
    return {"llama2": load_tokenizer(str(llama2_tokenizer_dir)), "llama3": load_tokenizer(str(llama3_tokenizer_dir))}


@pytest.fixture(scope="module")
def exported(base_tokenizers, tmp_path_factory):
    """(training tokenizer, tokenizer reloaded from the export) for every case."""
    from transformers import AutoTokenizer

    out = {}
    for tok_name, tpl_name in CASES:
        tok = base_tokenizers[tok_name]
        install_template(tok, get_template(tpl_name))
        d = tmp_path_factory.mktemp(f"{tok_name}-{tpl_name}")
        tok.save_pretrained(d)
        out[(tok_name, tpl_name)] = (tok, AutoTokenizer.from_pretrained(d))  # training renders in Python
    return out


def label_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


@pytest.fixture(params=[(case, conv) for conv in CONVERSATIONS for case in CASES],
                ids=lambda p: f"{'-'.join(p[0])}-{p[1]}")
def trained_on(request, exported):
    """(case, tokenizer, exported tokenizer, template, messages, the sample training tokenised) per conversation."""
    case, conv = request.param
    tok, reloaded = exported[case]
    tpl = get_template(case[1])
    msgs = CONVERSATIONS[conv]
    return case, tok, reloaded, tpl, msgs, tokenize_conversation(tok, tpl, msgs, max_length=4096)


def test_export_renders_and_tokenises_what_training_saw(trained_on):
    _, tok, reloaded, tpl, msgs, sample = trained_on
    assert reloaded.apply_chat_template(msgs, tokenize=False) == tpl.render(msgs, bos_token=tok.bos_token or "", eos_token=tok.eos_token or "").text
    ids = reloaded.apply_chat_template(msgs, tokenize=True, return_dict=False)
    assert list(ids) == sample.input_ids.tolist()
    assert reloaded.pad_token_id == tok.pad_token_id != reloaded.eos_token_id


def test_labels_are_assistant_turns_plus_closing_token(trained_on):
    case, tok, _, tpl, msgs, sample = trained_on
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    runs = label_runs(sample.trainable)
    assert len(runs) == len(answers)
    closing_id = tok.convert_tokens_to_ids(CLOSING[case[1]])
    assert closing_id in stop_token_ids(tok, tpl)
    for (a, b), answer in zip(runs, answers):
        assert sample.input_ids[b - 1] == closing_id
        text = tok.decode(sample.input_ids[a:b], skip_special_tokens=False)
        assert text.strip() == (answer.strip() + " " * (case[1] == "llama2-chat") + CLOSING[case[1]])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_generation_prompt_ends_where_the_answer_starts(exported, case):
    tok, reloaded = exported[case]
    tpl = get_template(case[1])
    msgs = CONVERSATIONS["multi_zh_system"]
    sample = tokenize_conversation(tok, tpl, msgs, max_length=4096)
    starts = [a for a, _ in label_runs(sample.trainable)]
    turn_ends = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    for start, k in zip(starts, turn_ends):
        prompt = reloaded.apply_chat_template(msgs[:k], add_generation_prompt=True, tokenize=True, return_dict=False)
        assert list(prompt) == sample.input_ids[:start].tolist()


# sha256[:16] of the rendered text, pinned when the Jinja templates became the only definition: they equal,
# text and spans, what the former Python renderers produced (checked side by side at that commit).
GOLDEN_TEXT = {
    ("bayling", "single_en", False): "c211bde42a4c0bcc", ("bayling", "multi_zh_system", False): "3f5e0d13c8dab034",
    ("llama2-chat", "single_en", False): "6a2248216ce4d5d4",
    ("llama2-chat", "multi_zh_system", False): "97bc31097477cc20",
    ("bayling3", "single_en", False): "da0ac2b967dc5ef3", ("bayling3", "single_en", True): "c17f3dfae62177d4",
    ("bayling3", "multi_zh_system", False): "a320bb5e12ed4467",
    ("bayling3", "multi_zh_system", True): "3b76316a615cbf2f",
}
SPECIALS = {"bayling": ("<s>", "</s>"), "llama2-chat": ("<s>", "</s>"), "bayling3": ("<|begin_of_text|>", "<|end_of_text|>")}


@pytest.mark.parametrize("key", sorted(GOLDEN_TEXT), ids=lambda k: "-".join(map(str, k)))
def test_rendered_text_is_pinned(key):
    import hashlib

    name, conv, gen = key
    bos, eos = SPECIALS[name]
    text = get_template(name).render(CONVERSATIONS[conv], bos_token=bos, eos_token=eos, add_generation_prompt=gen).text
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == GOLDEN_TEXT[key]


def test_every_template_marks_generation_blocks():
    """Labels come from {% generation %}: a template without it would train on nothing (or everything)."""
    from bayling.templates import TEMPLATES

    for tpl in TEMPLATES.values():
        assert "{%- generation -%}" in tpl.chat_template and "{%- endgeneration -%}" in tpl.chat_template


def test_a_late_system_message_or_unknown_role_is_refused():
    from bayling.errors import BaylingError

    tpl = get_template("bayling")
    with pytest.raises(BaylingError, match="only allowed first"):
        tpl.render([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], bos_token="", eos_token="")
    with pytest.raises(BaylingError, match="role 'tool'"):
        tpl.render([{"role": "tool", "content": "a"}], bos_token="", eos_token="")
