"""The run folder ``OUT``: whose it is, and who is writing into it right now.

Two rules protect what the user already has (docs/training.md, "The run folder"):

* ``OUT`` is used only if it is absent, empty, or carries the ``.bayling-run`` marker this trainer wrote
  there when it created the run. A typo such as ``out=runs`` or ``out=.`` must never mix checkpoints into
  (and prune inside) a folder of other things.
* One trainer at a time: rank 0 holds an exclusive ``flock`` on ``OUT/.bayling-run.lock`` (which also
  records its pid and host) for the whole run. The kernel drops the lock when the process dies, kill -9
  included, so a stale lock never blocks a rerun, while a live one (a second launch, or workers orphaned by
  a killed launcher) refuses the new run instead of letting two trainers write the same checkpoints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from bayling.errors import ConfigError

MARKER = ".bayling-run"
LOCK = ".bayling-run.lock"
TOOL = "bayling-train"


def check_out_dir(out: str | Path) -> Path:
    """Refuse an ``OUT`` that is a file, lies under a file, or is someone else's non-empty folder."""
    path = Path(out).expanduser()
    absolute = path.resolve()
    probe = absolute
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        where = "is a regular file" if probe == absolute else f"is under a regular file ({probe})"
        raise ConfigError(f"the run folder {where}", path=path, field="out")
    if absolute == Path.cwd().resolve() or absolute == Path(absolute.anchor):
        if not (absolute / MARKER).is_file():
            raise ConfigError("refusing to use the current folder (or /) as the run folder; give a new "
                              "folder, e.g. out=runs/train/NAME", path=path, field="out")
    if absolute.is_dir() and any(absolute.iterdir()) and not is_run_dir(absolute):
        raise ConfigError(f"folder exists, is not empty and is not a bayling-train run (no {MARKER} marker); "
                          "choose a new out= folder so nothing in it is overwritten", path=path, field="out")
    return path


def is_run_dir(path: Path) -> bool:
    marker = path / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("tool") == TOOL
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def claim(out: Path) -> None:
    """Create ``OUT`` (if needed) and write the marker that makes it this trainer's folder."""
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        (out / MARKER).write_text(json.dumps({"tool": TOOL, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime())}) + "\n")


def owner(out: Path) -> str | None:
    """``"pid P on HOST"`` of the live trainer holding ``OUT``'s lock, or None when it is free."""
    lock = Path(out) / LOCK
    if not lock.is_file():
        return None
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                info = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                info = {}
            return f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


class RunLock:
    """Held by rank 0 for the whole run; released by the kernel however the process ends."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK
        self.fh = None

    def acquire(self) -> None:
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            who = owner(self.path.parent) or "another process"
            raise ConfigError(f"another bayling-train ({who}) is writing this run folder; wait for it or "
                              "stop it (a killed launcher's workers count too)", path=self.path.parent,
                              field="out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        fh.flush()
        self.fh = fh
