"""ChatModel: the checkpoint's own template and stop tokens, streaming, cancelling, history within the context."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch
from conftest import write_meta

from bayling.chat.history import Conversation
from bayling.chat.model import ChatModel, ContextTooLong, Sampling
from bayling.errors import BaylingError, ConfigError
from bayling.templates import BAYLING_SYSTEM, get_template

GREEDY = Sampling(temperature=0, max_new_tokens=12)
HELLO = [{"role": "user", "content": "Hello there"}]


def test_checkpoint_settings_come_from_bayling_json(chat_model, final_dir):
    assert chat_model.template_name == "bayling" and chat_model.template_source == "bayling.json"
    assert (chat_model.context, chat_model.context_source) == (256, "bayling.json max_length")
    assert chat_model.stop_ids == [2]  # Llama-2's </s>
    expected = f"<s>{BAYLING_SYSTEM}\n\n### Instruction:\nHello there\n### Response:\n"
    assert chat_model.prompt_ids(HELLO) == _ids(chat_model, expected)
    assert len(chat_model.prompt_ids(HELLO)) == 58


def _ids(chat: ChatModel, text: str) -> list[int]:
    return chat.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_prompt_is_the_training_renderer_tokenised(chat_model):
    """What the chat sends equals what training rendered (labels came from the same text)."""
    msgs = [{"role": "system", "content": "Be brief."}, *HELLO, {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Again"}]
    tok = chat_model.tokenizer
    rendered = get_template("bayling").render(msgs, bos_token=tok.bos_token, eos_token=tok.eos_token)
    assert chat_model.prompt_ids(msgs) == tok(rendered.text, add_special_tokens=False)["input_ids"]


def test_bayling_json_template_wins_over_the_tokenizer_and_template_flag_over_both(final_dir, tmp_path):
    folder = tmp_path / "final"
    shutil.copytree(final_dir, folder)
    write_meta(folder, template="llama2-chat")
    chat = ChatModel(str(folder))
    assert chat.prompt_ids(HELLO) == _ids(chat, "<s>[INST] Hello there [/INST]")
    over = ChatModel(str(folder), template="bayling")
    assert (over.template_name, over.template_source) == ("bayling", "--template")
    assert over.prompt_ids(HELLO) == chat_ids_bayling(over)


def chat_ids_bayling(chat: ChatModel) -> list[int]:
    return _ids(chat, f"<s>{BAYLING_SYSTEM}\n\n### Instruction:\nHello there\n### Response:\n")


def test_llama3_stops_at_every_end_of_turn_token(tiny_llama3):
    chat = ChatModel(str(tiny_llama3))
    ids = chat.tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|end_of_text|>"])
    assert ids == [128009, 128001] and sorted(chat.stop_ids) == sorted(ids)
    for stop in ids:
        gen = _force_first_token(chat, stop)
        assert (gen.text, gen.finish_reason, gen.completion_tokens) == ("", "stop", 1)


def _force_first_token(chat: ChatModel, token: int):
    """Make ``token`` the greedy first answer token: its output row becomes twice the winner's row."""
    first = chat.generate(HELLO, Sampling(temperature=0, max_new_tokens=1))
    "".join(first)
    winner = chat.model.generate(torch.tensor([first.prompt]), max_new_tokens=1, do_sample=False)[0, -1].item()
    head = chat.model.get_output_embeddings().weight
    saved = head[token].detach().clone()
    with torch.no_grad():
        head[token] = 2 * head[winner]
    try:
        gen = chat.generate(HELLO, Sampling(temperature=0, max_new_tokens=8))
        "".join(gen)
    finally:
        with torch.no_grad():
            head[token] = saved
    return gen


def test_streamed_pieces_equal_the_plain_greedy_answer(chat_model):
    gen = chat_model.generate(HELLO, GREEDY)
    pieces = list(gen)
    ids = torch.tensor([gen.prompt])
    ref = chat_model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                    eos_token_id=chat_model.stop_ids)[0, ids.shape[1]:]
    assert len(pieces) > 1  # streamed, not one block
    assert "".join(pieces) == gen.text == chat_model.tokenizer.decode(ref, skip_special_tokens=True)
    assert (gen.finish_reason, gen.completion_tokens, gen.prompt_tokens) == ("length", 12, len(gen.prompt))


def test_seeded_sampling_repeats_and_differs_from_greedy(chat_model):
    hot = Sampling(temperature=1.5, top_p=1.0, max_new_tokens=12, seed=7)
    a, b = ("".join(chat_model.generate(HELLO, hot)) for _ in range(2))
    assert a == b
    assert a != "".join(chat_model.generate(HELLO, GREEDY))


def test_cancel_stops_after_the_current_token(chat_model):
    cancel = threading.Event()
    gen = chat_model.generate(HELLO, Sampling(temperature=0, max_new_tokens=200), cancel)
    for _ in gen:
        gen.stop()
    assert gen.finish_reason == "cancelled" and 1 <= gen.completion_tokens < 10


def test_fit_drops_oldest_exchanges_and_keeps_the_system_message(chat_model, monkeypatch):
    conv = Conversation(system="Be brief.")
    for i in range(3):
        conv.turns += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    msgs = conv.messages("question 3")
    keep_two = len(chat_model.prompt_ids([msgs[0], *msgs[3:]]))  # system + exchanges 1, 2 + the new question
    monkeypatch.setattr(chat_model, "context", keep_two + 10)
    kept, dropped = chat_model.fit(msgs, 10)
    assert dropped == 1 and kept == [msgs[0], *msgs[3:]]
    monkeypatch.setattr(chat_model, "context", 40)
    kept, dropped = chat_model.fit(msgs, 10)
    assert dropped == 3 and kept == [msgs[0], msgs[-1]]
    with pytest.raises(ContextTooLong, match="exceeds the model's 20-token context"):
        monkeypatch.setattr(chat_model, "context", 20)
        chat_model.fit(msgs, 10)


@pytest.mark.parametrize("field,value", [("temperature", -0.1), ("temperature", 2.5), ("top_p", 0.0),
                                         ("top_k", -1), ("max_new_tokens", 0), ("repetition_penalty", 0.0)])
def test_sampling_rejects_out_of_range_values(field, value):
    with pytest.raises(ConfigError, match=field):
        Sampling(**{field: value}).check()


def test_bad_bayling_json_names_file_line_and_field(final_dir, tmp_path):
    folder = tmp_path / "final"
    shutil.copytree(final_dir, folder)
    (folder / "bayling.json").write_text('{"format": 1,\n "template": }', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bayling.json:2: bayling.json is not valid JSON"):
        ChatModel(str(folder))
    write_meta(folder, template="alpaca")
    with pytest.raises(ConfigError, match=r"bayling.json: field 'template': unknown template 'alpaca'"):
        ChatModel(str(folder))


def test_saved_conversation_is_a_messages_record_and_never_replaces_foreign_files(tmp_path):
    from bayling.data.records import to_messages

    conv = Conversation(system="Be brief.", turns=[*HELLO, {"role": "assistant", "content": "Hi!"}])
    path = conv.save(tmp_path / "chat.json", model="m", template="bayling")
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record == {"messages": conv.messages(), "model": "m", "template": "bayling"}
    assert to_messages(record, "messages") == conv.messages()  # bayling-build-data reads it back
    conv.turns.append({"role": "user", "content": "more"})
    conv.save(tmp_path / "chat.json", model="m", template="bayling")  # its own file: replaced
    foreign = tmp_path / "notes.json"
    foreign.write_text("mine", encoding="utf-8")
    with pytest.raises(BaylingError, match="not written by this chat"):
        Conversation().save(foreign, model="m", template="bayling")
    assert foreign.read_text(encoding="utf-8") == "mine"
