"""The `make demo` loop at a small budget: the three real commands end to end, and the loss falls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_loop_runs_end_to_end_and_validation_loss_falls(repo_root, tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py", "--out", str(out), "--langs", "deu,fra", "--eval-lines", "8",
         "--steps", "24", "--hidden", "64", "--layers", "2", "--flores-rows", "300", "--target-total", "3000",
         "--max-new-tokens", "16", "--min-chrf-gain", "-1000"],
        cwd=repo_root, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert sum(manifest["pipeline"]["decontaminated"].values()) > 0, "held-out lines must be decontaminated"
    held_out = {line.strip() for f in (out / "heldout_flores").glob("*.devtest") for line in f.open()}
    train_text = "".join(p.read_text() for p in (out / "data" / "train").glob("*.jsonl"))
    assert not [s for s in held_out if len(s) > 30 and json.dumps(s)[1:-1] in train_text]

    evals = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in evals if r.get("event") == "eval"]
    assert len(val) >= 2 and val[-1] < val[0] - 0.5, val
    assert (out / "train" / "final" / "model.safetensors").exists()
    for run in ("eval_before", "eval_after"):
        results = json.loads((out / run / "results.json").read_text())
        assert {d["direction"] for d in results["directions"]} == {
            "deu_Latn-eng_Latn", "eng_Latn-deu_Latn", "fra_Latn-eng_Latn", "eng_Latn-fra_Latn"}
    assert (out / "compare" / "compare.md").exists()
    assert "Held-out FLORES chrF++" in (out / "DEMO_SUMMARY.md").read_text()
