"""bayling-chat through a real terminal (pexpect drives a pseudo-terminal): what a user types and sees."""

from __future__ import annotations

import json
import signal
import sys

import pexpect
import pytest
from conftest import run_prog
from hostile import REPO, cli_env

from bayling.chat.terminal import COMMANDS, PROMPT

pytestmark = pytest.mark.slow  # each session loads the model in a fresh process (~20 s on a busy CPU)


def spawn(*args: str, preexec_fn=None) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "bayling.cli.chat", *args], cwd=str(REPO), env=cli_env(TERM="dumb"),
                          encoding="utf-8", timeout=180, dimensions=(40, 400), preexec_fn=preexec_fn)
    child.expect_exact(PROMPT)
    return child


def say(child: pexpect.spawn, line: str) -> str:
    """Type ``line``, wait for the next prompt, return what the terminal showed in between (minus the echo)."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    shown = child.before.replace("\r\n", "\n")
    echo, _, rest = shown.partition("\n")
    assert echo == line or len(line) > 100  # readline scrolls long lines sideways on a dumb terminal
    return rest


def test_a_conversation_with_commands(final_dir, tmp_path):
    args = ["--model", str(final_dir), "--temperature", "0", "--max-new-tokens", "8", "--system", "Be brief."]
    once = run_prog("bayling-chat", [*args, "--once", "Hello there"])
    assert once.returncode == 0, once.stderr
    piped = run_prog("bayling-chat", [*args, "--once", "-"], stdin="Hello there")
    assert piped.stdout == once.stdout and once.stdout.strip()

    child = spawn(*args, "--max-context", "45")
    assert "template bayling (bayling.json)" in child.before and "context 45 tokens (--max-context)" in child.before
    first = say(child, "Hello there")
    assert first == once.stdout  # the streamed answer is the scriptable one, character for character
    shown = say(child, "/help")
    assert [line.split()[0] for line in shown.splitlines()] == list(COMMANDS)
    assert say(child, "/system") == "[system prompt: Be brief.]\n"

    second = say(child, "Tell me more about it, with many details")  # ~60 tokens with the history: no longer fits
    assert second.startswith("[dropped the 1 oldest exchange(s) to stay within the 45-token context]\n")
    saved = tmp_path / "chat.json"
    assert say(child, f"/save {saved}") == f"[saved 1 exchange(s) to {saved}]\n"
    record = json.loads(saved.read_text(encoding="utf-8"))
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][0]["content"] == "Be brief." and record["template"] == "bayling"
    assert record["messages"][2]["content"] == second.split("\n", 1)[1].rstrip("\n")

    foreign = tmp_path / "mine.txt"
    foreign.write_text("keep me", encoding="utf-8")
    assert say(child, f"/save {foreign}").startswith("[not saved:")
    assert foreign.read_text(encoding="utf-8") == "keep me"

    assert say(child, "word " * 60).startswith("[not sent: the prompt is")  # alone too long: nothing sent
    assert say(child, "/reset") == "[history cleared]\n"
    assert say(child, "Hello there") == first  # history gone: the first answer again
    assert say(child, "/nope") == "[unknown command /nope; /help lists commands]\n"
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("parent_ignored_sigint", [False, True])
def test_ctrl_c_stops_an_answer_and_ctrl_d_quits(final_dir, parent_ignored_sigint):
    """Also when whatever started the chat ignored SIGINT (inherited across exec; a full test run does)."""
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if parent_ignored_sigint else None
    child = spawn("--model", str(final_dir), "--temperature", "0", "--max-new-tokens", "3000",
                  "--max-context", "4096", preexec_fn=ignore)
    child.sendline("Hello there")
    child.expect_exact("Hello there")
    child.expect(r"(?s)\r\n.{40}")  # the answer has started
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(PROMPT)
    assert say(child, "/system") == "[system prompt: (the template's default)]\n"  # still chatting
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
