#!/bin/bash
# Evaluate a model with bayling-eval on one GPU node; every argument goes to bayling-eval.
#
#   sbatch slurm/eval.sh --suite flores --model runs/train/llama2_13b/final --out runs/eval/flores
#   sbatch slurm/eval.sh --suite wmt22 --model DIR --wmt-dir /data/wmt22 --out runs/eval/wmt22
#   bash slurm/eval.sh --dry-run --suite knowledge --model DIR --out runs/eval/knowledge
#
# Evaluation is resumable (finished directions are skipped on a rerun), so the job is requeueable: a
# preempted or requeued job continues where it stopped. Edit --partition/--account/--gpus/--time for your
# cluster (docs/slurm.md). Environment: PYTHON (interpreter), DRY_RUN=1 (same as --dry-run).
#SBATCH --job-name=bayling-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

# Slurm runs a spool copy of this file: the checkout is BAYLING_ROOT, this file's folder/.., or the submit dir.
for root in "${BAYLING_ROOT:-}" "$(dirname "${BASH_SOURCE[0]}")/.." "${SLURM_SUBMIT_DIR:-}" "$PWD"; do [[ -n "$root" && -f "$root/slurm/common.sh" ]] && break; done
# shellcheck source=slurm/common.sh
source "$root/slurm/common.sh" 2>/dev/null || { echo "${0##*/}: error: cannot find the checkout; submit from its root or set BAYLING_ROOT" >&2; exit 2; }
root="$(cd "$root" && pwd)"
bayling_setup_env "$root"

bayling_run_single "" bayling.cli.evaluate "$@"
