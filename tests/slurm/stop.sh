#!/bin/sh
# End the test cluster of tests/slurm/start.sh: exactly the daemons its pid files name
# (slurmd, slurmctld, munged, each checked to still be that program), waiting until
# they are gone. The directory stays (logs); start.sh reuses it.
#   tests/slurm/stop.sh [DIR]      (default: $MILE_SLURM_DIR or /tmp/mile-slurm)
set -u
DIR=${1:-${MILE_SLURM_DIR:-/tmp/mile-slurm}}
status=0
for d in slurmd slurmctld munged; do
  f=$DIR/$d.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null)
  if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && grep -q "^$d" "/proc/$pid/comm"; then
    kill -TERM "$pid" 2>/dev/null
    i=0
    while [ -d "/proc/$pid" ] && grep -q "^$d" "/proc/$pid/comm" 2>/dev/null; do
      i=$((i + 1))
      if [ $i -gt 100 ]; then kill -KILL "$pid" 2>/dev/null; fi
      if [ $i -gt 150 ]; then echo "mile-slurm: $d ($pid) does not end" >&2; status=1; break; fi
      sleep 0.1
    done
  fi
  rm -f "$f"
done
exit $status
