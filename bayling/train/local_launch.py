"""``bayling-train --nproc-per-node N``: start torchrun workers on this machine, after the one-process checks.

Why a module of its own: the launcher is process plumbing (parent-death signals, stderr tailing, exit-code
collection) that the CLI only calls; the training itself lives in :mod:`bayling.train.recipe`.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

from bayling.errors import ConfigError

PROG = "bayling-train"


def parent_death_signal(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the launcher's process group is the fallback
        pass


def launch_local(nproc: int, argv: list[str]) -> int:
    """Workers under torchrun, started only after the checks passed in this one process.

    - torchrun gets SIGTERM if this launcher dies, even by kill -9 (PR_SET_PDEATHSIG); torchrun then stops
      its workers, which checkpoint and exit, so a rerun never shares OUT with orphans (and the run lock
      would refuse it while they live).
    - A user error inside the workers is one line: the first ``bayling-train: error:`` line is shown,
      copies from other ranks and torchrun's failure report after it are dropped, and the exit code is the
      worker's own (2 for bad input, 3 for a non-finite loss), not torchrun's generic 1.
    """
    if nproc < 1:
        raise ConfigError(f"must be >= 1, got {nproc}", field="--nproc-per-node")
    rest, skip = [], False
    for a in argv:
        if skip or a.startswith("--nproc-per-node="):
            skip = False
            continue
        skip = a == "--nproc-per-node"
        if not skip:
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "bayling.cli.train", *rest]
    print("$ " + shlex.join(cmd), flush=True)
    with tempfile.NamedTemporaryFile(prefix="bayling-exit-", delete=False) as fh:
        status_file = fh.name
    # Workers' stderr goes to an unlinked temporary file that this process tails, not to a pipe: if the
    # launcher is killed, a pipe would break and the workers' next write (the progress bar) would kill
    # them before they could checkpoint on the SIGTERM that follows.
    log = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(cmd, stderr=log, env={**os.environ, "BAYLING_EXIT_FILE": status_file},
                                preexec_fn=lambda: parent_death_signal(signal.SIGTERM))
        seen_error = forward_stderr(proc, log)
        code = proc.wait()
        with open(status_file) as fh:
            codes = [int(x) for x in fh.read().split() if x.strip().lstrip("-").isdigit()]
    finally:
        log.close()
        os.unlink(status_file)
    if code != 0 and codes:
        return max(codes)
    return 2 if code != 0 and seen_error else code


def forward_stderr(proc: subprocess.Popen, log) -> bool:
    """Copy the workers' stderr to ours until they exit; after the first ``bayling-train: error:`` line,
    drop the rest (other ranks' copies, torchrun's failure report). Returns whether an error was seen."""
    seen_error, pending = False, b""
    with open(f"/proc/self/fd/{log.fileno()}", "rb") as reader:
        while True:
            done = proc.poll() is not None
            chunk = reader.read()
            pending += chunk or b""
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace") + "\n"
                if line.rsplit("\r", 1)[-1].startswith(f"{PROG}: error:"):
                    if not seen_error:
                        sys.stderr.write(line.rsplit("\r", 1)[-1])
                    seen_error = True
                elif not seen_error:
                    sys.stderr.write(line)
            if not seen_error and b"\r" in pending:  # progress bars redraw with \r: pass them on now
                cut = pending.rfind(b"\r") + 1
                sys.stderr.write(pending[:cut].decode("utf-8", errors="replace"))
                pending = pending[cut:]
            sys.stderr.flush()
            if done and not chunk:
                if pending and not seen_error:
                    sys.stderr.write(pending.decode("utf-8", errors="replace"))
                return seen_error
            if not chunk:
                time.sleep(0.1)
