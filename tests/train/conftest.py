"""Fixtures for the trainer's data side: a real-text data dir and its token cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import make_data_dir


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("train_data") / "data")


@pytest.fixture(scope="session")
def token_cache_dir(train_data_dir, tiny_llama2, tmp_path_factory) -> Path:
    """Cache of the fixture with the tiny model's tokenizer (Llama-2 + bayling template), max length 512."""
    from bayling.train.cache import CacheSpec, prepare_cache

    root = tmp_path_factory.mktemp("token_cache")
    return prepare_cache(CacheSpec(train_data_dir, tiny_llama2, "bayling", 512, "truncate", root), show_progress=False)


@pytest.fixture(scope="session")
def cache(token_cache_dir):
    """That cache, opened (read-only arrays: one instance serves every test)."""
    from bayling.train.cache import open_cache

    return open_cache(token_cache_dir)
