#!/usr/bin/env bash
# Tear down a SLURM started by slurm_up.sh:  tests/cluster/slurm_down.sh "$R"  (run as root)
#
# Cancels every job still known to it, kills slurmd, slurmctld and munged by the PIDs in their pid
# files under $R (TERM, then KILL after 10 s), removes the /etc/slurm/slurm.conf symlink if it points
# into $R (and /etc/slurm if slurm_up.sh created it), then deletes $R unless MFG_SLURM_KEEP=1.
# Safe to run twice, and on a half-started folder.
set -uo pipefail

log() { printf 'slurm_down: %s\n' "$*" >&2; }
R="${1:-}"
[ -n "$R" ] || { log "usage: $0 RUN_FOLDER (printed by slurm_up.sh)"; exit 2; }
[ -d "$R" ] || { log "$R does not exist: nothing to do"; exit 0; }
R="$(cd "$R" && pwd)"
[ -f "$R/state.env" ] || { log "$R/state.env missing: not a folder made by slurm_up.sh, refusing"; exit 2; }
# shellcheck disable=SC1091
. "$R/state.env"

# Jobs still queued/running: cancel them so no slurmstepd or job process outlives the daemons.
slurmctld_pid="$(cat "$R/run/slurmctld.pid" 2>/dev/null || true)"
if [ -n "$slurmctld_pid" ] && kill -0 "$slurmctld_pid" 2>/dev/null; then
    if [ -n "$(squeue -h -t PD,R,CG,CF,S 2>/dev/null)" ]; then
        log "cancelling remaining jobs"
        scancel --full --quiet $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 40); do
            [ -z "$(squeue -h -t PD,R,CG,CF,S 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

stop_pidfile() {  # name pidfile
    local name="$1" pidfile="$2" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored TERM: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

stop_pidfile slurmd "$R/run/slurmd.pid"
stop_pidfile slurmctld "$R/run/slurmctld.pid"
stop_pidfile munged "$R/munge/run/munged.pid"

link=/etc/slurm/slurm.conf
if [ -L "$link" ] && [ "$(readlink "$link")" = "$R/etc/slurm.conf" ]; then
    rm -f "$link"
    log "removed $link"
fi
if [ "${CREATED_ETC_SLURM:-0}" = 1 ]; then
    rmdir /etc/slurm 2>/dev/null && log "removed /etc/slurm"
fi

if [ "${MFG_SLURM_KEEP:-0}" = 1 ]; then
    log "kept $R (MFG_SLURM_KEEP=1)"
else
    rm -rf "$R"
fi
exit 0
