"""Fixtures for bayling-merge: a tiny base, experts fine-tuned from it (seeded perturbations), FLORES splits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "data" / "samples" / "flores_demo"


def make_expert(base: Path, out: Path, seed: int, scale: float = 0.05) -> Path:
    """A checkpoint of the base architecture whose weights moved by a seeded random delta."""
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    for f in base.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy2(f, out / f.name)
    gen = torch.Generator().manual_seed(seed)
    state = load_file(str(base / "model.safetensors"))
    moved = {n: (t + scale * torch.randn(t.shape, generator=gen)).contiguous() for n, t in state.items()}
    save_file(moved, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="session")
def merge_models(tmp_path_factory, offline_env) -> dict[str, Path]:
    """Base (tiny random Llama, llama2-chat template, a bayling.json as bayling-train writes) + 2 experts."""
    from bayling.models import build_tiny_llama

    root = tmp_path_factory.mktemp("merge_models")
    base = build_tiny_llama(str(REPO / "data/tokenizers/llama2"), root / "base", template="llama2-chat",
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


def merge_cmd(models: dict[str, Path], dev: Path, out: Path, *extra: str) -> list[str]:
    return ["--base", str(models["base"]), "--experts", str(models["e1"]), str(models["e2"]),
            "--fitness", f"flores:{dev}", "--langs", "deu", "--directions", "x-en,en-x", "--out", str(out),
            "--max-new-tokens", "6", "--batch-size", "4", "--no-progress", *extra]


def run_merge_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """bayling-merge in a fresh process, as a user runs it."""
    from tests.hostile import cli_env

    return subprocess.run([sys.executable, "-m", "bayling.cli.merge", *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
