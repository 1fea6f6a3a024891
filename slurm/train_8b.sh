#!/bin/bash
# Full fine-tuning of Llama-3-8B-Instruct (BayLing 2) with DeepSpeed ZeRO, one srun task per node -> torchrun.
#
#   sbatch slurm/train_8b.sh [key=value ...]          submit from the repository root (venv installed)
#   bash slurm/train_8b.sh --dry-run [key=value ...]   print the per-node launch commands only
#
# Edit for your cluster: --partition / --account (add them), --nodes, --gpus-per-node (then GPUS_PER_NODE),
# --cpus-per-task, --time. See docs/slurm.md. On SIGUSR1 (180 s before the time limit, or scancel --signal=USR1)
# the trainer saves a checkpoint and exits; this script then requeues the job, which resumes (--resume auto).
#SBATCH --job-name=bayling-8b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --mem=0
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=USR1@180
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

# Slurm runs a spool copy of this file: the checkout is BAYLING_ROOT, this file's folder/.., or the submit dir.
for root in "${BAYLING_ROOT:-}" "$(dirname "${BASH_SOURCE[0]}")/.." "${SLURM_SUBMIT_DIR:-}" "$PWD"; do [[ -n "$root" && -f "$root/slurm/common.sh" ]] && break; done
# shellcheck source=slurm/common.sh
source "$root/slurm/common.sh" 2>/dev/null || { echo "${0##*/}: error: cannot find the checkout; submit from its root or set BAYLING_ROOT" >&2; exit 2; }
root="$(cd "$root" && pwd)"

bayling_train "$root" "$root/data/recipes/train/llama3_8b.yaml" "$@"
