# shellcheck shell=bash
# Shared launcher logic, sourced by slurm/train_*.sh (and slurm/eval.sh for bayling_setup_env).
#
# Why one file: the three training scripts differ only in their #SBATCH resources and default config; the
# launch itself (one srun task per node -> torchrun with a c10d rendezvous on the first host, signal
# handling, requeue) must behave identically for all of them. The per-node torchrun lines are built by
# bayling/train/launch.py, so `--dry-run` prints exactly what a real run executes.
#
# Environment overrides (all optional):
#   CONFIG          training config (default: the script's model config)
#   GPUS_PER_NODE   processes per node (default 8); NPROC overrides it too (the CPU test uses NPROC=2)
#   MASTER_PORT     rendezvous port (default 29500)
#   PYTHON          interpreter (default: .venv/bin/python of the repo, else python3)
#   DRY_RUN=1       same as --dry-run: print the per-node launch commands, run nothing
# Arguments: --dry-run, and key=value overrides passed through to bayling-train.

BAYLING_EXIT_REQUEUE=75  # bayling.train.launch.EXIT_REQUEUE: torchrun exited cleanly after a signal

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

# bayling_master_addr: first host of the allocation, as `scontrol show hostnames` expands it.
bayling_master_addr() {
  local hosts=()
  if [[ -n "${MASTER_ADDR:-}" ]]; then
    echo "$MASTER_ADDR"
  elif [[ -n "${SLURM_JOB_NODELIST:-}" && -f "${SLURM_CONF:-/etc/slurm/slurm.conf}" ]] \
    && command -v scontrol >/dev/null 2>&1 \
    && mapfile -t hosts < <(timeout 20 scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null) \
    && ((${#hosts[@]})); then
    echo "${hosts[0]}"
  fi  # else (no Slurm config here, e.g. a dry run on a laptop): empty, launch.py expands the list itself
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
  local nproc="${NPROC:-${GPUS_PER_NODE:-8}}"
  bayling_setup_env "$root"
  MASTER_ADDR="$(bayling_master_addr)"
  export MASTER_ADDR
  [[ -n "$MASTER_ADDR" ]] || unset MASTER_ADDR
  local launch=("$PYTHON" -m bayling.train.launch --nproc-per-node "$nproc" --config "$config")

  if [[ "$dry_run" == "1" ]]; then
    if [[ -z "${SLURM_JOB_NODELIST:-}" ]]; then
      echo "# not inside an allocation: previewing a one-node job on $(hostname -s)" \
        "(set SLURM_JOB_NODELIST/SLURM_NNODES/SLURM_JOB_ID to preview another)"
      export SLURM_JOB_NODELIST="${SLURM_JOB_NODELIST:-$(hostname -s)}" SLURM_NNODES=1 SLURM_JOB_ID=dry-run
    fi
    "${launch[@]}" --dry-run -- "${args[@]}"
    return
  fi

  [[ -n "${SLURM_JOB_ID:-}" ]] || bayling_die "not inside a Slurm job: submit with sbatch (or pass --dry-run)"
  [[ -f "$config" ]] || bayling_die "config not found: $config (submit from the repository root or set CONFIG)"
  # The run folder, as bayling-train resolves it: OUT/REQUEUE there is how the trainer says "stopped on a
  # signal after saving a checkpoint". A stale marker from an earlier attempt is removed first.
  local out
  out="$("${launch[@]}" --print-out-dir -- "${args[@]}")" || exit 2
  rm -f "$out/REQUEUE"
  echo "== $(date -u '+%F %T') job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}:" \
    "${SLURM_NNODES} node(s) x ${nproc} process(es), config ${config}, rendezvous ${MASTER_ADDR:-first host}:${MASTER_PORT:-29500}"

  local rc=0
  srun --kill-on-bad-exit=1 --nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1 \
    "${launch[@]}" --run -- "${args[@]}" || rc=$?

  if [[ -f "$out/REQUEUE" ]]; then
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
