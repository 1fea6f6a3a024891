#!/usr/bin/env bash
# One-shot GPU acceptance check of bayling-train (issue 14.6), one command, <= 8 minutes on one H100/H200:
#
#   benchmarks/gpu_check.sh [OUT]        # OUT defaults to $OUT, else runs/gpu_check
#
# Runs bayling-train itself on a random-init ~1B Llama (bf16; ZeRO-2, and ZeRO-3 + gradient checkpointing;
# 2048 and 4096 tokens per row), reloads the exports, runs bayling-eval --suite flores (transformers, and
# vLLM if installed); nothing is downloaded. Writes OUT/gpu_check.json + gpu_check.md + one log per stage.
# Exit: 0 PASS (MFU goal met), 1 ran but failed or below the goal, 2 no CUDA GPU here (one line, nothing run).
# The stages and the MFU arithmetic: benchmarks/_gpu_check.py.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export DS_BUILD_OPS=0 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/_gpu_check.py --out "${1:-${OUT:-runs/gpu_check}}"
