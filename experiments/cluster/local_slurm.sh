#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying the SLURM presets and for the tests
# marked `slurm` (tests/test_slurm.py):
#
#   experiments/cluster/local_slurm.sh start    # install (Debian packages) if missing, start
#   export SLURM_CONF=/tmp/adacal-slurm-$USER/slurm.conf   # what `start` prints
#   python run.py -m experiment=digits_small_cnn method=if,burst hydra/launcher=slurm_cpu \
#       cluster.cpus_per_task=1 cluster.mem_gb=1
#   experiments/cluster/local_slurm.sh status   # sinfo + squeue
#   experiments/cluster/local_slurm.sh stop     # cancel every job, stop the daemons
#
# One node (this machine's CPUs and memory, as `slurmd -C` finds them, memory less 10 %),
# one partition (`local`, the default), no accounting database (jobcomp/filetxt logs the end
# state of every job; adacal's launcher asks squeue when sacct is unavailable), munged,
# slurmctld and slurmd run as the current user with everything under $ADACAL_SLURM_DIR
# (default /tmp/adacal-slurm-$USER): config, state, logs, pid files, munge key and socket.
# Ports: $ADACAL_SLURM_PORT (slurmctld, default 6817) and the next one (slurmd).
# Exit status: 0 when the node is idle (start) or everything is stopped (stop); 1 when it
# is not; 3 when the packages are missing and cannot be installed (no root, no apt).
set -euo pipefail

DIR=${ADACAL_SLURM_DIR:-/tmp/adacal-slurm-$(id -un)}
PORT=${ADACAL_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket.2
export SLURM_CONF=$CONF
PACKAGES=(munge slurmd slurmctld slurm-client)

say() { echo "local_slurm: $*" >&2; }

have_binaries() {
    command -v munged >/dev/null && command -v slurmctld >/dev/null \
        && command -v slurmd >/dev/null && command -v sbatch >/dev/null
}

install_packages() {
    have_binaries && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            say "SLURM is not installed and installing needs root: apt-get install ${PACKAGES[*]}"
            return 3
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        say "SLURM is not installed and there is no apt-get: install ${PACKAGES[*]}"
        return 3
    fi
    say "installing ${PACKAGES[*]} (apt-get)"
    if ! { "${sudo[@]}" apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
            --no-install-recommends "${PACKAGES[@]}"; } >"${TMPDIR:-/tmp}/local_slurm_apt.log" 2>&1
    then
        say "apt-get failed (log: ${TMPDIR:-/tmp}/local_slurm_apt.log)"
        return 3
    fi
    have_binaries || { say "packages installed but binaries not found"; return 3; }
}

write_config() {
    local node user cpus mem
    node=$(hostname -s)
    user=$(id -un)
    cpus=$(nproc)
    # memory slurmd finds, less 10 % (a node that claims more than it has is drained)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    mem=$(( ${mem:-1024} * 9 / 10 ))
    mkdir -p "$DIR"/{state,spool,log,munge}
    chmod 700 "$DIR/munge"
    cat >"$CONF" <<EOF
# written by experiments/cluster/local_slurm.sh: a one-node cluster on $node
ClusterName=adacal
SlurmctldHost=$node(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# a job that asks for no memory gets its CPUs' share, not the whole node
DefMemPerCPU=$((mem / cpus))
ReturnToService=2
# finished jobs stay visible to squeue/scontrol this long (what the launcher polls)
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -1; }

start() {
    install_packages || exit $?
    if pid_alive "$DIR/slurmctld.pid" && [ "$(node_state)" = idle ]; then
        say "already running (SLURM_CONF=$CONF)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    write_config
    if ! pid_alive "$DIR/munged.pid"; then
        [ -f "$DIR/munge/munge.key" ] || {
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
            chmod 400 "$DIR/munge/munge.key"
        }
        munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" \
            --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
            --seed-file="$DIR/munge/munged.seed"
    fi
    pid_alive "$DIR/slurmctld.pid" || slurmctld -i -f "$CONF"
    pid_alive "$DIR/slurmd.pid" || slurmd -f "$CONF" -N "$(hostname -s)"
    local state=""
    for _ in $(seq 1 60); do
        state=$(node_state)
        case "$state" in
            idle) break ;;
            down* | drain* | fail*) scontrol update nodename="$(hostname -s)" state=resume \
                2>/dev/null || true ;;
        esac
        sleep 1
    done
    if [ "$state" != idle ]; then
        say "node not idle after 60 s (state: ${state:-no answer}); logs in $DIR/log/"
        exit 1
    fi
    say "one-node cluster up: $(nproc) CPUs, partition local (logs: $DIR/log/)"
    echo "export SLURM_CONF=$CONF"
}

stop_pid() {  # stop_pid <pid file> <name>: TERM, then KILL after 10 s
    local file=$1 pid
    pid_alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
        sleep 0.5
    done
    say "$2 (pid $pid) did not stop on TERM: killing it"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
}

stop() {
    if [ -f "$CONF" ] && pid_alive "$DIR/slurmctld.pid"; then
        scancel --full --quiet --partition=local 2>/dev/null || true
        for _ in $(seq 1 20); do  # let jobs end (KillWait) before the daemons go
            [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munged.pid" munged
    say "stopped"
}

status() {
    if ! pid_alive "$DIR/slurmctld.pid"; then
        say "not running (no slurmctld; start it with: $0 start)"
        exit 1
    fi
    echo "export SLURM_CONF=$CONF"
    sinfo
    squeue
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
