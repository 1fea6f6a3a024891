"""The demo's last words are a working command: what scripts/demo.py prints, run as printed, answers."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hostile import REPO, cli_env
from script_loader import load_script


def _demo():
    return load_script("scripts/demo.py", "demo_script")


@pytest.mark.slow  # runs the printed command: a fresh process that loads the model
def test_the_printed_chat_command_answers(final_dir, capsys):
    _demo().print_chat_command(final_dir, 1.2)
    lines = capsys.readouterr().out.splitlines()
    chat = shlex.split(lines[lines.index("Talk to the model you just trained:") + 1])
    assert chat[0].endswith("bayling-chat") and chat[1:] == ["--model", str(final_dir), "--temperature", "0",
                                                            "--repetition-penalty", "1.2"]
    serve = shlex.split(lines[-1])
    assert serve[0].endswith("bayling-serve") and serve[1:] == ["--model", str(final_dir)]
    proc = subprocess.run([*chat, "--once", "Hello", "--max-new-tokens", "4"], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]
