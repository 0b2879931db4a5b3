#!/usr/bin/env bash
# Local BigQuery emulator (bqemulator, DuckDB based) for Sluice development and tests.
#
#   compose/bigquery.sh start     install if needed, start, wait until the REST API lists datasets
#   compose/bigquery.sh stop      SIGTERM, wait, then SIGKILL; no-op when not running
#   compose/bigquery.sh status    exit 0 when the emulator is running and answers
#   compose/bigquery.sh env       print BIGQUERY_ENDPOINT=..., BIGQUERY_V2_URL=..., BIGQUERY_GRPC_ENDPOINT=...,
#                                 BIGQUERY_PROJECT=..., BIGQUERY_GCS_ROOT=...
#
# Installed from PyPI into a venv in the cache, with DuckDB's spatial extension taken from the
# duckdb-extension-spatial wheel, so nothing is downloaded when the emulator starts. Load jobs read
# gs://BUCKET/OBJECT from BIGQUERY_GCS_ROOT/BUCKET/OBJECT, which by default is the object root of
# compose/gcs.sh (the same SLUICE_STATE), so objects uploaded to fake-gcs-server can be loaded.
# Environment (all optional):
#   BQ_PORT              REST port                                   (default 9050)
#   BQ_GRPC_PORT         gRPC port (Storage Read/Write API)          (default 9060)
#   BQ_PROJECT           project used when a request names none      (default test-proj)
#   BQ_GCS_ROOT          local directory behind gs:// URIs   (default $GCS_ROOT, else gcs.sh's root)
#   BQ_PERSIST           1 keeps tables in a DuckDB file across restarts; 0 = in memory (default 0)
#   BQ_LOG_LEVEL         trace|debug|info|warning|error              (default info)
#   BQEMULATOR_VERSION   bqemulator version from PyPI                (default 1.4.0)
#   BQ_START_TIMEOUT     seconds to wait for readiness               (default 90)
#   BQ_STOP_TIMEOUT      seconds between SIGTERM and SIGKILL         (default 15)
#   SLUICE_CACHE         cache root (default ~/.cache/sluice; venv in bqemulator/<version>/venv)
#   SLUICE_STATE         state root (default ~/.local/state/sluice; emulator state in bigquery/)
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BQ_PORT="${BQ_PORT:-9050}"
BQ_GRPC_PORT="${BQ_GRPC_PORT:-9060}"
BQ_PROJECT="${BQ_PROJECT:-test-proj}"
BQ_PERSIST="${BQ_PERSIST:-0}"
BQ_LOG_LEVEL="${BQ_LOG_LEVEL:-info}"
BQEMULATOR_VERSION="${BQEMULATOR_VERSION:-1.4.0}"
BQ_START_TIMEOUT="${BQ_START_TIMEOUT:-90}"
BQ_STOP_TIMEOUT="${BQ_STOP_TIMEOUT:-15}"
# Pins that were tested together with bqemulator 1.4.0. The duckdb-extension-spatial version must
# equal the duckdb version: the extension is looked up by DuckDB's version string.
DUCKDB_VERSION="${DUCKDB_VERSION:-1.5.5}"
NUMPY_VERSION="${NUMPY_VERSION:-2.4.6}"

STATE_ROOT="${SLUICE_STATE:-$HOME/.local/state/sluice}"
BQ_GCS_ROOT="${BQ_GCS_ROOT:-${GCS_ROOT:-$STATE_ROOT/gcs/root}}"
CACHE_DIR="${SLUICE_CACHE:-$HOME/.cache/sluice}/bqemulator/$BQEMULATOR_VERSION"
VENV="$CACHE_DIR/venv"
# DuckDB keeps installed extensions under $HOME/.duckdb; the emulator gets this HOME so the
# extension lives in the cache, not in the user's home.
DUCKDB_HOME="$CACHE_DIR/home"
STATE_DIR="$STATE_ROOT/bigquery"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/server.pid"
URL="http://127.0.0.1:$BQ_PORT"


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

ensure_installed() {
  [[ -f "$CACHE_DIR/.installed" ]] && return 0
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.install.lock"
  flock -w 900 8 || die "timed out waiting for another install of bqemulator"
  if [[ -f "$CACHE_DIR/.installed" ]]; then exec 8>&-; return 0; fi
  ensure_python_venv
  local start=$SECONDS
  log "installing bqemulator==$BQEMULATOR_VERSION (duckdb $DUCKDB_VERSION) from PyPI into $VENV"
  rm -rf "$VENV" "$DUCKDB_HOME"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "bqemulator==$BQEMULATOR_VERSION" "duckdb==$DUCKDB_VERSION" \
    "duckdb-extension-spatial==$DUCKDB_VERSION" "duckdb-extensions==$DUCKDB_VERSION" \
    "numpy==$NUMPY_VERSION" >&2 || die "pip install bqemulator==$BQEMULATOR_VERSION failed"
  # Without this the emulator runs INSTALL spatial at start, which downloads and fails offline.
  mkdir -p "$DUCKDB_HOME"
  HOME="$DUCKDB_HOME" "$VENV/bin/python" -c \
    'from duckdb_extensions import import_extension; import_extension("spatial")' >&2 ||
    die "could not install DuckDB's spatial extension from the duckdb-extension-spatial wheel"
  compgen -G "$DUCKDB_HOME/.duckdb/extensions/*/*/spatial.duckdb_extension" >/dev/null ||
    die "spatial.duckdb_extension missing under $DUCKDB_HOME/.duckdb"
  printf 'bqemulator %s duckdb %s installed %s\n' "$BQEMULATOR_VERSION" "$DUCKDB_VERSION" "$(date -u +%FT%TZ)" \
    >"$CACHE_DIR/.installed"
  log "installed ($(du -sh "$VENV" | cut -f1)) in $((SECONDS - start)) s"
  exec 8>&-
}

is_our_server() {
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$VENV/bin/bqemulator start "* ]]
}

server_pid() {
  local pid
  if [[ -f "$PID_FILE" ]]; then
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if is_our_server "$pid"; then printf '%s\n' "$pid"; return 0; fi
  fi
  return 1
}


healthy() {
  curl -sf --max-time 5 -o /dev/null "$URL/bigquery/v2/projects/$BQ_PROJECT/datasets" 2>/dev/null
}

log_tail() {
  log "---- last lines of $LOG_DIR/server.log ----"
  tail -n 40 "$LOG_DIR/server.log" >&2 2>/dev/null || true
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + BQ_START_TIMEOUT))
  while :; do
    is_our_server "$pid" || { log_tail; die "emulator (pid $pid) exited during startup"; }
    healthy && return 0
    ((SECONDS < deadline)) || { log_tail; die "no answer from $URL after ${BQ_START_TIMEOUT}s"; }
    sleep 0.3
  done
}

cmd_start() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/.lock"
  flock -w "$((BQ_START_TIMEOUT + 900))" 9 || die "timed out waiting for another bigquery.sh on $STATE_DIR"
  local pid t0=$SECONDS
  local want="rest=$BQ_PORT grpc=$BQ_GRPC_PORT project=$BQ_PROJECT persist=$BQ_PERSIST gcs=$BQ_GCS_ROOT"
  if pid="$(server_pid)"; then
    if [[ "$(cat "$STATE_DIR/settings" 2>/dev/null)" != "$want" ]]; then
      die "the emulator (pid $pid) runs with $(cat "$STATE_DIR/settings" 2>/dev/null); stop it first or use another SLUICE_STATE"
    fi
    if healthy; then log "already running (pid $pid) on $URL"; return 0; fi
    wait_ready "$pid"
    log "ready on $URL (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  port_open "$BQ_PORT" && die "port $BQ_PORT is in use by another process (set BQ_PORT)"
  port_open "$BQ_GRPC_PORT" && die "port $BQ_GRPC_PORT is in use by another process (set BQ_GRPC_PORT)"
  command -v curl >/dev/null 2>&1 || die "curl is needed for the readiness check"
  ensure_installed
  mkdir -p "$LOG_DIR" "$BQ_GCS_ROOT"
  local -a mode=(--ephemeral)
  if [[ "$BQ_PERSIST" == 1 ]]; then
    mkdir -p "$DATA_DIR"
    mode=(--persistent --data-dir "$DATA_DIR")
  fi
  [[ -f "$LOG_DIR/server.log" ]] && mv -f "$LOG_DIR/server.log" "$LOG_DIR/server.log.prev"
  log "starting bqemulator $BQEMULATOR_VERSION on $URL (gRPC 127.0.0.1:$BQ_GRPC_PORT, project $BQ_PROJECT, gs:// -> $BQ_GCS_ROOT)"
  # BQEMU_ENABLE_FORMAT_EXTENSIONS=false: no attempt to download DuckDB's avro extension at start
  # (Avro load jobs are unsupported; NDJSON, CSV and Parquet work).
  # Started in its state dir: DuckDB spills temporary files into the working directory.
  (cd "$STATE_DIR" && HOME="$DUCKDB_HOME" BQEMU_GCS_LOCAL_ROOT="$BQ_GCS_ROOT" BQEMU_ENABLE_FORMAT_EXTENSIONS=false \
    PYTHONUNBUFFERED=1 \
    exec setsid "$VENV/bin/bqemulator" start --rest-host 127.0.0.1 --rest-port "$BQ_PORT" \
      --grpc-host 127.0.0.1 --grpc-port "$BQ_GRPC_PORT" --project "$BQ_PROJECT" "${mode[@]}" \
      --log-level "$BQ_LOG_LEVEL" --log-format json \
      </dev/null >"$LOG_DIR/server.log" 2>&1 8>&- 9>&-) &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$want" >"$STATE_DIR/settings"
  LAUNCHED_PID="$pid"
  trap abort_start EXIT
  sleep 0.2
  wait_ready "$pid"
  trap - EXIT
  log "ready on $URL (pid $pid) after $((SECONDS - t0)) s"
}

abort_start() {
  local pid="${LAUNCHED_PID:-}" i
  is_our_server "$pid" || return 0
  log "stopping the emulator that failed to become ready (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do is_our_server "$pid" || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

cmd_stop() {
  [[ -d "$STATE_DIR" ]] || { log "not running"; return 0; }
  exec 9>"$STATE_DIR/.lock"
  flock -w "$((BQ_STOP_TIMEOUT + 120))" 9 || die "timed out waiting for another bigquery.sh on $STATE_DIR"
  local pid
  if ! pid="$(server_pid)"; then rm -f "$PID_FILE"; log "not running"; return 0; fi
  log "stopping bqemulator (pid $pid)"
  stop_process "$pid" "$BQ_STOP_TIMEOUT" is_our_server
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if ! pid="$(server_pid)"; then echo "bigquery: not running"; return 1; fi
  if ! healthy; then echo "bigquery: pid $pid running but $URL not answering"; return 1; fi
  echo "bigquery: running (pid $pid) on $URL, gRPC 127.0.0.1:$BQ_GRPC_PORT, project $BQ_PROJECT"
}

cmd_env() {
  printf 'BIGQUERY_ENDPOINT=%s\n' "$URL"
  printf 'BIGQUERY_V2_URL=%s\n' "$URL/bigquery/v2"
  printf 'BIGQUERY_GRPC_ENDPOINT=%s\n' "127.0.0.1:$BQ_GRPC_PORT"
  printf 'BIGQUERY_PROJECT=%q\n' "$BQ_PROJECT"
  printf 'BIGQUERY_GCS_ROOT=%q\n' "$BQ_GCS_ROOT"
}

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

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
