# shellcheck shell=bash
# Shared by the service scripts in compose/ (sourced, not run): logging, a port probe, and the
# stop sequence every service uses.

# Messages go to stderr, prefixed with the script's name.
log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_process PID TIMEOUT IS_OURS: SIGTERM, wait up to TIMEOUT seconds while `IS_OURS PID`
# holds, then SIGKILL and wait for it to go. IS_OURS guards against a recycled PID.
stop_process() {
  local pid="$1" timeout="$2" is_ours="$3" deadline
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while "$is_ours" "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if "$is_ours" "$pid"; then
    log "still running after ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while "$is_ours" "$pid"; do sleep 0.2; done
  fi
}
