"""``--workers N``: the per-record work runs in N processes and the data directory is byte for byte the same."""

from __future__ import annotations

import pytest
from buildkit import build, manifest, tree


def test_two_workers_build_the_same_bytes_as_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert build(one) == 0
    assert build(two, "--workers", "2") == 0
    assert tree(one) == tree(two)
    assert manifest(two)["train"]["records"] > 0


@pytest.mark.slow
def test_kill_minus_9_of_the_parent_leaves_no_worker_running_and_the_rerun_is_identical(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from buildkit import DEMO, SMALL

    out = tmp_path / "data"
    extra = ["parallel.flores_demo.limit=120"]
    cmd = [sys.executable, "-m", "bayling.cli.build_data", "--no-progress", "--workers", "2", "--recipe", str(DEMO),
           "--out", str(out), *SMALL, *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tmp_path / f".data.tmp-{proc.pid}" / ".work"
    deadline = time.time() + 90
    while time.time() < deadline and not any(p.stat().st_size for p in work.glob("shard-*/records.jsonl")):
        assert proc.poll() is None, "build finished before it could be interrupted"
        time.sleep(0.05)
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    assert len(children) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    alive = children
    while alive and time.time() < deadline:
        alive = [c for c in children if os.path.exists(f"/proc/{c}") and
                 open(f"/proc/{c}/stat").read().split()[2] != "Z"]
        time.sleep(0.1)
    assert not alive, f"workers still running after the parent was killed: {alive}"
    assert not out.exists()
    assert build(out, "--workers", "2", overrides=extra) == 0
    ref = tmp_path / "ref"
    assert build(ref, overrides=extra) == 0
    assert tree(out) == tree(ref)
