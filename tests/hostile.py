"""Shared checks for the hostile-input suites of the three commands (tests/*/test_hostile_*.py).

Every case a user can cause must end in exactly one ``PROG: error: ...`` line on stderr and exit 2 (or, where
the command counts rejects, exit 0 with the count), never a traceback, and must leave every file the user
owned exactly as it was. ``snapshot`` + ``assert_untouched`` check the last part byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = {"bayling-build-data": "bayling.cli.build_data", "bayling-train": "bayling.cli.train",
           "bayling-eval": "bayling.cli.evaluate"}


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.update(extra)
    return env


def run_cli(prog: str, args: list[str], *, cwd: Path | str = REPO, timeout: float = 300,
            env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one of the three commands the way a user does (a fresh process), capturing its output."""
    return subprocess.run([sys.executable, "-m", MODULES[prog], *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def error_lines(prog: str, stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]


def assert_one_line_error(proc: subprocess.CompletedProcess, prog: str, *needles: str) -> str:
    """Exit 2, no traceback, exactly one error line, containing every needle (case-insensitive)."""
    tail = proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, tail
    assert proc.returncode == 2, f"exit {proc.returncode}: {tail}"
    errors = error_lines(prog, proc.stderr)
    assert len(errors) == 1, tail
    for needle in needles:
        assert needle.lower() in errors[0].lower(), errors[0]
    return errors[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file (and the set of folders) under the roots: what 'untouched' is compared against."""
    state: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            state[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        if not root.exists():
            state[str(root)] = "<absent>"
            continue
        for path in sorted(root.rglob("*")):
            state[str(path)] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_untouched(before: dict[str, str], *roots: Path) -> None:
    after = snapshot(*roots)
    changed = sorted(set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})
    assert not changed, f"user files changed: {changed[:10]}"
