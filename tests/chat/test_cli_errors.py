"""Hostile input to bayling-chat / bayling-serve: one ``PROG: error: ...`` line, exit 2, user files untouched."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from conftest import run_prog
from hostile import assert_one_line_error, assert_untouched, snapshot


@pytest.fixture
def ckpt(final_dir, tmp_path):
    """A private copy of the exported checkpoint that a case may damage."""
    folder = tmp_path / "final"
    shutil.copytree(final_dir, folder)
    return folder


def _meta(folder, text: str):
    (folder / "bayling.json").write_text(text, encoding="utf-8")


def _no_template(folder):
    (folder / "bayling.json").unlink()
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


# (prog, args with {m} for the checkpoint, damage, needles of the one error line)
CASES = [
    ("bayling-chat", [], None, ["--model", "required"]),
    ("bayling-chat", ["--model", "{m}/missing"], None, ["does not exist"]),
    ("bayling-chat", ["--model", "{m}/tokenizer.json"], None, ["not a model directory (no config.json)"]),
    ("bayling-chat", ["--model", "org/not-downloaded"], None, ["offline", "hf download org/not-downloaded"]),
    ("bayling-chat", ["--model", "{m}"], lambda f: _meta(f, '{"template": "bayling",\n'), ["bayling.json:2",
                                                                                           "not valid JSON"]),
    ("bayling-chat", ["--model", "{m}"], lambda f: _meta(f, "[1, 2]"), ["bayling.json", "expected a JSON object"]),
    ("bayling-chat", ["--model", "{m}"], lambda f: _meta(f, '{"template": "vicuna"}'),
     ["bayling.json: field 'template'", "unknown template 'vicuna'"]),
    ("bayling-chat", ["--model", "{m}"], lambda f: _meta(f, '{"template": 7}'), ["field 'template'"]),
    ("bayling-chat", ["--model", "{m}", "--template", "chatml"], None, ["--template", "invalid choice"]),
    ("bayling-chat", ["--model", "{m}", "--temperature", "-1"], None, ["temperature must be in [0, 2]"]),
    ("bayling-chat", ["--model", "{m}", "--temperature", "hot"], None, ["--temperature", "invalid float"]),
    ("bayling-chat", ["--model", "{m}", "--top-p", "0"], None, ["top_p must be in (0, 1]"]),
    ("bayling-chat", ["--model", "{m}", "--top-k", "-5"], None, ["top_k must be >= 0"]),
    ("bayling-chat", ["--model", "{m}", "--max-new-tokens", "0"], None, ["max_new_tokens must be >= 1"]),
    ("bayling-chat", ["--model", "{m}", "--repetition-penalty", "0"], None, ["repetition_penalty must be > 0"]),
    ("bayling-chat", ["--model", "{m}", "--max-context", "1"], None, ["--max-context must be >= 2"]),
    ("bayling-chat", ["--model", "{m}", "--once", "  "], None, ["--once needs a non-empty prompt"]),
    ("bayling-chat", ["--model", "{m}", "--bogus"], None, ["unrecognized arguments: --bogus"]),
    ("bayling-chat", ["--model", "{m}", "--device", "tpu9", "--once", "hi"], None, ["not a torch device"]),
    ("bayling-serve", ["--model", "{m}", "--port", "70000"], None, ["--port must be in 0..65535"]),
    ("bayling-serve", ["--model", "{m}", "--port", "http"], None, ["--port", "invalid int"]),
    ("bayling-serve", ["--model", "{m}/missing"], None, ["does not exist"]),
    ("bayling-serve", ["--model", "{m}", "--print-vllm-command"], _no_template,
     ["no chat template; choose one with --template"]),
    ("bayling-serve", ["--model", "{m}", "--temperature", "9"], None, ["temperature must be in [0, 2]"]),
]


FRESH = {1, 4, 20}  # also run as real processes (tests/hostile.py: the rest run in-process)


@pytest.mark.parametrize("prog,args,damage,needles", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_and_exit_2(ckpt, prog, args, damage, needles, request):
    if damage:
        damage(ckpt)
    before = snapshot(ckpt)
    index = int(request.node.callspec.id.rsplit("-", 1)[1])
    proc = run_prog(prog, [a.replace("{m}", str(ckpt)) for a in args], fresh_process=index in FRESH)
    assert_one_line_error(proc, prog, *needles)
    assert_untouched(before, ckpt)


def test_serve_on_a_taken_port_is_one_line(ckpt):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_prog("bayling-serve", ["--model", str(ckpt), "--port", str(port)], fresh_process=False)
    assert_one_line_error(proc, "bayling-serve", f"cannot listen on 127.0.0.1:{port}: the port is in use")


def test_once_with_a_prompt_longer_than_the_context_is_one_line(ckpt):  # in-process: ~2 s
    proc = run_prog("bayling-chat", ["--model", str(ckpt), "--once", "word " * 300, "--max-new-tokens", "8"],
                    fresh_process=False)
    assert_one_line_error(proc, "bayling-chat", "the prompt is", "exceeds the model's 256-token context",
                          "bayling.json max_length")
