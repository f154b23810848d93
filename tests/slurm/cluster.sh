#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost for the tests (recipe: munge + slurmctld + slurmd,
# MpiDefault=pmix, everything under one state dir, no systemd, no cgroups).
#   cluster.sh install            apt-get install slurm-wlm + munge if missing (root only)
#   cluster.sh up BASE [CPUS]     start daemons with state under BASE; prints `export SLURM_CONF=...`
#   cluster.sh down BASE          stop what `up` started (by PID only) and remove BASE
# `up` exits 3 when Slurm cannot start here (not installed, daemons fail): callers skip, not fail.
set -euo pipefail

alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }  # zombies count as dead

# Two free TCP ports, so a cluster never collides with another on the same machine.
free_ports() {
  /usr/bin/python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

cmd_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    exit 0
  fi
  "$(dirname "$0")/../../launch/install-deps.sh" --slurm
}

cmd_up() {
  local B=$1 H REAL_CPUS CPUS EXTRA st=""
  for b in slurmctld slurmd munged mungekey sinfo srun sbatch; do
    command -v "$b" >/dev/null || { echo "cluster: '$b' not found (slurm-wlm/munge not installed)" >&2; exit 3; }
  done
  H=$(hostname -s)
  REAL_CPUS=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
  CPUS=${2:-$REAL_CPUS}
  read -r CTLD_PORT SLURMD_PORT < <(free_ports)
  mkdir -p "$B"/{etc,state,log,run,munge,spool/slurmd-"$H"}  # slurmd wants its spool dir to exist
  chmod 0755 "$B" "$B/munge"   # munged: the socket dir must be world-executable
  mungekey --create --keyfile="$B/munge/munge.key" --force >/dev/null
  chmod 0400 "$B/munge/munge.key"
  munged --socket="$B/munge/munge.socket.2" --key-file="$B/munge/munge.key" --log-file="$B/munge/munged.log" \
         --pid-file="$B/munge/munged.pid" --seed-file="$B/munge/munged.seed" \
    || { echo "cluster: munged failed to start: $(tail -3 "$B/munge/munged.log" 2>/dev/null)" >&2; exit 3; }
  EXTRA=""
  [ "$CPUS" != "$REAL_CPUS" ] && EXTRA="SlurmdParameters=config_overrides"
  cat > "$B/etc/slurm.conf" <<CONF
ClusterName=ucptest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$B/munge/munge.socket.2
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool/slurmd-%n
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd-%n.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
ReturnToService=2
MailProg=/bin/true
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
$EXTRA
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  export SLURM_CONF="$B/etc/slurm.conf"
  slurmctld -D -c -f "$SLURM_CONF" >"$B/log/slurmctld.stdout" 2>&1 &
  echo $! > "$B/run/slurmctld.bgpid"
  slurmd -D -f "$SLURM_CONF" >"$B/log/slurmd.stdout" 2>&1 &
  echo $! > "$B/run/slurmd.bgpid"
  for _ in $(seq 1 120); do   # ~1 s normally; 30 s cap
    st=$(sinfo -h -n "$H" -o %T 2>/dev/null || true)
    [ "$st" = idle ] && break
    sleep 0.25
  done
  if [ "$st" != idle ]; then
    echo "cluster: node $H not idle after 30 s (state '$st'); slurmctld: $(tail -2 "$B/log/slurmctld.log" 2>/dev/null | tr '\n' ' ') slurmd: $(tail -2 "$B/log/slurmd-$H.log" 2>/dev/null | tr '\n' ' ')" >&2
    exit 3
  fi
  echo "export SLURM_CONF=$SLURM_CONF"
}

cmd_down() {
  local B=$1 S M p
  [ -d "$B" ] || exit 0
  export SLURM_CONF="$B/etc/slurm.conf"
  S=$(cat "$B/run/slurmctld.bgpid" "$B/run/slurmd.bgpid" 2>/dev/null || true)
  M=$(cat "$B/munge/munged.pid" 2>/dev/null || true)
  [ -n "$S" ] && timeout 10 scontrol shutdown >/dev/null 2>&1 || true   # both daemons exit cleanly
  for p in $S; do
    for _ in $(seq 1 40); do alive "$p" || break; sleep 0.25; done
    alive "$p" && kill -TERM "$p" 2>/dev/null || true
  done
  if [ -n "$M" ] && alive "$M"; then kill -TERM "$M" 2>/dev/null || true; fi
  sleep 0.5
  for p in $S $M; do alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$B"
}

case "${1:-}" in
  install) cmd_install ;;
  up) [ $# -ge 2 ] || { echo "usage: cluster.sh up BASE [CPUS]" >&2; exit 2; }; cmd_up "$2" "${3:-}" ;;
  down) [ $# -ge 2 ] || { echo "usage: cluster.sh down BASE" >&2; exit 2; }; cmd_down "$2" ;;
  *) echo "usage: cluster.sh install | up BASE [CPUS] | down BASE" >&2; exit 2 ;;
esac
