"""Fixtures for bayling-merge: a tiny base, experts fine-tuned from it (seeded perturbations), FLORES splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.merge.helpers import make_expert

REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "data" / "samples" / "flores_demo"


@pytest.fixture(scope="session")
def merge_models(tmp_path_factory, offline_env) -> dict[str, Path]:
    """Base (tiny random Llama, small BPE, llama2-chat template, a bayling.json as bayling-train writes) + 2 experts."""
    from bayling.models import build_tiny_llama
    from bayling.tokenizer import train_small_tokenizer

    root = tmp_path_factory.mktemp("merge_models")
    # a 600-piece BPE keeps the models ~100 kB, so the hostile cases can copy and hash them freely
    lines = [ln for stem in ("eng", "deu") for ln in (FLORES / f"{stem}.devtest").read_text("utf-8").splitlines()]
    tok = train_small_tokenizer(lines[:400], root / "tokenizer", vocab_size=600)
    base = build_tiny_llama(str(tok), root / "base", template="llama2-chat",
                            hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64)
    (base / "bayling.json").write_text(json.dumps({"format": 1, "template": "llama2-chat", "max_length": 256,
                                                   "base_model": "tiny"}) + "\n", encoding="utf-8")
    return {"base": base, "e1": make_expert(base, root / "e1", 1), "e2": make_expert(base, root / "e2", 2)}


@pytest.fixture(scope="session")
def flores_split(tmp_path_factory) -> dict[str, Path]:
    """dev = FLORES lines 100-102 as ``*.dev``; test = lines 0-2 as ``*.devtest`` (English and German)."""
    root = tmp_path_factory.mktemp("flores_split")
    dev, test = root / "dev", root / "test"
    dev.mkdir()
    test.mkdir()
    for stem in ("eng", "deu"):
        lines = (FLORES / f"{stem}.devtest").read_text(encoding="utf-8").splitlines(keepends=True)
        (dev / f"{stem}.dev").write_text("".join(lines[100:103]), encoding="utf-8")
        (test / f"{stem}.devtest").write_text("".join(lines[:3]), encoding="utf-8")
    return {"dev": dev, "test": test}
