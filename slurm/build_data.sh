#!/usr/bin/env bash
# Build a BayLing data mix on Slurm: an array job of N shards, then one merge job that starts only when
# every shard succeeded (sbatch --dependency=afterok:ARRAY_JOB_ID).
#
# Usage (run on the login node, from the repository root; it submits two jobs and prints their ids):
#
#   RECIPE=data/recipes/bayling2.yaml OUT=runs/data/bayling2 SHARDS=32 slurm/build_data.sh [key=value ...]
#   slurm/build_data.sh --recipe data/recipes/demo.yaml --out runs/data/demo --shards 2 mix.target_total=2000
#
# Options / environment (options win):
#   --recipe FILE   | RECIPE    recipe YAML                      (default data/recipes/bayling2.yaml)
#   --out DIR       | OUT       final data directory             (default runs/data/<recipe name>)
#   --shards N      | SHARDS    number of array tasks            (default 8)
#   --work DIR      | WORK      where shard folders go           (default OUT.shards)
#   --python PATH   | PYTHON    interpreter with bayling installed (default .venv/bin/python, else python3)
#   --partition P   | PARTITION Slurm partition                  (default: the cluster's default)
#   --time T        | TIME      time limit per job               (default 04:00:00)
#   --cpus C        | CPUS      CPUs per task                    (default 2)
#   --mem M         | MEM       memory per task                  (default 8G)
#   BUILD_ARGS                  extra bayling-build-data options for the shard jobs, e.g.
#                               "--skip-bad-records --decontaminate /data/flores101/devtest"
#   everything else             recipe overrides (key=value), passed to every shard job
#
# Each array task runs `python -m bayling.cli.build_data --shard I/N --out WORK/shard-I ...`; the merge job
# runs `python -m bayling.cli.build_data merge --out OUT WORK/shard-*` and writes OUT atomically. Logs go to
# WORK/logs/. A failed shard keeps the merge from starting (afterok); rerun with the same arguments.
set -euo pipefail

RECIPE="${RECIPE:-data/recipes/bayling2.yaml}"
OUT="${OUT:-}"
SHARDS="${SHARDS:-8}"
WORK="${WORK:-}"
PYTHON="${PYTHON:-}"
PARTITION="${PARTITION:-}"
TIME="${TIME:-04:00:00}"
CPUS="${CPUS:-2}"
MEM="${MEM:-8G}"
BUILD_ARGS="${BUILD_ARGS:-}"
OVERRIDES=()

die() { echo "build_data.sh: error: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --recipe) RECIPE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --shards) SHARDS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --partition) PARTITION="$2"; shift 2 ;;
    --time) TIME="$2"; shift 2 ;;
    --cpus) CPUS="$2"; shift 2 ;;
    --mem) MEM="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) die "unknown argument '$1' (recipe overrides are key=value)" ;;
  esac
done

command -v sbatch >/dev/null 2>&1 || die "sbatch not found: run this on a Slurm login node"
[[ -f "$RECIPE" ]] || die "recipe not found: $RECIPE"
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || die "--shards must be a positive integer, got '$SHARDS'"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON="$PWD/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
if [[ -z "$OUT" ]]; then
  OUT="runs/data/$(basename "$RECIPE" .yaml)"
fi
WORK="${WORK:-$OUT.shards}"
mkdir -p "$WORK/logs"
# Absolute paths: the jobs may start in another directory on the compute nodes.
RECIPE="$(cd "$(dirname "$RECIPE")" && pwd)/$(basename "$RECIPE")"
WORK="$(cd "$WORK" && pwd)"
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"

PART_ARGS=()
if [[ -n "$PARTITION" ]]; then PART_ARGS=(--partition "$PARTITION"); fi

# Quote every argument for the job scripts (overrides may hold spaces).
quoted_overrides=""
for o in "${OVERRIDES[@]+"${OVERRIDES[@]}"}"; do quoted_overrides+=" $(printf '%q' "$o")"; done
quoted_build=""
if [[ -n "$BUILD_ARGS" ]]; then
  read -r -a build_words <<<"$BUILD_ARGS"
  for w in "${build_words[@]}"; do quoted_build+=" $(printf '%q' "$w")"; done
fi

# The two job scripts are written next to the shards (bash, so the quoting below is bash's) and kept:
# they record exactly what ran.
{
  echo '#!/usr/bin/env bash'
  echo 'set -euo pipefail'
  echo "cd $(printf '%q' "$PWD")"
  # shellcheck disable=SC2016  # written literally: expanded when the job runs
  echo 'i=${SLURM_ARRAY_TASK_ID:?not an array task}'
  echo "exec $(printf '%q' "$PYTHON") -m bayling.cli.build_data --no-progress --recipe $(printf '%q' "$RECIPE") \\"
  echo "  --shard \"\$i/$SHARDS\" --out $(printf '%q' "$WORK")/shard-\"\$i\"$quoted_build$quoted_overrides"
} >"$WORK/shard.sh"

shard_dirs=""
for ((i = 0; i < SHARDS; i++)); do shard_dirs+=" $(printf '%q' "$WORK/shard-$i")"; done
{
  echo '#!/usr/bin/env bash'
  echo 'set -euo pipefail'
  echo "cd $(printf '%q' "$PWD")"
  echo "exec $(printf '%q' "$PYTHON") -m bayling.cli.build_data merge --no-progress --out $(printf '%q' "$OUT")$shard_dirs"
} >"$WORK/merge.sh"

array_id=$(sbatch --parsable "${PART_ARGS[@]+"${PART_ARGS[@]}"}" --job-name=bayling-data-shard \
  --array="0-$((SHARDS - 1))" --ntasks=1 --cpus-per-task="$CPUS" --mem="$MEM" --time="$TIME" \
  --output="$WORK/logs/shard-%a.out" "$WORK/shard.sh")
array_id="${array_id%%;*}"
merge_id=$(sbatch --parsable "${PART_ARGS[@]+"${PART_ARGS[@]}"}" --job-name=bayling-data-merge \
  --dependency="afterok:$array_id" --kill-on-invalid-dep=yes --ntasks=1 --cpus-per-task="$CPUS" \
  --mem="$MEM" --time="$TIME" --output="$WORK/logs/merge.out" "$WORK/merge.sh")
merge_id="${merge_id%%;*}"

echo "build_data.sh: shards: job $array_id (array 0-$((SHARDS - 1)), logs $WORK/logs/shard-*.out)"
echo "build_data.sh: merge:  job $merge_id (after all shards succeed) -> $OUT"
echo "ARRAY_JOB_ID=$array_id"
echo "MERGE_JOB_ID=$merge_id"
