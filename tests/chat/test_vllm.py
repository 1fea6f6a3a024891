"""The ``vllm serve`` command generated for a checkpoint: every argument derived from the checkpoint's files.

vLLM is not installed on CPU machines, so these tests pin the mapping and check that what vLLM will do with
each value (read generation_config's eos ids; load a ``--chat-template`` string either literally, as newer
vLLM does, or through ``unicode_escape``, as older vLLM does) reproduces the training format."""

from __future__ import annotations

import codecs
import json
import shlex
import shutil

import pytest
from conftest import run_prog, write_meta

from bayling.chat.vllm import vllm_command
from bayling.errors import ConfigError
from bayling.templates import TEMPLATES, get_template
from bayling.tokenizer import load_tokenizer

CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Translate: chat"}]


def test_exported_checkpoint_maps_to_name_address_context_and_generation_config(final_dir):
    cmd = vllm_command(str(final_dir), served_name="bayling", host="0.0.0.0", port=8000)
    assert cmd.argv == ["vllm", "serve", str(final_dir), "--served-model-name", "bayling", "--host", "0.0.0.0",
                        "--port", "8000", "--generation-config", "auto", "--max-model-len", "256"]
    assert cmd.notes == []  # generation_config.json already lists </s>, the template's only stop
    assert json.loads((final_dir / "generation_config.json").read_text())["eos_token_id"] == [2]


def test_options_map_to_vllm_flags(final_dir):
    cmd = vllm_command(str(final_dir), served_name="m", host="127.0.0.1", port=9000, max_context=128,
                       dtype="bfloat16", tensor_parallel_size=8)
    assert cmd.argv[cmd.argv.index("--max-model-len") + 1] == "128"
    assert cmd.argv[cmd.argv.index("--dtype") + 1] == "bfloat16"
    assert cmd.argv[cmd.argv.index("--tensor-parallel-size") + 1] == "8"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_override_is_a_string_that_renders_the_training_format_either_way_vllm_loads_it(final_dir, name):
    cmd = vllm_command(str(final_dir), served_name="m", host="h", port=1, template=name)
    text = cmd.argv[cmd.argv.index("--chat-template") + 1]
    assert text == TEMPLATES[name].chat_template and "\n" not in text and "{" in text
    tok = load_tokenizer(str(final_dir))
    expected = get_template(name).render(CONVERSATION, bos_token=tok.bos_token, eos_token=tok.eos_token,
                                         add_generation_prompt=True).text
    for loaded in (text, codecs.decode(text, "unicode_escape")):
        assert tok.apply_chat_template(CONVERSATION, chat_template=loaded, tokenize=False,
                                       add_generation_prompt=True) == expected
    assert shlex.split(cmd.shell()) == cmd.argv  # the printed line is the argv, quoting included


def test_stop_ids_missing_from_generation_config_become_a_client_note(tiny_llama3, tmp_path):
    folder = tmp_path / "final"
    shutil.copytree(tiny_llama3, folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [128009, 128001]
    gen["eos_token_id"] = 128001  # as in a base Llama-3 checkpoint: <|end_of_text|> only
    (folder / "generation_config.json").write_text(json.dumps(gen))
    write_meta(folder, template="bayling3", max_length=4096)
    cmd = vllm_command(str(folder), served_name="m", host="h", port=1)
    assert cmd.notes == ["generation_config.json lacks the template's end-of-turn ids [128009]: clients must "
                         "send them, e.g. extra_body={\"stop_token_ids\": [128009]}"]


def test_a_checkpoint_without_chat_template_needs_template(final_dir, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(final_dir, folder)
    (folder / "bayling.json").unlink()
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="no chat template; choose one with --template"):
        vllm_command(str(folder), served_name="m", host="h", port=1)
    assert "--chat-template" in vllm_command(str(folder), served_name="m", host="h", port=1, template="bayling").argv


@pytest.mark.slow  # a fresh process that loads the tokenizer (transformers import: ~20 s on a busy CPU)
def test_serve_prints_the_command_and_names_the_model_as_given(final_dir):
    proc = run_prog("bayling-serve", ["--model", str(final_dir), "--print-vllm-command", "--port", "8001"])
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout)
    assert argv[:3] == ["vllm", "serve", str(final_dir)]
    assert argv[argv.index("--served-model-name") + 1] == str(final_dir)  # vLLM's default name, same here
    assert argv[argv.index("--port") + 1] == "8001" and argv[argv.index("--host") + 1] == "127.0.0.1"
