#!/bin/bash
# Merge 7B/8B/13B experts with bayling-merge on one GPU node; every argument goes to bayling-merge.
#
#   sbatch slurm/merge.sh --base runs/train/base/final --experts runs/train/xen/final runs/train/enx/final \
#       --fitness flores:/data/flores101_dataset/dev --langs high --directions x-en,en-x \
#       --test-flores-dir /data/flores101_dataset/devtest --methods all --out runs/merge/xen-enx
#   bash slurm/merge.sh --dry-run --base ... --out ...      # print the command, run nothing
#
# Memory (docs/merge.md, "Memory and time"): the coefficient formulation (the default) holds the base and
# the N experts in CPU memory in their saved dtype, plus one materialised candidate, plus the generator on the
# GPU: for N=2 bf16 experts about 4 x 15 GB (7B/8B) or 4 x 26 GB (13B) of RAM and one model + KV cache of GPU
# memory. --mem=0 takes the node's memory. Each fitness evaluation is one greedy generation pass over the dev
# directions. The swarm is saved after every iteration and finished evaluations are cached, so the job is
# requeueable: a requeued job continues the search. Edit --partition/--account/--gpus/--time for your cluster.
# Environment: PYTHON (interpreter), DRY_RUN=1 (same as --dry-run).
#SBATCH --job-name=bayling-merge
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --mem=0
#SBATCH --time=24:00:00
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

bayling_run_single "no arguments: give bayling-merge's --base, --experts, --fitness and --out" bayling.cli.merge "$@"
