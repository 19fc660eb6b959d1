#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, as Debian's slurm-wlm and munge packages run it: munged as user munge,
# slurmctld and slurmd as root, proctrack/linuxproc and task/none (no cgroups needed), every core of this machine
# schedulable one by one (select/cons_tres with CR_CPU). For trying the sweep's SLURM commands (README, "Scaling
# out") and for the tests; a real cluster has its own configuration. Idempotent: a cluster that answers is left
# alone. Needs root and the packages:  apt-get install slurm-wlm munge
set -euo pipefail

if sinfo --noheader >/dev/null 2>&1 && [ -n "$(sinfo --noheader --states=idle,mixed,allocated 2>/dev/null)" ]; then
    exit 0
fi
for tool in slurmctld slurmd munged; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install slurm-wlm munge" >&2; exit 1; }
done

host=$(hostname -s)
cpus=$(nproc)
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

# munge: one key per cluster, readable by munge alone.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0711 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- munged

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=mnist-sweep
SlurmctldHost=${host}
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=${cpus} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
    if [ -n "$(sinfo --noheader --states=idle,mixed,allocated 2>/dev/null)" ]; then
        exit 0
    fi
    scontrol update nodename="${host}" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "SLURM did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
