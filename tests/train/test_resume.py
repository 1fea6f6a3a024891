"""Exact resume: SIGUSR1 mid-run -> checkpoint + REQUEUE + exit 0; ``--resume auto`` then reproduces the
uninterrupted loss curve (fp32, CPU, 2 processes). Partial checkpoints are never trusted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import train_harness as th

from bayling.errors import ConfigError
from bayling.train import checkpoint as ckpt
from bayling.train import resume_guard as guard


def _children(pid: int) -> list[int]:
    """Worker processes started by torchrun (ppid == pid), read from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _logged_steps(out: Path) -> int:
    try:
        return sum(1 for r in th.metrics(out) if "loss" in r)
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, tiny_llama2):
    """Start the reference config, SIGUSR1 both workers after 2 logged steps; return (out, proc output)."""
    base = tmp_path_factory.getbasetemp()
    th.zero2_reference(base, tiny_llama2)  # builds the shared token cache first
    out = tmp_path_factory.mktemp("sig") / "run"
    args = th.train_args(out, tiny_llama2, base / "train_runs" / "token_cache", th.ZERO2_EXTRA)
    proc = th.popen(2, args)
    deadline = time.time() + 180
    while _logged_steps(out) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    for pid in _children(proc.pid):
        os.kill(pid, signal.SIGUSR1)
    text, _ = proc.communicate(timeout=180)
    return out, proc.returncode, text, args


def test_signal_saves_checkpoint_and_requeue_marker(interrupted):
    out, code, text, _ = interrupted
    assert code == 0, text[-3000:]
    marker = json.loads((out / "REQUEUE").read_text())
    assert marker["signal"] == "SIGUSR1"
    assert 2 <= marker["step"] < th.REFERENCE_STEPS, "the signal must land mid-run"
    root = out / "checkpoints"
    assert (root / "latest").read_text().strip() == ckpt.tag_for(marker["step"])
    assert ckpt.is_complete(root / ckpt.tag_for(marker["step"]))
    assert not (out / "final").exists()
    assert "rerun with --resume auto" in text


def test_resume_auto_reproduces_uninterrupted_curve(interrupted, tmp_path_factory, tiny_llama2):
    out, _, _, args = interrupted
    partial = out / "checkpoints" / "step-000099"  # a crashed save: no COMPLETED, must be ignored
    partial.mkdir()
    (partial / "mp_rank_00_model_states.pt").write_bytes(b"garbage")
    proc = th.run(2, [*args, "--resume", "auto"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout
    ref = th.step_losses(th.zero2_reference(tmp_path_factory.getbasetemp(), tiny_llama2))
    got = th.step_losses(out)
    assert sorted(got) == list(range(1, th.REFERENCE_STEPS + 1))
    for step, loss in ref.items():
        assert got[step] == pytest.approx(loss, abs=1e-6), step
    assert not (out / "REQUEUE").exists() and (out / "final" / "config.json").is_file()


def test_resume_with_another_world_size_is_a_clear_error(tmp_path_factory, tiny_llama2):
    base = tmp_path_factory.getbasetemp()
    ref = th.zero2_reference(base, tiny_llama2)
    out = tmp_path_factory.mktemp("ws") / "run"
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns(".bayling-run.lock"))
    proc = th.run(1, th.train_args(out, tiny_llama2, base / "train_runs" / "token_cache", th.ZERO2_EXTRA))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "world_size=2" in errors[0] and "nproc_per_node 2" in errors[0]
    assert "Traceback" not in proc.stderr


def _fake_ckpt(root: Path, step: int, complete: bool) -> Path:
    d = root / ckpt.tag_for(step)
    d.mkdir(parents=True)
    if complete:
        (d / ckpt.STATE_FILE).write_text(json.dumps({"step": step}))
        (d / ckpt.COMPLETED).write_text("x")
    return d


def test_find_resume_trusts_only_complete_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    good = _fake_ckpt(root, 5, True)
    _fake_ckpt(root, 10, False)
    (root / "latest").write_text("step-000010")  # latest naming a partial one (hand-edited) is not trusted
    assert ckpt.find_resume(root, "auto") == good
    assert ckpt.find_resume(root, "none") is None
    with pytest.raises(ConfigError, match="incomplete"):
        ckpt.find_resume(root, str(root / "step-000010"))
    assert ckpt.find_resume(tmp_path / "nothing", "auto") is None


def test_prune_keeps_last_k_and_drops_old_partials(tmp_path):
    root = tmp_path / "checkpoints"
    for s in (1, 2, 3, 4):
        _fake_ckpt(root, s, True)
    _fake_ckpt(root, 2_5, False)  # partial newer than all: a save in progress elsewhere, kept
    _fake_ckpt(root, 0, False)  # partial older than the newest complete: a leftover, removed
    ckpt.prune(root, keep_last=2)
    assert sorted(d.name for d in root.iterdir()) == ["step-000003", "step-000004", "step-000025"]


def test_check_geometry_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="micro_batch"):
        guard.check_geometry({"micro_batch": 2}, {"micro_batch": 4}, tmp_path)
