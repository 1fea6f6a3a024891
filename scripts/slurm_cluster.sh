#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the Slurm tests and CI.
#
#   scripts/slurm_cluster.sh install   apt-get the Debian packages (slurmctld slurmd slurm-client munge)
#   scripts/slurm_cluster.sh start     munge key + munged, slurm.conf, slurmctld, slurmd; waits until idle
#   scripts/slurm_cluster.sh stop      stops the daemons this script started (by their pid files)
#   scripts/slurm_cluster.sh status    prints sinfo, exit 0 when the node answers
#
# Why a real cluster: the sbatch scripts (requeue, signals, srun, hostname expansion) can only be trusted
# when run under real Slurm daemons, not only against fake SLURM_* variables. Needs root (the daemons run as
# root, munged as user munge). Every state file lives under $BAYLING_SLURM_DIR (default /tmp/bayling-slurm);
# the only file written elsewhere is the config where the Debian binaries look for it
# ($SLURM_CONF, default /etc/slurm/slurm.conf). start and stop are idempotent.
set -euo pipefail

STATE_DIR="${BAYLING_SLURM_DIR:-/tmp/bayling-slurm}"
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
MUNGE_KEY="${MUNGE_KEY:-/etc/munge/munge.key}"
MARKER="# written by bayling scripts/slurm_cluster.sh"
START_TIMEOUT="${BAYLING_SLURM_START_TIMEOUT:-60}"

log() { echo "slurm_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_alive PIDFILE: true when the file names a running process.
pid_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

need_root() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root (the Slurm daemons run as root, munged as user munge)"
}

need_binaries() {
  local b missing=()
  for b in slurmctld slurmd sinfo munged; do
    command -v "$b" >/dev/null 2>&1 || [[ -x "/usr/sbin/$b" ]] || missing+=("$b")
  done
  if ((${#missing[@]})); then
    die "missing ${missing[*]}; run: $0 install   (apt-get install slurmctld slurmd slurm-client munge)"
  fi
}

cmd_install() {
  need_root
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  log "installed: $(slurmctld -V)"
}

# munge authenticates every Slurm message; the key must exist, be owned by munge and be private.
start_munge() {
  local rundir=/run/munge
  if [[ ! -s "$MUNGE_KEY" ]]; then
    log "creating $MUNGE_KEY (1024 random bytes)"
    mkdir -p "$(dirname "$MUNGE_KEY")"
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  chown munge:munge "$MUNGE_KEY" "$(dirname "$MUNGE_KEY")"
  chmod 400 "$MUNGE_KEY"
  chmod 700 "$(dirname "$MUNGE_KEY")"
  mkdir -p "$rundir" /var/lib/munge /var/log/munge
  chown munge:munge "$rundir" /var/lib/munge /var/log/munge
  chmod 755 "$rundir"
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0  # a munged is already serving (ours from an earlier start, or the system's)
  fi
  log "starting munged"
  if command -v runuser >/dev/null 2>&1; then
    runuser -u munge -- munged --force
  else
    su -s /bin/sh munge -c "munged --force"
  fi
  echo "munged" >"$STATE_DIR/started-munged"
  for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged did not start (see /var/log/munge/munged.log)"
}

# Jobs use the node's name (torchrun's rendezvous endpoint is the first host of the allocation), so it
# must resolve; a bare container may not know its own short name.
ensure_hostname_resolves() {
  local host="$1"
  if ! getent hosts "$host" >/dev/null 2>&1; then
    log "$host does not resolve; adding '127.0.0.1 $host' to /etc/hosts"
    echo "127.0.0.1 $host  # added by bayling scripts/slurm_cluster.sh" >>/etc/hosts
  fi
}

write_conf() {
  local host cpus
  host="$(hostname -s)"
  cpus="$(nproc)"
  ensure_hostname_resolves "$host"
  if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
    log "keeping the existing $CONF as $CONF.bayling-backup"
    cp -p "$CONF" "$CONF.bayling-backup"
  fi
  mkdir -p "$(dirname "$CONF")"
  cat >"$CONF.tmp" <<EOF
$MARKER
# A single-node test cluster: everything runs as root, state lives in $STATE_DIR.
ClusterName=bayling
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldPort=${BAYLING_SLURMCTLD_PORT:-6817}
SlurmdPort=${BAYLING_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
JobRequeue=1
KillWait=30
# Finished jobs stay visible to scontrol show job for an hour (the tests check start/end order).
MinJobAge=3600
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

node_idle() {
  local state
  state="$(timeout 10 sinfo -h -N -o '%t' 2>/dev/null | head -n1)" || return 1
  [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]]
}

cmd_start() {
  need_root
  need_binaries
  mkdir -p "$STATE_DIR"/{state,spool,log}
  start_munge
  write_conf
  if ! pid_alive "$STATE_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -c 2>>"$STATE_DIR/log/slurmctld.stderr" || die "slurmctld failed; see $STATE_DIR/log/"
  fi
  if ! pid_alive "$STATE_DIR/slurmd.pid"; then
    log "starting slurmd"
    slurmd -c 2>>"$STATE_DIR/log/slurmd.stderr" || die "slurmd failed; see $STATE_DIR/log/"
  fi
  local waited=0
  until node_idle; do
    if ((waited >= START_TIMEOUT * 2)); then
      log "sinfo: $(timeout 10 sinfo -N 2>&1 | tr '\n' ' ')"
      die "node not idle after ${START_TIMEOUT}s; logs in $STATE_DIR/log/"
    fi
    # A node left DOWN/DRAIN by an earlier run is returned to service explicitly.
    if ((waited % 10 == 9)); then
      scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log "running: $(sinfo -h -N -o '%N %t %c CPUs')"
}

stop_pidfile() {
  local name="$1" file="$2" pid
  if ! pid_alive "$file"; then
    rm -f "$file"
    return 0
  fi
  pid="$(cat "$file")"
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    sleep 0.1
  done
  log "$name did not exit after 10 s; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

cmd_stop() {
  stop_pidfile slurmd "$STATE_DIR/slurmd.pid"
  stop_pidfile slurmctld "$STATE_DIR/slurmctld.pid"
  if [[ -f "$STATE_DIR/started-munged" ]]; then
    stop_pidfile munged /run/munge/munged.pid
    rm -f "$STATE_DIR/started-munged"
  fi
}

cmd_status() {
  if node_idle; then
    sinfo -N
    return 0
  fi
  log "not running (no idle node answers sinfo)"
  return 1
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
