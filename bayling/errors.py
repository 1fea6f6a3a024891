"""Errors a user can cause, carrying where they happened.

Every stage raises :class:`BaylingError` (or a subclass) for bad input; the CLI layer turns it into a
one-line message and exit code 2. Programming errors stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

import json
from pathlib import Path


class BaylingError(Exception):
    """A problem with the user's input, reported as ``file:line: field: message``."""

    exit_code = 2
    # True when every rank of a distributed run raises the same error: only rank 0 prints it.
    all_ranks = False

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field

    def location(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(self.path if self.line is None else f"{self.path}:{self.line}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        msg = " ".join(self.message.split("\n"))
        return f"{where}: {msg}" if where else msg


class ConfigError(BaylingError):
    """Unknown key, wrong type or missing value in a config/recipe file or override."""


class DataError(BaylingError):
    """Malformed input data: bad JSON, missing field, misaligned parallel files, bad UTF-8."""


class OfflineError(BaylingError):
    """A hub id was given but the hub cannot be reached."""


def read_json(path: str | Path, what: str = "JSON file", error: type[BaylingError] = DataError) -> object:
    """A whole JSON file, or ``error`` naming the file and line: every stage reads its inputs' JSON this way."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise error(f"{what} is not valid JSON: {err.msg}", path=path, line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise error(f"{what} is not UTF-8: {err.reason}", path=path) from None
