"""benchmarks/gpu_check.sh (issue 14.6) on a CPU machine: it refuses in one line (exit 2), and the arithmetic
and parsing behind its report are right, so the one GPU run it gets is not wasted on a reporting bug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_loader import load_script

REPO = Path(__file__).resolve().parents[2]


def gpu_check():
    return load_script("benchmarks/_gpu_check.py", "gpu_check_helper")


def test_model_flops_per_token_and_mfu_golden_values():
    gc = gpu_check()
    # 6 x (1000 - 10 x 4 embedding) + 6 x 2 layers x 4 hidden x (1 + 9) / (1 + 3)
    assert gc.flops_per_token(1000, 10, 4, 2, [1, 3]) == pytest.approx(5760 + 120)
    assert gc.mfu(1e5, 6e9, 989.0) == pytest.approx(6e14 / 989e12)
    assert gc.mfu(1e5, 6e9, 989.0, gpus=2) == pytest.approx(6e14 / 989e12 / 2)
    # TinyLlama-1.1B's shape: 1,100,048,384 parameters; a row of one 2048-token sample
    per_token = gc.flops_per_token(1_100_048_384, 32000, 2048, 22, [2048])
    assert per_token == pytest.approx(6 * (1_100_048_384 - 65_536_000) + 6 * 22 * 2048 * 2048)
    assert gc.mfu(70_000, per_token) == pytest.approx(0.4785, abs=1e-4)  # 70k tok/s on one H100 or H200


def test_the_1b_shape_is_what_the_mfu_counts():
    from transformers import LlamaConfig, LlamaForCausalLM

    gc = gpu_check()
    s = gc.SHAPE
    cfg = LlamaConfig(vocab_size=32000, hidden_size=s["hidden_size"], num_hidden_layers=s["num_layers"],
                      num_attention_heads=s["num_heads"], num_key_value_heads=s["num_kv_heads"],
                      intermediate_size=s["intermediate_size"], tie_word_embeddings=False)
    with torch.device("meta"):
        n = sum(p.numel() for p in LlamaForCausalLM(cfg).parameters())
    assert n == 1_100_048_384
    assert all(max_len * mb == 8192 for _, _, _, max_len, mb in gc.RUNS)
    assert {(z, g) for _, z, g, _, _ in gc.RUNS} == {("2", False), ("3", True)}
    assert {L for *_, L, _ in gc.RUNS} == {2048, 4096}


def test_trainer_metrics_are_summarised_after_the_warmup(tmp_path):
    from bayling.train.metrics import MetricsLogger

    logger = MetricsLogger(tmp_path, rank=1, start_step=0, total_steps=4, n_params=1000, world_size=1,
                           peak_tflops=989.0, use_tensorboard=False)  # rank 1: builds records, writes nothing
    lines = []
    for step, (tokens, secs, wait) in enumerate([(100, 10.0, 5.0), (800, 1.0, 0.1), (800, 2.0, 0.2), (900, 1.0, 0.0)],
                                                start=1):
        rec = logger.step_record(step, loss=10.0 - step, lr=1e-5, grad_norm=1.0, real_tokens=tokens,
                                 slot_tokens=1024, target_tokens=tokens // 2, seconds=secs, epoch=0)
        rec["data_wait_seconds"] = wait
        lines.append(json.dumps(rec))
    lines.insert(2, json.dumps({"step": 2, "event": "eval", "val_loss": 3.0, "val_tokens": 10}))
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n{\"step\": 5, \"loss\"")  # a line cut by a crash at the end
    s = gpu_check().summarize_train(path, warmup=1)
    assert s["steps"] == 4 and s["timed_steps"] == 3
    assert s["real_tokens_per_s"] == pytest.approx(2500 / 4.0)  # the slow first step is excluded
    assert s["median_step_s"] == 1.0
    assert s["data_wait_fraction"] == pytest.approx(0.3 / 4.0)
    assert s["trainer_mfu_6N"] == pytest.approx(6 * 1000 * 800 / 989e12)  # median of 800, 400, 900 tok/s
    assert (s["loss_first"], s["loss_last"]) == (9.0, 6.0)
    with pytest.raises(ValueError, match="no step after"):
        gpu_check().summarize_train(path, warmup=10)


def test_eval_results_and_the_report(tmp_path):
    gc = gpu_check()
    results = {"suite": "flores", "directions": [
        {"direction": "eng_Latn-deu_Latn", "n": 8, "scores": {"bleu": {"name": "bleu_13a", "score": 0.6},
                                                              "chrf": {"name": "chrf++", "score": 12.0}}},
        {"direction": "deu_Latn-eng_Latn", "n": 8, "scores": {"bleu": {"score": 0.0}, "chrf": {"score": 13.0}}}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    ev = gc.summarize_eval(tmp_path / "results.json")
    assert ev == {"eng_Latn-deu_Latn": {"n": 8, "bleu": 0.6, "chrf": 12.0},
                  "deu_Latn-eng_Latn": {"n": 8, "bleu": 0.0, "chrf": 13.0}}
    run = {"real_tokens_per_s": 70000.0, "mfu": 0.47, "trainer_mfu_6N": 0.44, "peak_memory_gb": 30.0,
           "data_wait_fraction": 0.01, "loss_first": 10.4, "loss_last": 9.1}
    report = {"device": "NVIDIA H200", "params": 1_100_048_384, "total_s": 400, "train": {"zero2_2048": run},
              "reload": {"zero2_2048": {"loss": 9.2}}, "eval": {"hf": dict(ev)}}
    assert gc.verdict(report) == "PASS: best MFU 47.0% (goal 45%)"
    report["verdict"] = gc.verdict(report)
    md = gc.markdown(report)
    assert "| zero2_2048 | 70,000 | 47.0% | 44.0% | 30.0 | 1.0% | 10.400 -> 9.100 |" in md
    assert "eng_Latn-deu_Latn BLEU 0.6 chrF++ 12.0" in md and "verdict: PASS" in md
    assert gc.verdict({**report, "train": {"zero2_2048": {**run, "mfu": 0.3}}}).startswith("BELOW GOAL: best MFU 30.0%")
    failed = {**report, "train": {**report["train"], "zero3_gc_4096": {"error": "exit 1"}}}
    assert gc.verdict(failed) == "FAIL: zero3_gc_4096"
    assert "| zero3_gc_4096 | failed: exit 1 |" in gc.markdown(failed)
    assert gc.verdict({**report, "eval": {"vllm": {"error": "exit 124"}}}) == "FAIL: eval vllm"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_without_cuda_it_exits_2_with_one_line_and_writes_nothing(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("gpu_check: needs a CUDA GPU")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_every_stage_runs_on_a_tiny_model_on_cpu(tmp_path):
    """--smoke-cpu: the same stages (bayling-train ZeRO-2 and ZeRO-3 + checkpointing, export, reload, eval) on a
    tiny model, so a broken stage shows here and not on the GPU machine."""
    out = tmp_path / "out"
    (out / "work").mkdir(parents=True)
    (out / "work" / "mine.txt").write_text("a user's file", encoding="utf-8")  # never the script's to delete
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "_gpu_check.py"), "--smoke-cpu", "--steps", "4",
                           "--warmup", "1", "--eval-lines", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    report = json.loads((out / "gpu_check.json").read_text())
    assert proc.returncode == 1, proc.stderr[-2000:]  # ran, but a tiny CPU model is far from the MFU goal
    assert report["verdict"].startswith("BELOW GOAL"), report
    assert set(report["train"]) == {"zero2_2048", "zero3_gc_2048"}
    assert all(r["real_tokens_per_s"] > 0 and r["timed_steps"] == 3 for r in report["train"].values())
    assert all(r["dtype"] == "torch.bfloat16" for r in report["reload"].values())
    assert len(report["eval"]["hf"]) == 5  # 4 directions + seconds
    assert not list(out.glob("work-*")) and (out / "gpu_check.md").is_file()
    assert (out / "work" / "mine.txt").read_text(encoding="utf-8") == "a user's file"
