"""Thin entry points: parse arguments, call a stage, map user errors to exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bayling.errors import BaylingError
from bayling.threads import set_wait_policy

# Before any entry point imports torch: libgomp reads OMP_WAIT_POLICY once, when it is loaded (bayling.threads).
set_wait_policy()


def run_cli(prog: str, main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main`` and turn a :class:`BaylingError` into one line on stderr and its exit code."""
    try:
        return int(main(argv) or 0)
    except BaylingError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
