#!/bin/bash
# Full fine-tuning of Llama-2-7B-Chat (BayLing 2) with DeepSpeed ZeRO, one srun task per node -> torchrun.
#
#   sbatch slurm/train_7b.sh [key=value ...]          submit from the repository root (venv installed)
#   bash slurm/train_7b.sh --dry-run [key=value ...]   print the per-node launch commands only
#
# Edit for your cluster: --partition / --account (add them), --nodes, --gpus-per-node (then GPUS_PER_NODE),
# --cpus-per-task, --time. See docs/slurm.md. On SIGUSR1 (180 s before the time limit, or scancel --signal=USR1)
# the trainer saves a checkpoint and exits; this script then requeues the job, which resumes (--resume auto).
#SBATCH --job-name=bayling-7b
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

# Slurm runs a copy of this file from its spool directory: find the checkout by BAYLING_ROOT, this file's
# folder (bash slurm/...), or the submit directory.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root=""
for cand in "${BAYLING_ROOT:-}" "$here/.." "${SLURM_SUBMIT_DIR:-}" "$PWD"; do
  if [[ -n "$cand" && -f "$cand/slurm/common.sh" ]]; then root="$(cd "$cand" && pwd)"; break; fi
done
[[ -n "$root" ]] || { echo "train_7b.sh: error: cannot find the checkout; submit from its root or set BAYLING_ROOT" >&2; exit 2; }
# shellcheck source=slurm/common.sh
source "$root/slurm/common.sh"

bayling_train "$root" "$root/data/recipes/train/llama2_7b.yaml" "$@"
