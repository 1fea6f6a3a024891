# shellcheck shell=bash
# Shared launcher logic, sourced by slurm/train_*.sh, and by slurm/eval.sh and slurm/merge.sh (bayling_setup_env,
# bayling_run_single).
#
# Why one file: the three training scripts differ only in their #SBATCH resources and default config; the
# launch itself (one srun task per node -> torchrun with a c10d rendezvous on the first host, signal
# handling, requeue) must behave identically for all of them. The per-node torchrun lines are built by
# bayling/train/launch.py, so `--dry-run` prints exactly what a real run executes.
#
# Environment overrides (all optional):
#   CONFIG          training config (default: the script's model config)
#   NPROC           processes per node (default: the allocation's GPUs per node, SLURM_GPUS_ON_NODE /
#                   SLURM_GPUS_PER_NODE / CUDA_VISIBLE_DEVICES). Required on a CPU-only allocation
#                   (sbatch --gpus-per-node=0 --cpus-per-task=N, e.g. a test cluster). GPUS_PER_NODE: old name.
#   MASTER_PORT     rendezvous port (default 29500)
#   PYTHON          interpreter (default: .venv/bin/python of the repo, else python3)
#   DRY_RUN=1       same as --dry-run: print the per-node launch commands, run nothing
# Arguments: --dry-run, and key=value overrides passed through to bayling-train.

BAYLING_EXIT_REQUEUE=75  # bayling.train.launch.EXIT_REQUEUE: torchrun exited cleanly after a signal
BAYLING_EXIT_STOPPED=75  # EX_TEMPFAIL: stopped on SIGTERM after a checkpoint; resubmit to resume

bayling_die() {
  echo "$(basename "${0}"): error: $*" >&2
  exit 2
}

# bayling_setup_env ROOT: pick the interpreter and make the package importable from the repo checkout.
bayling_setup_env() {
  local root="$1"
  if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then
      PYTHON="$root/.venv/bin/python"
    else
      PYTHON="$(command -v python3 || true)"
    fi
  fi
  [[ -n "$PYTHON" ]] || bayling_die "no python3 found; set PYTHON or run 'make install'"
  export PYTHON
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
  export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
}

# bayling_run_single USAGE MODULE [ARGS...]: `$PYTHON -m MODULE ARGS` as one task (srun inside a job, else
# directly), with a dated header line for the job log. --dry-run among ARGS (or DRY_RUN=1) prints the command
# instead. USAGE, when not empty, is the error for a call without arguments. Used by eval.sh and merge.sh.
bayling_run_single() {
  local usage="$1" module="$2" dry_run="${DRY_RUN:-0}" arg
  shift 2
  local args=()
  for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then dry_run=1; else args+=("$arg"); fi
  done
  [[ -z "$usage" ]] || ((${#args[@]})) || bayling_die "$usage"
  local cmd=("$PYTHON" -m "$module" "${args[@]}")
  if [[ "$dry_run" == "1" ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    exit 0
  fi
  echo "== $(date -u '+%F %T') job ${SLURM_JOB_ID:-local} (restart ${SLURM_RESTART_COUNT:-0}): ${cmd[*]}"
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    exec srun --ntasks=1 "${cmd[@]}"
  fi
  exec "${cmd[@]}"
}

# bayling_header_gpus SCRIPT: the --gpus-per-node of the script's #SBATCH header (what a dry run previews).
bayling_header_gpus() {
  sed -n 's/^#SBATCH --gpus-per-node=\([0-9]*\).*/\1/p' "$1" | head -n1
}

# bayling_kill_wait: the cluster's KillWait (seconds between SIGTERM and SIGKILL on a plain scancel).
bayling_kill_wait() {
  timeout 20 scontrol show config 2>/dev/null | sed -n 's/^KillWait *= *\([0-9]*\).*/\1/p' | head -n1
}

# bayling_train ROOT DEFAULT_CONFIG [--dry-run] [key=value ...]
bayling_train() {
  local root="$1" default_config="$2"
  shift 2
  local dry_run="${DRY_RUN:-0}" args=() arg
  for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then dry_run=1; else args+=("$arg"); fi
  done
  local config="${CONFIG:-$default_config}"
  local nproc="${NPROC:-${GPUS_PER_NODE:-}}"
  bayling_setup_env "$root"
  local launch=("$PYTHON" -m bayling.train.launch --config "$config")
  local nproc_arg=()
  [[ -z "$nproc" ]] || nproc_arg=(--nproc-per-node "$nproc")

  if [[ "$dry_run" == "1" ]]; then
    # Anywhere: outside an allocation launch.py previews a one-node job on this host (or the SLURM_* you set).
    local header
    header="$(bayling_header_gpus "${BASH_SOURCE[1]:-$0}")"
    "${launch[@]}" --dry-run "${nproc_arg[@]}" ${header:+--header-gpus "$header"} -- "${args[@]}"
    return
  fi

  [[ -n "${SLURM_JOB_ID:-}" ]] || bayling_die "not inside a Slurm job: submit with sbatch (or pass --dry-run)"
  [[ -f "$config" ]] || bayling_die "config not found: $config (submit from the repository root or set CONFIG)"
  # Preflight, once, on the batch node: processes per node vs the allocation, then `bayling-train --check`
  # (config, data, model, tokenizer, world size vs batch). A failure is one line and exit 2, before any
  # process starts on any node. On success it prints nproc=N and out=DIR (the run folder, where the trainer
  # writes OUT/REQUEUE when it stops on a signal after saving a checkpoint).
  local pre out
  pre="$("${launch[@]}" --preflight "${nproc_arg[@]}" -- "${args[@]}")" || exit 2
  nproc="$(sed -n 's/^nproc=//p' <<<"$pre")"
  out="$(sed -n 's/^out=//p' <<<"$pre")"
  rm -f "$out/REQUEUE"  # a stale marker from an earlier attempt
  local kill_wait
  kill_wait="$(bayling_kill_wait)"
  echo "== $(date -u '+%F %T') job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}:" \
    "${SLURM_NNODES} node(s) x ${nproc} process(es), config ${config}; a plain scancel leaves" \
    "KillWait=${kill_wait:-?} s to checkpoint (scancel --signal=USR1 or --signal=TERM has no such limit)"

  local rc=0
  srun --kill-on-bad-exit=1 --nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1 \
    "${launch[@]}" --run --nproc-per-node "$nproc" -- "${args[@]}" || rc=$?

  if [[ -f "$out/REQUEUE" ]]; then
    local sig
    sig="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("signal", ""))' "$out/REQUEUE" \
      2>/dev/null || true)"
    if [[ "$sig" == "SIGTERM" ]]; then
      echo "== $(date -u '+%F %T') trainer checkpointed on SIGTERM ($(cat "$out/REQUEUE")): stopped, not requeued;" \
        "resubmit the same command to resume (exit ${BAYLING_EXIT_STOPPED})"
      exit "$BAYLING_EXIT_STOPPED"
    fi
    echo "== $(date -u '+%F %T') trainer checkpointed on a signal ($(cat "$out/REQUEUE")): scontrol requeue" \
      "${SLURM_JOB_ID} (the requeued job resumes with --resume auto)"
    scontrol requeue "$SLURM_JOB_ID" || bayling_die "scontrol requeue ${SLURM_JOB_ID} failed; resubmit the job to resume"
    exit 0
  fi
  if ((rc == BAYLING_EXIT_REQUEUE)); then
    echo "== $(date -u '+%F %T') a signal arrived but the trainer wrote no $out/REQUEUE: it had already finished"
    rc=0
  fi
  echo "== $(date -u '+%F %T') training finished with exit code ${rc}"
  return "$rc"
}
