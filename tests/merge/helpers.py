"""Helpers shared by the bayling-merge tests (fixtures are in conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def merge_cmd(models: dict[str, Path], dev: Path, out: Path, *extra: str) -> list[str]:
    return ["--base", str(models["base"]), "--experts", str(models["e1"]), str(models["e2"]),
            "--fitness", f"flores:{dev}", "--langs", "deu", "--directions", "x-en,en-x", "--out", str(out),
            "--max-new-tokens", "6", "--batch-size", "4", "--no-progress", *extra]


def run_merge_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """bayling-merge in a fresh process, as a user runs it."""
    from tests.hostile import cli_env

    return subprocess.run([sys.executable, "-m", "bayling.cli.merge", *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
