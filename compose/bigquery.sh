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


ensure_installed() { install_once "$CACHE_DIR" 900 bqemulator install_bqemulator; }

install_bqemulator() {
  ensure_python_venv
  local start=$SECONDS
  log "installing bqemulator==$BQEMULATOR_VERSION (duckdb $DUCKDB_VERSION) from PyPI into $VENV"
  rm -rf "$DUCKDB_HOME"
  pip_venv "$VENV" "bqemulator==$BQEMULATOR_VERSION" "duckdb==$DUCKDB_VERSION" \
    "duckdb-extension-spatial==$DUCKDB_VERSION" "duckdb-extensions==$DUCKDB_VERSION" \
    "numpy==$NUMPY_VERSION"
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
}

is_our_server() {
  local cmdline
  cmdline="$(proc_cmdline "$1")" || return 1
  [[ "$cmdline" == *"$VENV/bin/bqemulator start "* ]]
}

server_pid() { pid_from_file "$PID_FILE" is_our_server; }


healthy() {
  curl -sf --max-time 5 -o /dev/null "$URL/bigquery/v2/projects/$BQ_PROJECT/datasets" 2>/dev/null
}

log_tail() { show_tail 40 "$LOG_DIR/server.log"; }

wait_ready() { await_ready emulator "$1" is_our_server "$BQ_START_TIMEOUT" 0.3 "no answer from $URL" healthy; }

cmd_start() {
  mkdir -p "$STATE_DIR"
  lock_state "$STATE_DIR" "$((BQ_START_TIMEOUT + 900))"
  local pid t0=$SECONDS
  local want="rest=$BQ_PORT grpc=$BQ_GRPC_PORT project=$BQ_PROJECT persist=$BQ_PERSIST gcs=$BQ_GCS_ROOT"
  if pid="$(server_pid)"; then
    require_settings "$STATE_DIR/settings" "$want" "the emulator (pid $pid) runs with"
    resume_running "$pid" "$URL" healthy
    return 0
  fi
  rm -f "$PID_FILE"
  require_free_port "$BQ_PORT" BQ_PORT
  require_free_port "$BQ_GRPC_PORT" BQ_GRPC_PORT
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
  printf '%s\n' "$want" >"$STATE_DIR/settings"
  await_launch "$pid" 0.2 emulator is_our_server 20 0.25
  log "ready on $URL (pid $pid) after $((SECONDS - t0)) s"
}

cmd_stop() { stop_service bqemulator is_our_server "$BQ_STOP_TIMEOUT"; }

cmd_status() {
  service_status bigquery server_pid "$URL not answering" \
    "$URL, gRPC 127.0.0.1:$BQ_GRPC_PORT, project $BQ_PROJECT" healthy
}

cmd_env() {
  printf 'BIGQUERY_ENDPOINT=%s\n' "$URL"
  printf 'BIGQUERY_V2_URL=%s\n' "$URL/bigquery/v2"
  printf 'BIGQUERY_GRPC_ENDPOINT=%s\n' "127.0.0.1:$BQ_GRPC_PORT"
  printf 'BIGQUERY_PROJECT=%q\n' "$BQ_PROJECT"
  printf 'BIGQUERY_GCS_ROOT=%q\n' "$BQ_GCS_ROOT"
}

# The subcommands are the cmd_* functions; the usage is lines 2-8 above.
run_subcommand 2,8 "$@"
