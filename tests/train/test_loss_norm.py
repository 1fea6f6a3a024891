"""Loss = token losses / target tokens of the WHOLE optimizer step, whatever the batch geometry.

Real DeepSpeed ZeRO-2, fp32, CPU, gloo: micro-batch 4 x GA 1 and micro-batch 1 x GA 4 in one process,
2 ranks x GA 2 under torchrun, each doing two optimizer steps on the same 8 packed sequences. Loss,
gradient norm (scale-sensitive: Adam's first update is not) and updated weights must agree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import train_harness as th

pytestmark = pytest.mark.slow  # DeepSpeed/torchrun launches

WORKER = Path(__file__).resolve().parent / "loss_norm_worker.py"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, tiny_llama2) -> dict:
    from bayling.train.cache import CacheSpec, prepare_cache

    root = tmp_path_factory.getbasetemp() / "train_runs" / "token_cache"
    cache = prepare_cache(CacheSpec(th.FIXTURE_DATA, tiny_llama2, "bayling", 128, "truncate", root), show_progress=False)
    out = tmp_path_factory.mktemp("loss_norm")
    results = {}
    for nproc, specs in ((1, ["4x1", "1x4"]), (2, ["1x2"])):
        dest = out / f"w{nproc}.pt"
        cmd = [*th.launcher(nproc), str(WORKER), str(tiny_llama2), str(cache), str(dest), *specs]
        proc = subprocess.run(cmd, cwd=th.REPO, env=th.env(), capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.update(torch.load(dest, weights_only=True))
    return results


def test_sequences_have_different_target_counts(layouts):
    """Precondition: with equal counts a per-micro-batch mean would pass by accident."""
    counts = layouts["1x4x1"]["targets_per_seq"]
    assert len(set(counts[:4])) > 1 and len(set(counts[4:])) > 1


@pytest.mark.parametrize("other", ["1x1x4", "2x1x2"])
def test_same_loss_grad_norm_and_weights(layouts, other):
    ref, got = layouts["1x4x1"], layouts[other]
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)
    for name, w in ref["weights"].items():
        torch.testing.assert_close(got["weights"][name], w, rtol=1e-5, atol=1e-6, msg=name)


def test_weights_moved(layouts, tiny_llama2):
    """The comparison is meaningful only if the two steps changed the model."""
    from safetensors.torch import load_file

    init = load_file(str(tiny_llama2 / "model.safetensors"))
    moved = layouts["1x4x1"]["weights"]["model.layers.0.mlp.down_proj.weight"]
    assert not torch.allclose(moved, init["model.layers.0.mlp.down_proj.weight"])
