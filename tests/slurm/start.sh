#!/bin/sh
# Start a single-node Slurm on 127.0.0.1 for the tests (and for trying `mile batch
# --backend slurm` on one machine): munged, slurmctld and slurmd with their key,
# config, state, spool, logs and pid files under one directory.
#
#   tests/slurm/start.sh [DIR]      (default: $MILE_SLURM_DIR or /tmp/mile-slurm)
#   export SLURM_CONF=DIR/slurm.conf
#   tests/slurm/stop.sh [DIR]       ends exactly the daemons started here (pid files)
#
# Idempotent: when the cluster of DIR answers already, nothing is started. Needs root
# (the daemons run as root, SlurmUser=root) and Debian's slurm-wlm and munge; when
# they are missing and we are root, they are installed. Exit status 77: the packages
# are missing and cannot be installed (the tests skip then).
# Ports: $MILE_SLURM_PORT (slurmctld, default 16817) and the next one (slurmd), so a
# system Slurm on the default ports is left alone.
set -eu

DIR=${1:-${MILE_SLURM_DIR:-/tmp/mile-slurm}}
PORT=${MILE_SLURM_PORT:-16817}
CONF=$DIR/slurm.conf
export SLURM_CONF="$CONF"

say() { echo "mile-slurm: $*" >&2; }

# the daemon of a pid file, when it is alive and still that program (not a reused pid)
running() { # running PIDFILE NAME
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && grep -q "^$2" "/proc/$pid/comm"
}

need_packages() {
  for p in sbatch squeue scancel sinfo scontrol; do command -v $p >/dev/null 2>&1 || return 0; done
  for p in munged slurmctld slurmd; do
    command -v $p >/dev/null 2>&1 || [ -x /usr/sbin/$p ] || return 0
  done
  return 1
}

if need_packages; then
  if [ "$(id -u)" -ne 0 ]; then say "slurm-wlm and munge are not installed (not root: cannot install them)"; exit 77; fi
  say "installing slurm-wlm and munge"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; }; }; then
    say "could not install slurm-wlm and munge"
    exit 77
  fi
fi
if [ "$(id -u)" -ne 0 ]; then say "the test cluster runs its daemons as root: run as root"; exit 77; fi
PATH=$PATH:/usr/sbin:/sbin

if running "$DIR/slurmctld.pid" slurmctld && running "$DIR/slurmd.pid" slurmd && running "$DIR/munged.pid" munged &&
   scontrol ping 2>/dev/null | grep -q UP; then
  echo "$DIR"
  exit 0
fi
# a half-started or stale cluster of DIR: end what is left of it, start afresh
"$(dirname "$0")/stop.sh" "$DIR" >/dev/null 2>&1 || true

t0=$(date +%s.%N)
mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log"
chmod 700 "$DIR/munge"
# fresh state: job ids start again at 1, so the job completion log starts afresh too
rm -rf "$DIR/state/"* "$DIR/spool/"* "$DIR/log/"*

# munge: a fresh key, and a socket of our own (AuthInfo below points the plugins at it)
[ -f "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$DIR/munge/munge.key"
munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket.2" \
  --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"

CPUS=$(nproc)
MEM=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
HOST=$(hostname -s)
cat >"$CONF" <<CONF
# a single-node test cluster (tests/slurm/start.sh); everything lives under $DIR
ClusterName=mile
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
KillWait=2
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=mile-node NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=mile-node Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -f "$CONF"
slurmd -f "$CONF" -N mile-node
# ready: the controller answers and the node takes jobs
i=0
until sinfo -h -N -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; do
  i=$((i + 1))
  if [ $i -gt 300 ]; then
    say "the cluster did not come up in 30 s; logs: $DIR/log"
    tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
  fi
  sleep 0.1
done
t1=$(date +%s.%N)
say "$(printf 'up in %.1f s: %s CPUs; export SLURM_CONF=%s' "$(awk "BEGIN { print $t1 - $t0 }")" "$CPUS" "$CONF")"
echo "$DIR"
