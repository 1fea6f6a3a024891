"""Bad input ends every rank quickly with one clear line (exit 2), never a hang or a bare traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import train_harness as th
from hostile import run_cli


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bayling-train: error:")]


def _one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "train_runs" / "token_cache"


def test_missing_data_dir(tmp_path, tiny_llama2, cache_root):
    args = th.train_args(tmp_path / "out", tiny_llama2, cache_root, [f"data.dir={tmp_path / 'nope'}"])
    _one_line_error(run_cli("bayling-train", args), "nope", "does not exist")


def test_empty_data_dir(tmp_path, tiny_llama2, cache_root):
    (tmp_path / "data" / "train").mkdir(parents=True)
    args = th.train_args(tmp_path / "out", tiny_llama2, cache_root, [f"data.dir={tmp_path / 'data'}"])
    _one_line_error(run_cli("bayling-train", args), "no training data")


def test_fp16_on_cpu(tmp_path, tiny_llama2, cache_root):
    args = th.train_args(tmp_path / "out", tiny_llama2, cache_root, ["dtype=fp16"])
    _one_line_error(run_cli("bayling-train", args), "field 'dtype'", "fp16 is not supported on CPU")


@pytest.mark.slow
def test_no_trainable_token_stops_both_ranks(tmp_path, tiny_llama2):
    """Every answer is cut off by truncation: rank 0 fails building the cache, rank 1 must not wait forever."""
    data = tmp_path / "data"
    shutil.copytree(th.FIXTURE_DATA, data)
    args = th.train_args(tmp_path / "out", tiny_llama2, tmp_path / "cache", [f"data.dir={data}", "data.max_length=16"])
    proc = th.run(2, args, timeout=120)
    assert proc.returncode != 0
    errors = _error_lines(proc.stderr)  # rank 0 reports; rank 1 sees rank 0's failure and exits quietly
    assert len(errors) == 1 and "no usable training sample" in errors[0], proc.stderr[-3000:]


@pytest.mark.slow
def test_nonfinite_loss_saves_and_stops(tmp_path, tiny_llama2, cache_root):
    """An absurd learning rate blows the weights up: checkpoint (not 'latest'), one line, exit 3."""
    out = tmp_path / "out"
    args = th.train_args(out, tiny_llama2, cache_root, ["optim.lr=1.0e+30", "optim.warmup_ratio=0.0",
                                                        "max_steps=6", "save_every=100"])
    proc = th.run(1, args)
    assert proc.returncode == 3, proc.stderr[-3000:] + proc.stdout[-2000:]
    line = _error_lines(proc.stderr)
    assert len(line) == 1 and "non-finite loss" in line[0] and "--resume auto" in line[0]
    saved = list((out / "checkpoints").glob("nonfinite-step-*"))
    assert len(saved) == 1 and (saved[0] / "COMPLETED").is_file()
    assert not (out / "checkpoints" / "latest").exists() and not (out / "final").exists()
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("event") != "eval"]
    assert steps and not all(abs(s["loss"]) < float("inf") for s in steps)


@pytest.mark.slow
def test_tokenizer_larger_than_the_model_embedding(tmp_path, tiny_llama2, cache_root):
    """Llama-3's 128k-token tokenizer against a 32k-vocabulary model: named before any forward pass."""
    args = th.train_args(tmp_path / "out", tiny_llama2, cache_root, ["model.tokenizer=llama3"])
    _one_line_error(run_cli("bayling-train", args), "model.tokenizer", "128256 tokens", "32000")


def test_local_launch_checks_the_config_before_starting_workers(tmp_path, tiny_llama2, cache_root):
    """`bayling-train --nproc-per-node 2` with a missing data dir: one line from this process, no torchrun."""
    args = th.train_args(tmp_path / "out", tiny_llama2, cache_root, [f"data.dir={tmp_path / 'nope'}"])
    proc = th.run(1, ["--nproc-per-node", "2", *args])
    _one_line_error(proc, "nope", "does not exist")
    assert "torch.distributed.run" not in proc.stdout and "ChildFailedError" not in proc.stderr


@pytest.mark.slow
def test_local_launch_starts_that_many_workers(tmp_path, tiny_llama2, cache_root):
    out = tmp_path / "out"
    args = th.train_args(out, tiny_llama2, cache_root, ["max_steps=2", "save_every=2", "eval_every=0"])
    proc = th.run(1, ["--nproc-per-node=2", *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--nproc_per_node=2" in proc.stdout and "--nproc-per-node" not in proc.stdout.split("$ ", 1)[1]
    ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    assert json.loads((ckpt / "train_state.json").read_text())["world_size"] == 2
