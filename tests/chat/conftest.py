"""Fixtures for bayling-chat / bayling-serve: a checkpoint laid out like bayling-train's ``final/``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import REPO, cli_env, run_cli

MODULES = {"bayling-chat": "bayling.cli.chat", "bayling-serve": "bayling.cli.serve"}


def write_meta(folder: Path, **fields) -> Path:
    """``bayling.json`` as bayling-train's export writes it (contracts item 2), with ``fields`` replaced."""
    meta = {"format": 1, "template": "bayling", "max_length": 256, "base_model": "tiny", "data_manifest_sha256": None,
            "cache_key": None, "config_sha256": "0" * 64, "bayling_version": "0.1.0"}
    meta.update(fields)
    (folder / "bayling.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def final_dir(tiny_llama2, tmp_path_factory) -> Path:
    """tiny_llama2 (bayling template in its tokenizer) plus bayling.json: template bayling, max_length 256."""
    folder = tmp_path_factory.mktemp("run") / "final"
    shutil.copytree(tiny_llama2, folder)
    return write_meta(folder)


@pytest.fixture(scope="session")
def chat_model(final_dir):
    from bayling.chat.model import ChatModel

    return ChatModel(str(final_dir))


def run_prog(prog: str, args: list[str], *, timeout: float = 180, stdin: str | None = None,
             cwd: Path = REPO, fresh_process: bool = True) -> subprocess.CompletedProcess:
    """Run bayling-chat / bayling-serve the way a user does: a fresh process, offline (``fresh_process=False``:
    the command's ``main(argv)`` in this process, tests/hostile.py)."""
    if not fresh_process:
        return run_cli(prog, args, cwd=cwd, timeout=timeout, stdin=stdin)
    return subprocess.run([sys.executable, "-m", MODULES[prog], *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, input=stdin)
