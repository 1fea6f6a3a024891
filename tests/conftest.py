"""Shared fixtures: offline environment, the real Llama tokenizers, tiny random-init Llama checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """Nothing may reach a hub; caches live in temporary folders."""
    base = tmp_path_factory.mktemp("env")
    saved = dict(os.environ)
    os.environ.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(base / "hf"),
        SACREBLEU=str(base / "sacrebleu"),
        TOKENIZERS_PARALLELISM="false",
        MPLBACKEND="Agg",
    )
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def llama2_tokenizer_dir() -> Path:
    return REPO / "data" / "tokenizers" / "llama2"


@pytest.fixture(scope="session")
def llama3_tokenizer_dir() -> Path:
    return REPO / "data" / "tokenizers" / "llama3"


@pytest.fixture(scope="session")
def tiny_llama2(tmp_path_factory, offline_env) -> Path:
    """Random-init 2-layer Llama with the real Llama-2 tokenizer and the ``bayling`` template."""
    from bayling.models import build_tiny_llama

    return build_tiny_llama(str(REPO / "data/tokenizers/llama2"), tmp_path_factory.mktemp("tiny_llama2"))


@pytest.fixture(scope="session")
def tiny_llama3(tmp_path_factory, offline_env) -> Path:
    """Random-init 2-layer Llama with the real Llama-3 tokenizer and the ``bayling3`` template."""
    from bayling.models import build_tiny_llama

    return build_tiny_llama(
        str(REPO / "data/tokenizers/llama3"), tmp_path_factory.mktemp("tiny_llama3"), template="bayling3"
    )
