"""Shared checks for the hostile-input suites of the commands (tests/*/test_*hostile*.py, tests/chat).

Every case a user can cause must end in exactly one ``PROG: error: ...`` line on stderr and exit 2 (or, where
the command counts rejects, exit 0 with the count), never a traceback, and must leave every file the user
owned exactly as it was. ``snapshot`` + ``assert_untouched`` check the last part byte for byte.

In-process by default. A fresh interpreter per case costs 1-2 s of imports (torch, transformers), and the
suites have ~230 cases, which alone blew ``make test-fast``'s 2-minute budget. :func:`run_cli` therefore calls
the command's own ``main(argv)`` in this process -- the same function the console script calls -- with its
stdout/stderr captured, ``SystemExit`` (argparse) turned into the exit code and any other exception into the
traceback text a user would have seen (so "no traceback" still fails the case). What a fresh process adds
(the console-script shim, interpreter exit, output written by child processes) is proven by the cases each
suite runs with ``fresh_process=True``; ``BAYLING_HOSTILE_SUBPROCESS=1`` runs every case in a fresh process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = {"bayling-build-data": "bayling.cli.build_data", "bayling-train": "bayling.cli.train",
           "bayling-eval": "bayling.cli.evaluate", "bayling-chat": "bayling.cli.chat",
           "bayling-serve": "bayling.cli.serve", "bayling-merge": "bayling.cli.merge"}
ALWAYS_FRESH = os.environ.get("BAYLING_HOSTILE_SUBPROCESS") == "1"
# Functions after which a command would start real work (workers, a server, torchrun): a hostile case must
# have failed before them. In-process they raise instead, so a regression fails the case rather than
# training inside (or os._exit-ing) the test process.
REAL_WORK = {"bayling-train": ("bayling.cli.train:_worker", "bayling.train.local_launch:launch_local"),
             "bayling-serve": ("bayling.chat.server:create_app",)}
_ONE_AT_A_TIME = threading.Lock()  # cwd, sys.stdout/stderr are process-wide


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.update(extra)
    return env


def run_cli(prog: str, args: list[str], *, cwd: Path | str = REPO, timeout: float = 300,
            env: dict[str, str] | None = None, stdin: str | None = None,
            fresh_process: bool = False) -> subprocess.CompletedProcess:
    """Run a command on ``args`` and capture its exit code, stdout and stderr.

    In this process (see the module docstring) unless ``fresh_process``, ``BAYLING_HOSTILE_SUBPROCESS=1``,
    or the case needs what only a new process has: its own environment (``env``) or standard input.
    """
    if fresh_process or ALWAYS_FRESH or env is not None or stdin is not None:
        return subprocess.run([sys.executable, "-m", MODULES[prog], *args], cwd=cwd, env=env or cli_env(),
                              capture_output=True, text=True, timeout=timeout, input=stdin)
    return run_in_process(prog, args, cwd=cwd)


class WouldStartRealWork(AssertionError):
    pass


def run_in_process(prog: str, args: list[str], *, cwd: Path | str = REPO) -> subprocess.CompletedProcess:
    """``main(argv)`` of the command's module, as the console script calls it, with output captured."""
    module = importlib.import_module(MODULES[prog])
    out, err = io.StringIO(), io.StringIO()
    with _ONE_AT_A_TIME, contextlib.ExitStack() as stack:
        for target in REAL_WORK.get(prog, ()):
            where, name = target.split(":")
            owner = importlib.import_module(where)
            stack.callback(setattr, owner, name, getattr(owner, name))

            def refuse(*_a, _target=target, **_k):
                raise WouldStartRealWork(f"{prog} got past its checks to {_target}() on hostile input")

            setattr(owner, name, refuse)
        stack.callback(os.chdir, os.getcwd())
        os.chdir(cwd)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            code = module.main(list(args))
        except SystemExit as exit_:  # argparse, or an explicit sys.exit
            if isinstance(exit_.code, int) or exit_.code is None:
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except Exception:  # noqa: BLE001 -- exactly what a user would see: the traceback, exit 1
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess([prog, *args], int(code or 0), out.getvalue(), err.getvalue())


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
