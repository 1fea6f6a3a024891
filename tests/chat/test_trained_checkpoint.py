"""Both commands on a checkpoint really exported by bayling-train (the cached 2-process ZeRO-2 test run)."""

from __future__ import annotations

import json
import shlex

import pytest
from conftest import run_prog
from script_loader import load_script

from bayling.chat.model import ChatModel, Sampling
from bayling.templates import get_template, stop_token_ids

pytestmark = pytest.mark.slow  # trains (or reuses) the tests' reference run: torchrun, 2 processes


def _harness():
    """tests/train/train_harness.py, loaded by path (tests/chat does not put tests/train on sys.path)."""
    return load_script("tests/train/train_harness.py", "train_harness")


@pytest.fixture(scope="module")
def trained_final(tiny_llama2, tmp_path_factory):
    return _harness().zero2_reference(tmp_path_factory.getbasetemp(), tiny_llama2) / "final"


def test_chat_model_reads_what_the_export_wrote(trained_final):
    chat = ChatModel(str(trained_final))
    meta_file = trained_final / "bayling.json"
    if meta_file.is_file():  # contracts item 2: template and max_length from the export
        meta = json.loads(meta_file.read_text())
        assert (chat.template_name, chat.template_source) == (meta["template"], "bayling.json")
        assert chat.context == meta["max_length"]
    name = chat.template_name if chat.template_name != "tokenizer" else "bayling"
    assert set(stop_token_ids(chat.tokenizer, get_template(name))) <= set(chat.stop_ids)
    gen = chat.generate([{"role": "user", "content": "Hello"}], Sampling(temperature=0, max_new_tokens=6))
    assert "".join(gen) == gen.text and gen.completion_tokens >= 1


def test_chat_once_and_the_vllm_command_work_on_the_export(trained_final):
    once = run_prog("bayling-chat", ["--model", str(trained_final), "--once", "Hello", "--temperature", "0",
                                     "--max-new-tokens", "6"])
    assert once.returncode == 0 and "Traceback" not in once.stderr, once.stderr[-2000:]
    again = run_prog("bayling-chat", ["--model", str(trained_final), "--once", "Hello", "--temperature", "0",
                                      "--max-new-tokens", "6"])
    assert again.stdout == once.stdout  # greedy is reproducible
    vllm = run_prog("bayling-serve", ["--model", str(trained_final), "--print-vllm-command"])
    assert vllm.returncode == 0, vllm.stderr[-2000:]
    assert shlex.split(vllm.stdout)[:3] == ["vllm", "serve", str(trained_final)]
