#!/usr/bin/env bash
# A one-node Slurm cluster on loopback on this machine, for tests/test_slurm.py (and by hand).
#
#   sudo tests/slurm/up.sh          # idempotent: installs, configures and starts what is missing
#
# Installs Debian's slurm-wlm and munge if absent (needs root and apt), writes /etc/slurm/slurm.conf
# for this host (its name and hardware from `slurmd -C`, address 127.0.0.1, no cgroups), starts
# munged, slurmctld and slurmd without systemd, and waits until the node is idle. Exit 0 once
# `sinfo` shows it up; exit 3 when the packages cannot be installed (the test then skips, saying so).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
log() { echo "slurm-up: $*" >&2; }
up() { sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; }   # "idle*": not responding
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }             # a daemon by its pid file

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "slurm-wlm/munge missing and cannot be installed here (needs root and apt-get)"; exit 3
  fi
  log "installing slurm-wlm and munge ..."
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm munge; } </dev/null >/tmp/slurm-up-apt.log 2>&1; then
    log "apt-get install slurm-wlm munge failed (see /tmp/slurm-up-apt.log): $(tail -1 /tmp/slurm-up-apt.log)"; exit 3
  fi
fi

if up; then
  log "already up: $(sinfo -h -o '%N %c CPUs %T')"; exit 0
fi
[[ $(id -u) -eq 0 ]] || { log "slurm is installed but not running, and starting it needs root"; exit 3; }

# munge: a key (the package usually makes one), then the daemon.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
fi
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf: this host as the one node, on 127.0.0.1; no cgroups, no accounting.
host=$(hostname -s)
node=$(slurmd -C | head -1 | sed -e "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<CONF
# Written by moe-harness tests/slurm/up.sh: a one-node cluster on loopback.
ClusterName=moe-harness-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=30
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
printf 'ConstrainCores=no\nConstrainRAMSpace=no\n' >/etc/slurm/cgroup.conf

running /run/slurmctld.pid || /usr/sbin/slurmctld
running /run/slurmd.pid || /usr/sbin/slurmd
for _ in $(seq 120); do
  if up; then
    log "up: $(sinfo -h -o '%N %c CPUs %T')"; exit 0
  fi
  sleep 0.5
done
log "slurm did not come up within 60 s: $(sinfo -h -o '%N %T' 2>&1 | head -1); logs: /var/log/slurm/"
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
